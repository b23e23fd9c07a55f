"""Synthetic pictures that the face and pose models recognise: a drawn face (YuNet finds it with a
score of about 0.9) and a drawn full figure with its arms up or down (mediapipe finds all 33
keypoints). Nothing here is a real person."""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFilter

SKIN = (224, 180, 150)


def draw_face(d: ImageDraw.ImageDraw, cx: float, cy: float, s: float, skin=SKIN, hair=(70, 45, 30)) -> None:
    """A frontal face of half-width ``s`` centred on (cx, cy): hair, neck, eyes, brows, nose, mouth."""
    d.ellipse([cx - 1.1 * s, cy - 1.45 * s, cx + 1.1 * s, cy + 0.6 * s], fill=hair)
    d.rectangle([cx - 0.35 * s, cy + 0.9 * s, cx + 0.35 * s, cy + 1.6 * s], fill=tuple(int(c * 0.9) for c in skin))
    d.ellipse([cx - 0.8 * s, cy - 1.1 * s, cx + 0.8 * s, cy + 1.15 * s], fill=skin)
    for ex in (-0.33, 0.33):
        x, y = cx + ex * s, cy - 0.2 * s
        d.line([x - 0.22 * s, y - 0.22 * s, x + 0.22 * s, y - 0.25 * s], fill=(60, 40, 30), width=max(1, int(0.07 * s)))
        d.ellipse([x - 0.18 * s, y - 0.08 * s, x + 0.18 * s, y + 0.08 * s], fill=(250, 250, 250))
        d.ellipse([x - 0.08 * s, y - 0.08 * s, x + 0.08 * s, y + 0.08 * s], fill=(60, 40, 20))
    d.polygon([(cx, cy - 0.1 * s), (cx - 0.12 * s, cy + 0.3 * s), (cx + 0.12 * s, cy + 0.3 * s)],
              fill=tuple(int(c * 0.85) for c in skin))
    d.ellipse([cx - 0.3 * s, cy + 0.5 * s, cx + 0.3 * s, cy + 0.65 * s], fill=(170, 70, 70))


def portrait(size: int = 320, background=(90, 110, 140), cx: float = 0.5, face_scale: float = 0.16) -> Image.Image:
    img = Image.new("RGB", (size, size), background)
    d = ImageDraw.Draw(img)
    d.ellipse([size * 0.1, size * 0.7, size * 0.9, size * 1.4], fill=(40, 50, 90))
    draw_face(d, size * cx, size * 0.42, size * face_scale)
    return img.filter(ImageFilter.GaussianBlur(size / 224 * 1.5))


def figure(width: int = 320, height: int = 480, arms: str = "down", background=(150, 170, 190),
           shirt=(150, 40, 40)) -> Image.Image:
    """A standing person, arms ``down`` by the sides or ``up`` above the head."""
    W, H = width, height
    img = Image.new("RGB", (W, H), background)
    d = ImageDraw.Draw(img)
    cx = W / 2
    sh_y, hip_y, knee_y, foot_y = H * 0.25, H * 0.52, H * 0.72, H * 0.93
    pants = (40, 50, 90)
    lw = int(H * 0.05)
    for sx in (-1, 1):
        d.line([(cx + sx * H * 0.05, hip_y), (cx + sx * H * 0.07, knee_y), (cx + sx * H * 0.08, foot_y)],
               fill=pants, width=lw, joint="curve")
        d.ellipse([cx + sx * H * 0.08 - lw, foot_y - lw * 0.4, cx + sx * H * 0.08 + lw, foot_y + lw * 0.4],
                  fill=(30, 20, 10))
    d.polygon([(cx - H * 0.09, sh_y), (cx + H * 0.09, sh_y), (cx + H * 0.075, hip_y), (cx - H * 0.075, hip_y)],
              fill=shirt)
    for sx in (-1, 1):
        if arms == "down":
            el, wr = (cx + sx * H * 0.12, H * 0.38), (cx + sx * H * 0.13, H * 0.5)
        else:
            el, wr = (cx + sx * H * 0.17, H * 0.2), (cx + sx * H * 0.2, H * 0.08)
        d.line([(cx + sx * H * 0.085, sh_y + lw * 0.4), el, wr], fill=shirt, width=int(lw * 0.8), joint="curve")
        d.ellipse([wr[0] - lw * 0.5, wr[1] - lw * 0.5, wr[0] + lw * 0.5, wr[1] + lw * 0.5], fill=SKIN)
    draw_face(d, cx, H * 0.14, H * 0.055)
    return img.filter(ImageFilter.GaussianBlur(1))


def on_canvas(img: Image.Image, size: tuple[int, int], at: tuple[int, int], background=(200, 190, 170)) -> Image.Image:
    """``img`` pasted at ``at`` on a larger plain canvas (moves and shrinks the subject in the frame)."""
    canvas = Image.new("RGB", size, background)
    canvas.paste(img, at)
    return canvas


def landscape(size: int = 320) -> Image.Image:
    img = Image.new("RGB", (size, size), (120, 170, 230))
    d = ImageDraw.Draw(img)
    d.rectangle([0, size * 0.6, size, size], fill=(70, 130, 60))
    d.ellipse([size * 0.7, size * 0.1, size * 0.85, size * 0.25], fill=(250, 230, 120))
    return img
