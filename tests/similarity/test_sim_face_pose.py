"""Face (YuNet + SFace) and pose (mediapipe) search on synthetic pictures and on a real WikiArt
portrait from the shared sample; paintings without a face or a body are reported as such."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from artextract.job import Job
from artextract.similarity import EmbeddingIndex, find_similar
from artextract.similarity.api import draw_result
from artextract.similarity.face import draw_faces, face_index, face_model
from artextract.similarity.pose import draw_pose, pose_descriptor, pose_model, pose_similarity, to_pixels

import sim_synth_images as synth

# a Baroque portrait in the shared sample whose face YuNet finds (score ~0.92) and whose body
# mediapipe finds
REAL_PORTRAIT = "wikiart_sample/Baroque/aleksey-antropov_portrait-of-a-mistress-agrippina-leontyevna-apraksina.jpg"


def picture_index(tmp_path, pictures: dict[str, Image.Image]) -> EmbeddingIndex:
    """An index of these pictures (random vectors: face and pose search only need the images)."""
    paths = []
    for name, img in pictures.items():
        p = tmp_path / f"{name}.png"
        img.save(p)
        paths.append(p)
    vecs = np.random.default_rng(0).normal(size=(len(paths), 8)).astype(np.float32)
    idx = EmbeddingIndex.build(list(pictures), vecs, paths=paths)
    idx.save(tmp_path / "pics.index")
    return EmbeddingIndex.load(tmp_path / "pics.index")


def test_synthetic_portrait_face_search(tmp_path):
    por = synth.portrait(320)
    faces = face_model().detect(por)
    assert len(faces) == 1 and faces[0]["score"] > 0.8
    x, y, w, h = faces[0]["box"]
    assert 100 < x + w / 2 < 220 and 60 < y + h / 2 < 200  # the drawn face is in the middle
    pics = {
        "portrait_a": por,
        "portrait_small": synth.on_canvas(synth.portrait(224), (480, 400), (200, 120)),
        "portrait_mirror": ImageOps.mirror(synth.portrait(400, background=(120, 90, 60))),
        "landscape": synth.landscape(),
        "blank": Image.new("RGB", (200, 300), (128, 128, 128)),
    }
    idx = picture_index(tmp_path, pics)
    logs = []
    res = find_similar(idx, id="portrait_a", mode="face", k=10, job=Job(log=logs.append))
    assert any("detecting faces in 5 painting(s)" in m for m in logs)  # built lazily, and said so
    assert res["coverage"] == {"with_face": 3, "without_face": 2}
    ids = [r["id"] for r in res["results"]]
    assert set(ids) == {"portrait_small", "portrait_mirror"}  # never itself, never the faceless ones
    assert all(r["same_person"] for r in res["results"]) and res["message"] is None
    small_box = res["results"][ids.index("portrait_small")]["box"]
    assert small_box[0] > 200 and small_box[1] > 120  # box in the painting's own pixels
    # a second search reuses the stored descriptors
    logs.clear()
    idx2 = EmbeddingIndex.load(tmp_path / "pics.index")
    find_similar(idx2, image=por, mode="face", job=Job(log=logs.append))
    assert not logs
    # no face: reported, not an error
    res = find_similar(idx, id="landscape", mode="face")
    assert res["results"] == [] and res["message"] == "no face detected in painting 'landscape'"
    res = find_similar(idx, image=synth.landscape(), mode="face")
    assert res["message"] == "no face detected in the query image"
    # drawing for reports
    out = draw_result(find_similar(idx, id="portrait_a", mode="face"), idx, tmp_path / "draw")
    assert [p.name for p in out][0] == "00_query.jpg" and len(out) == 3
    boxed = draw_faces(por, faces)
    assert boxed.size == por.size and np.abs(np.asarray(boxed, int) - np.asarray(por, int)).sum() > 0


def test_synthetic_figures_pose_search(tmp_path):
    up, down = synth.figure(arms="up"), synth.figure(arms="down")
    kp = pose_model().keypoints(up)
    assert kp is not None and kp.shape == (33, 3)
    assert kp[15, 1] < kp[11, 1] and kp[16, 1] < kp[12, 1]  # wrists above shoulders: arms up
    pics = {
        "up": up,
        "up_small_moved": synth.on_canvas(synth.figure(200, 300, arms="up", shirt=(40, 120, 60)), (520, 420), (300, 100)),
        "down": down,
        "down_wide": synth.figure(480, 480, arms="down"),
        "landscape": synth.landscape(),
    }
    idx = picture_index(tmp_path, pics)
    res = find_similar(idx, id="up", mode="pose", k=3)
    assert res["coverage"] == {"with_body": 4, "without_body": 1}
    ids = [r["id"] for r in res["results"]]
    assert ids[0] == "up_small_moved", res["results"]  # same pose despite position and scale
    assert "up" not in ids and "landscape" not in ids
    assert res["results"][0]["score"] > 0.9 > res["results"][1]["score"]
    res = find_similar(idx, image=down, mode="pose", k=4)
    assert [r["id"] for r in res["results"]][:2] in (["down", "down_wide"], ["down_wide", "down"])
    assert len(res["query"]["keypoints"]) == 33
    res = find_similar(idx, id="landscape", mode="pose")
    assert res["results"] == [] and res["message"] == "no body detected in painting 'landscape'"
    res = find_similar(idx, image=Image.new("RGB", (300, 300), (128, 128, 128)), mode="pose")
    assert res["message"] == "no body detected in the query image"
    drawn = draw_pose(up, kp)
    assert np.abs(np.asarray(drawn, int) - np.asarray(up, int)).sum() > 0


def test_pose_similarity_is_invariant_to_position_and_scale():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0.2, 0.8, size=(33, 2)), rng.uniform(0.3, 1, size=(33, 1))], 1)
    xy, vis = to_pixels(kp, (400, 600))
    moved = xy * 2.5 + np.array([130.0, -40.0])
    other = xy + rng.normal(0, 60, size=xy.shape)
    s = pose_similarity(xy, vis, np.stack([moved, other]), np.stack([vis, vis]))
    assert s[0] == pytest.approx(1.0, abs=1e-4) and s[1] < 0.9
    d = pose_descriptor(kp, (400, 600))
    w = d[:, 2]
    assert np.allclose((w[:, None] * d[:, :2]).sum(0), 0, atol=1e-4)            # centred
    assert (w * (d[:, :2] ** 2).sum(1)).sum() / w.sum() == pytest.approx(1, abs=1e-4)  # unit scale
    # a keypoint nobody can see does not count
    vis2 = vis.copy()
    vis2[0] = 0
    moved2 = moved.copy()
    moved2[0] += 500
    assert pose_similarity(xy, vis2, moved2[None], vis2[None])[0] == pytest.approx(1.0, abs=1e-4)


def test_real_portrait_face_and_pose(shared_data, tmp_path):
    path = shared_data / REAL_PORTRAIT
    if not path.is_file():
        pytest.skip(f"{REAL_PORTRAIT} is not in the shared sample")
    from artextract.data.images import load_image

    real = load_image(path)
    faces = face_model().detect(real)
    assert len(faces) >= 1 and faces[0]["score"] > 0.8
    kp = pose_model().keypoints(real)
    assert kp is not None and (kp[:, 2] >= 0.5).sum() >= 10
    # the same portrait, mirrored, enlarged and re-encoded, is found by face and by pose
    copy = ImageOps.mirror(real).resize((real.width * 2, real.height * 2), Image.Resampling.BICUBIC)
    pics = {"real": real, "real_copy": copy, "synthetic_portrait": synth.portrait(), "figure": synth.figure(),
            "landscape": synth.landscape()}
    idx = picture_index(tmp_path, pics)
    res = find_similar(idx, id="real", mode="face", k=3)
    assert res["results"][0]["id"] == "real_copy" and res["results"][0]["same_person"]
    assert res["results"][0]["score"] > max(r["score"] for r in res["results"][1:])
    assert face_index(idx).with_face >= 3
    res = find_similar(idx, image=real, mode="pose", k=2)
    assert res["results"][0]["id"] in ("real", "real_copy")
