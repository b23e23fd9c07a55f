"""A small set of WikiArt label files in the exact ArtGAN format, with its quirks, and images for it.

:func:`write_labels` writes the nine files of ArtGAN's ``WikiArt Dataset`` folder, with class lists
and rows made up here (not copied from the real files):

- class files ``artist_class`` and ``genre_class`` without extension, ``style_class.txt`` with one,
  ``<idx> <Name>`` lines, LF;
- ``artist_train`` / ``artist_val``: no extension, the two header lines
  ``(Path to image),, (Groundtruth class)`` (with a trailing space in artist_train) and an empty one, rows ``Style/file.jpg,,<idx>``
  (double comma), LF;
- ``genre_*.csv`` / ``style_*.csv``: no header, ``Style/file.jpg,<idx>``, CRLF, UTF-8;
- the folder ``Art_Nouveau_Modern`` holds class ``Art_Nouveau``;
- mojibake paths (UTF-8 read as Latin-1 and lower-cased: ``rã©mi`` for ``rémi``);
- a row of ``genre_val.csv`` duplicated with a conflicting label, and one duplicated with the same
  label in ``genre_train.csv``;
- paths that are train for one task and val for another (the split rule makes them val).

It returns an :class:`Expected` built from the same table, for the tests to compare against.
:func:`write_images` puts generated JPEGs for some of the listed paths into a folder, under the
names a user's copy of the ArtGAN zip may have (as listed, repaired, NFD, renamed folder).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

STYLES = ["Abstract_Expressionism", "Art_Nouveau", "Baroque", "Impressionism", "Naive_Art_Primitivism",
          "Post_Impressionism", "Ukiyo_e"]
GENRES = ["landscape", "portrait", "religious_painting", "still_life"]
ARTISTS = ["Claude_Monet", "Paul_Cezanne", "Rembrandt"]
FOLDER = {s: s for s in STYLES} | {"Art_Nouveau": "Art_Nouveau_Modern"}
TASK_CLASSES = {"artist": ARTISTS, "genre": GENRES, "style": STYLES}

# path (as listed) -> {task: (label, split)}; None = not listed for that task
MOJIBAKE = "Naive_Art_Primitivism/henri-rã©mi_the-garden-1911.jpg"       # repaired: henri-rémi
MOJIBAKE_AS_LISTED = "Naive_Art_Primitivism/henri-rã©mi_the-orchard.jpg"  # saved on disk exactly as listed
MOJIBAKE_NFD = "Impressionism/joaquã\xadn-pardo_morning-sea.jpg"          # repaired: joaquín, stored NFD
NOUVEAU = "Art_Nouveau_Modern/eugã¨ne-vial_poster-1897.jpg"                 # repaired: eugène
CONFLICT = "Post_Impressionism/andre-lhote_the-village.jpg"                 # genre_val lists it twice, 1 and 3
SAME_DUP = "Baroque/rembrandt_the-mill.jpg"                                 # genre_train lists it twice, same label


def _table() -> dict[str, dict[str, tuple[str, str]]]:
    t: dict[str, dict[str, tuple[str, str]]] = {}

    def add(path, style, split, genre=None, artist=None, genre_split=None, artist_split=None):
        row = {"style": (style, split)}
        if genre:
            row["genre"] = (genre, genre_split or split)
        if artist:
            row["artist"] = (artist, artist_split or split)
        t[path] = row

    for i, title in enumerate(["water-lilies", "haystacks-at-giverny", "the-cliff-walk", "poplars-1891",
                               "rouen-cathedral", "the-magpie"]):
        add(f"Impressionism/claude-monet_{title}.jpg", "Impressionism", "val" if i >= 4 else "train",
            genre="landscape", artist="Claude_Monet")
    add("Impressionism/berthe-morisot_the-cradle-1872.jpg", "Impressionism", "train", genre="portrait")
    for i, title in enumerate(["still-life-with-apples", "mont-sainte-victoire", "the-card-players",
                               "pot-of-flowers", "self-portrait-1880"]):
        add(f"Post_Impressionism/paul-cezanne_{title}.jpg", "Post_Impressionism", "val" if i == 4 else "train",
            genre="portrait" if "portrait" in title else ("landscape" if "victoire" in title else "still_life"),
            artist="Paul_Cezanne")
    # train for style and genre, val for the artist task: the painting goes to val
    add("Post_Impressionism/paul-cezanne_bathers.jpg", "Post_Impressionism", "train", genre="landscape",
        artist="Paul_Cezanne", artist_split="val")
    for i, title in enumerate(["the-night-watch", "self-portrait-1659", "the-return-of-the-prodigal-son",
                               "the-jewish-bride"]):
        add(f"Baroque/rembrandt_{title}.jpg", "Baroque", "val" if i == 3 else "train",
            genre="religious_painting" if "prodigal" in title else "portrait", artist="Rembrandt")
    add(SAME_DUP, "Baroque", "train", genre="landscape", artist="Rembrandt")
    add("Baroque/peter-paul-rubens_the-descent-from-the-cross.jpg", "Baroque", "train", genre="religious_painting")
    for i, title in enumerate(["the-seasons-1896", "zodiac", "job-1896"]):
        add(f"Art_Nouveau_Modern/alphonse-mucha_{title}.jpg", "Art_Nouveau", "val" if i == 2 else "train",
            genre="portrait" if i == 0 else None)
    add(NOUVEAU, "Art_Nouveau", "train")
    for title in ["no-61", "orange-and-yellow", "untitled-1969"]:
        add(f"Abstract_Expressionism/mark-rothko_{title}.jpg", "Abstract_Expressionism", "train")
    # train for style, val for genre: val
    add("Abstract_Expressionism/joan-mitchell_city-landscape.jpg", "Abstract_Expressionism", "train",
        genre="landscape", genre_split="val")
    add(MOJIBAKE, "Naive_Art_Primitivism", "train", genre="landscape")
    add(MOJIBAKE_AS_LISTED, "Naive_Art_Primitivism", "val")
    add(MOJIBAKE_NFD, "Impressionism", "train", genre="landscape")
    add(CONFLICT, "Post_Impressionism", "val", genre="portrait")
    add("Ukiyo_e/katsushika-hokusai_the-great-wave.jpg", "Ukiyo_e", "train", genre="landscape")
    add("Ukiyo_e/utagawa-hiroshige_plum-garden.jpg", "Ukiyo_e", "val", genre="landscape")
    return t


@dataclass
class Expected:
    """What the importer should find in the files :func:`write_labels` wrote."""

    labels: dict[str, dict[str, str | None]]        # listed path -> task -> class name (None: no label)
    split: dict[str, str]                            # listed path -> train / val
    rows: dict[str, int]                             # file name -> data rows in it
    duplicates: int = 2
    conflicts: list[str] = field(default_factory=lambda: [f"genre:{CONFLICT}"])


def write_labels(folder: Path) -> Expected:
    """Write the ArtGAN label files to ``folder``; return what they hold."""
    folder.mkdir(parents=True, exist_ok=True)
    table = _table()
    for name, classes, in (("artist_class", ARTISTS), ("genre_class", GENRES), ("style_class.txt", STYLES)):
        (folder / name).write_bytes("".join(f"{i} {c}\n" for i, c in enumerate(classes)).encode())
    files = {("artist", "train"): "artist_train", ("artist", "val"): "artist_val",
             ("genre", "train"): "genre_train.csv", ("genre", "val"): "genre_val.csv",
             ("style", "train"): "style_train.csv", ("style", "val"): "style_val.csv"}
    lines: dict[str, list[str]] = {f: [] for f in files.values()}
    for path, row in table.items():
        for task, (label, split) in row.items():
            sep = ",," if task == "artist" else ","
            line = f"{path}{sep}{TASK_CLASSES[task].index(label)}"
            lines[files[task, split]].append(line)
            if path == SAME_DUP and task == "genre":
                lines[files[task, split]].append(line)
    lines["genre_val.csv"].append(f"{CONFLICT},{GENRES.index('still_life')}")
    rows = {f: len(v) for f, v in lines.items()}
    for f, v in lines.items():
        if f.startswith("artist"):
            space = " " if f == "artist_train" else ""      # only artist_train's header ends in a space
            text = f"(Path to image),, (Groundtruth class){space}\n\n" + "".join(ln + "\n" for ln in v)
        else:
            text = "".join(ln + "\r\n" for ln in v)
        (folder / f).write_bytes(text.encode("utf-8"))
    labels = {p: {t: (row[t][0] if t in row else None) for t in TASK_CLASSES} for p, row in table.items()}
    labels[CONFLICT]["genre"] = None
    split = {p: "val" if any(s == "val" for _, s in row.values()) else "train" for p, row in table.items()}
    return Expected(labels=labels, split=split, rows=rows)


def write_images(folder: Path) -> dict[str, str]:
    """Generated JPEGs for some listed paths, under the names found on users' disks.

    Returns listed path -> path on disk (relative to ``folder``) for every painting the importer
    should keep. Also writes an image that no label file lists and a folder named like an image.
    """
    from PIL import Image

    table = _table()
    on_disk: dict[str, str] = {}
    plain = [p for p in table if p.isascii() and not p.startswith("Art_Nouveau_Modern/")]
    for p in plain[::2]:                                            # half of the plain paths
        on_disk[p] = p
    on_disk[CONFLICT] = CONFLICT
    on_disk[MOJIBAKE] = "Naive_Art_Primitivism/henri-rémi_the-garden-1911.jpg"
    on_disk[MOJIBAKE_AS_LISTED] = MOJIBAKE_AS_LISTED
    on_disk[MOJIBAKE_NFD] = unicodedata.normalize("NFD", "Impressionism/joaquín-pardo_morning-sea.jpg")
    on_disk[NOUVEAU] = "Art_Nouveau/eugène-vial_poster-1897.jpg"    # folder renamed to the class name
    on_disk["Art_Nouveau_Modern/alphonse-mucha_zodiac.jpg"] = "Art_Nouveau_Modern/alphonse-mucha_zodiac.jpg"
    for k, rel in enumerate([*on_disk.values(), "Baroque/not-listed-anywhere.jpg"]):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24 + k % 5, 20), ((37 * k) % 256, (91 * k) % 256, 128)).save(path, format="JPEG")
    (folder / "Baroque" / "a-folder.jpg").mkdir()                   # a folder named like an image
    return on_disk
