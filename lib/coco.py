"""COCO captions: validation and a caption index over a captions file (pycocotools).

Used by notebook 00 (checks real COCO train2017 and the generated shapes-COCO with the same code)
and by ``lib.pseudo_video`` (notebook 02, 03), which draws scenes and captions from the index and
loads images through ``CaptionIndex.load_image`` (errors name the image id and file). Every
``file_name`` must stay inside the split's image folder (no absolute paths, no ``..``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

COCO_URLS = {
    "annotations": "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
    "train2017": "http://images.cocodataset.org/zips/train2017.zip",
    "val2017": "http://images.cocodataset.org/zips/val2017.zip",
}
# Known official releases: (images, captions). Checked when the file name matches.
KNOWN_RELEASES = {
    "captions_train2017.json": (118287, 591753),
    "captions_val2017.json": (5000, 25014),
}


class CocoError(ValueError):
    """A COCO captions file or image folder is missing or malformed."""


def download_hint(root: Path | str) -> str:
    root = Path(root)
    return (
        f"Download COCO 2017 into {root}:\n"
        f"  mkdir -p {root} && cd {root}\n"
        f"  wget {COCO_URLS['annotations']} && unzip annotations_trainval2017.zip\n"
        f"  wget {COCO_URLS['train2017']} && unzip train2017.zip\n"
        f"  wget {COCO_URLS['val2017']} && unzip val2017.zip   # optional, for held-out sets\n"
        f"or build the embedded stand-in: python -m lib.assets build --profile demo --out DIR"
    )


def captions_path(root: Path | str, split: str = "train") -> Path:
    """``<root>/annotations/captions_<split>2017.json`` (COCO's layout) or
    ``<root>/captions_...``."""
    root = Path(root)
    name = f"captions_{split}2017.json"
    for p in (root / "annotations" / name, root / name):
        if p.exists():
            return p
    raise CocoError(f"no {name} under {root} (looked in annotations/ and the root).\n"
                    + download_hint(root))


def images_dir(root: Path | str, split: str = "train") -> Path:
    return Path(root) / f"{split}2017"


def image_file(image_dir: Path | str, file_name: object, image_id: object = None) -> Path:
    """``image_dir / file_name``; ``CocoError`` (naming the image id and the fix) when the name
    would leave the folder: absolute, ``..``, empty or not a string."""
    parts = PurePosixPath(file_name).parts if isinstance(file_name, str) else ()
    if (not isinstance(file_name, str) or "\x00" in file_name
            or file_name.startswith(("/", "\\")) or not parts or ".." in parts
            or parts == (".",)):
        raise CocoError(f"image id {image_id}: file_name {file_name!r} points outside "
                        f"{image_dir}/; it must be a file name inside the image folder (fix the "
                        "captions file)")
    return Path(image_dir) / file_name


def clean_caption(text: str) -> str:
    """The paper code's caption cleaning (paper_code.md 1.2, checklist item 2)."""
    text = text.strip().replace("\n", " ")
    if text.endswith("."):
        text = text[:-1]
    # Lower-case the first letter only for a capitalised word ("The cat" -> "the cat");
    # "A man" keeps its capital because the second character is a space.
    if len(text) >= 2 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    return text


@dataclass
class CocoReport:
    """What ``validate_captions`` found; ``problems`` is empty when the file is usable."""

    captions_file: Path
    num_images: int = 0
    num_captions: int = 0
    num_image_files_checked: int = 0
    release: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_captions(captions_file: Path | str, image_dir: Path | str | None = None,
                      check_images: str = "exists", raise_on_error: bool = True) -> CocoReport:
    """Check a COCO captions file (and optionally its images) the same way for real and
    generated data.

    ``check_images``: "none", "exists" (every file_name is present) or "decode" (also opens each
    JPEG with PIL). When the file name is an official release, the image/caption counts must
    match. A ``file_name`` that leaves the image folder is always a problem.
    """
    path = Path(captions_file)
    report = CocoReport(captions_file=path)
    if not path.exists():
        raise CocoError(f"{path}: captions file not found.\n" + download_hint(path.parent.parent))
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CocoError(f"{path}: not valid JSON ({e}). Re-download or rebuild the file.") from e
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise CocoError(f"{path}: missing list field '{key}' (COCO captions format needs "
                            "'images' and 'annotations').")
    p = report.problems
    images = {}
    outside: set = set()  # image ids whose file_name leaves the image folder
    for i, img in enumerate(data["images"]):
        missing = [k for k in ("id", "file_name", "height", "width") if k not in img]
        if missing:
            p.append(f"{path}: images[{i}] lacks {missing}")
            continue
        if img["id"] in images:
            p.append(f"{path}: images[{i}] repeats image id {img['id']}")
        images[img["id"]] = img
        try:
            image_file(image_dir or "<images>", img["file_name"], img["id"])
        except CocoError as e:
            p.append(f"{path}: images[{i}]: {e}")
            outside.add(img["id"])
    n_caps: dict[int, int] = {}
    ann_ids = set()
    for i, ann in enumerate(data["annotations"]):
        missing = [k for k in ("id", "image_id", "caption") if k not in ann]
        if missing:
            p.append(f"{path}: annotations[{i}] lacks {missing}")
            continue
        if ann["id"] in ann_ids:
            p.append(f"{path}: annotations[{i}] repeats annotation id {ann['id']}")
        ann_ids.add(ann["id"])
        if ann["image_id"] not in images:
            p.append(f"{path}: annotations[{i}] (id {ann['id']}) refers to unknown image_id "
                     f"{ann['image_id']}")
        if not isinstance(ann["caption"], str) or not clean_caption(ann["caption"]):
            p.append(f"{path}: annotations[{i}] (id {ann['id']}) has an empty caption")
        n_caps[ann["image_id"]] = n_caps.get(ann["image_id"], 0) + 1
    no_caps = [i for i in images if i not in n_caps]
    if no_caps:
        p.append(f"{path}: {len(no_caps)} image(s) without captions, e.g. image id {no_caps[0]}")
    report.num_images, report.num_captions = len(images), len(ann_ids)
    if path.name in KNOWN_RELEASES:
        want = KNOWN_RELEASES[path.name]
        got = (report.num_images, report.num_captions)
        report.release = path.name
        # The embedded shapes-COCO reuses the official file names but says so in its info block.
        generated = str(data.get("info", {}).get("description", "")).startswith("shapes-COCO")
        if got != want and not generated:
            p.append(f"{path}: {got[0]} images / {got[1]} captions, but the official release "
                     f"has {want[0]} / {want[1]}; the download is incomplete or modified.")
    if image_dir is not None and check_images != "none":
        image_dir = Path(image_dir)
        if not image_dir.is_dir():
            p.append(f"{image_dir}: image folder not found (expected {image_dir.name}/ next to "
                     f"annotations/).")
        else:
            missing_files = []
            for img in images.values():
                if img["id"] in outside:
                    continue
                f = image_file(image_dir, img["file_name"], img["id"])
                if not f.exists():
                    missing_files.append(img["file_name"])
                elif check_images == "decode":
                    _check_decodes(f, p)
                report.num_image_files_checked += 1
            if missing_files:
                p.append(f"{image_dir}: {len(missing_files)} image file(s) missing, e.g. "
                         f"{missing_files[:3]}")
    if raise_on_error and p:
        raise CocoError(f"{path}: {len(p)} problem(s):\n  " + "\n  ".join(p[:20]))
    return report


def _check_decodes(f: Path, problems: list[str]) -> None:
    from PIL import Image

    try:
        with Image.open(f) as im:
            im.load()
    except Exception as e:  # PIL raises several unrelated types for broken files
        problems.append(f"{f}: cannot be decoded ({type(e).__name__}: {e}); re-download or "
                        "rebuild it")


class CaptionIndex:
    """Images and their cleaned captions, in order of first appearance in the annotations list.

    This is the order the paper's code uses (paper_code.md 1.2); ``image_ids[i]`` is image i.
    """

    def __init__(self, captions_file: Path | str, image_dir: Path | str | None = None):
        from pycocotools.coco import COCO  # noqa: PLC0415 (slow import, only when used)

        self.captions_file = Path(captions_file)
        if not self.captions_file.exists():
            raise CocoError(f"{self.captions_file}: captions file not found.\n"
                            + download_hint(self.captions_file.parent.parent))
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.coco = _quiet_coco(COCO, self.captions_file)
        order: dict[int, None] = {}
        for ann in self.coco.dataset["annotations"]:
            order.setdefault(ann["image_id"], None)
        self.image_ids: list[int] = list(order)
        for i, img in self.coco.imgs.items():  # names only: no file is touched here
            image_file(self.image_dir or ".", img.get("file_name"), i)
        self.captions: dict[int, list[str]] = {
            i: [clean_caption(a["caption"]) for a in self.coco.imgToAnns[i]]
            for i in self.image_ids}
        missing = [i for i in self.coco.getImgIds() if i not in self.captions]
        self.images_without_captions = missing
        seen: dict[tuple[str, ...], int] = {}
        for i in self.image_ids:
            raw = tuple(a["caption"] for a in self.coco.imgToAnns[i])
            if raw in seen:
                raise CocoError(f"{self.captions_file}: images {seen[raw]} and {i} have identical "
                                "caption lists; questions could not tell them apart. Remove one.")
            seen[raw] = i

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> Path:
        if image_id not in self.coco.imgs:
            raise CocoError(f"{self.captions_file}: unknown image id {image_id}")
        if self.image_dir is None:
            raise CocoError("CaptionIndex was built without image_dir; pass the split's folder")
        return image_file(self.image_dir, self.coco.imgs[image_id]["file_name"], image_id)

    def captions_for(self, image_id: int) -> list[str]:
        """The cleaned captions of an image; an error naming the id if it has none."""
        caps = self.captions.get(image_id)
        if not caps:
            known = image_id in self.coco.imgs
            raise CocoError(
                f"{self.captions_file}: image id {image_id} "
                + ("has no captions; add captions for it or leave it out of the formations."
                   if known else "is not in this captions file (wrong split or file?)."))
        return caps

    def load_image(self, image_id: int) -> np.ndarray:
        """The image as uint8 RGB (H, W, 3); ``CocoError`` naming the id and file when it fails."""
        return load_rgb(self.image_path(image_id), image_id)

    @classmethod
    def from_root(cls, root: Path | str, split: str = "train") -> "CaptionIndex":
        return cls(captions_path(root, split), images_dir(root, split))


def load_rgb(path: Path | str, image_id: int | None = None) -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3) as the paper's loader does (PIL, convert
    RGB)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    what = f"image id {image_id} ({path})" if image_id is not None else str(path)
    if not path.exists():
        raise CocoError(f"{what}: file not found; re-download the image folder or rebuild the "
                        "embedded assets (python -m lib.assets build).")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise CocoError(f"{what}: cannot be decoded ({type(e).__name__}: {e}); the file is "
                        "corrupt, re-download or rebuild it.") from e


def _quiet_coco(coco_cls, path: Path):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints timing lines
        return coco_cls(str(path))
