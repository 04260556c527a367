"""The COCO caption index: cleaning (checklist 2), order, captions per image, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lib import coco


@pytest.mark.parametrize("raw, clean", [
    ("The cat.", "the cat"),
    ("Two dogs play", "two dogs play"),
    ("A man riding a bike.", "A man riding a bike"),  # 2nd char is a space: capital kept
    ("A bike .", "A bike "),  # only the '.' goes; the space before it survives
    ("  Some text..  ", "some text."),  # strip, then only one trailing '.'
    ("line one\nline two.", "line one line two"),
    ("USA flag", "USA flag"),  # 2nd char upper-case: unchanged
])
def test_clean_caption(raw, clean):
    assert coco.clean_caption(raw) == clean


def _write(tmp_path, images, anns):
    f = tmp_path / "annotations" / "captions_train2017.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"images": images, "annotations": anns}))
    return f


def _img(i):
    return {"id": i, "file_name": f"{i:012d}.jpg", "height": 8, "width": 8}


def test_order_all_captions_and_no_caption_image(tmp_path):
    anns = [{"id": 1, "image_id": 7, "caption": "The b."}, {"id": 2, "image_id": 3, "caption": "x"},
            {"id": 3, "image_id": 7, "caption": "A c."}]
    idx = coco.CaptionIndex(_write(tmp_path, [_img(3), _img(7), _img(9)], anns))
    assert idx.image_ids == [7, 3]  # first appearance in annotations, not sorted by id
    assert idx.captions_for(7) == ["the b", "A c"]  # every caption is a candidate, cleaned
    assert idx.images_without_captions == [9]
    with pytest.raises(coco.CocoError, match=r"image id 9 has no captions"):
        idx.captions_for(9)
    with pytest.raises(coco.CocoError, match=r"image id 12345 is not in"):
        idx.captions_for(12345)


def test_identical_caption_lists_raise(tmp_path):
    anns = [{"id": 1, "image_id": 1, "caption": "same"}, {"id": 2, "image_id": 2, "caption": "same"}]
    with pytest.raises(coco.CocoError, match="identical caption lists"):
        coco.CaptionIndex(_write(tmp_path, [_img(1), _img(2)], anns))


def test_missing_captions_file(tmp_path):
    with pytest.raises(coco.CocoError, match="captions_train2017.json"):
        coco.CaptionIndex.from_root(tmp_path, "train")
    with pytest.raises(coco.CocoError, match="captions file not found"):
        coco.CaptionIndex(tmp_path / "nope.json")


def test_load_image_errors(smoke_assets, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(smoke_assets / "coco", root)
    idx = coco.CaptionIndex.from_root(root, "train")
    a, b = idx.image_ids[:2]
    img = idx.load_image(a)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    idx.image_path(a).unlink()
    with pytest.raises(coco.CocoError, match=rf"image id {a} .*file not found"):
        idx.load_image(a)
    idx.image_path(b).write_bytes(idx.image_path(b).read_bytes()[:200])  # truncated JPEG
    with pytest.raises(coco.CocoError, match=rf"image id {b} .*cannot be decoded"):
        idx.load_image(b)


@pytest.mark.parametrize("name", ["../val2017/000000000001.jpg", "/etc/passwd", "../../..",
                                  "sub/../../x.jpg", ""])
def test_file_names_stay_in_the_image_folder(tmp_path, name):
    """A file_name that leaves the split's image folder is refused by the validator and the
    index (it would read any file the process can reach)."""
    (tmp_path / "val2017").mkdir()
    (tmp_path / "val2017" / "000000000001.jpg").write_bytes(b"not used")
    (tmp_path / "train2017").mkdir()
    images = [_img(1), {**_img(2), "file_name": name}]
    anns = [{"id": 1, "image_id": 1, "caption": "one"}, {"id": 2, "image_id": 2, "caption": "two"}]
    f = _write(tmp_path, images, anns)
    rep = coco.validate_captions(f, tmp_path / "train2017", check_images="none",
                                 raise_on_error=False)
    assert any("images[1]" in p and "image id 2" in p and "outside" in p for p in rep.problems)
    with pytest.raises(coco.CocoError, match=r"image id 2: file_name .* points outside"):
        coco.CaptionIndex(f, tmp_path / "train2017")
    with pytest.raises(coco.CocoError, match="outside"):
        coco.image_file(tmp_path / "train2017", name, 2)
    assert coco.image_file(tmp_path / "train2017", "a/b.jpg") == tmp_path / "train2017" / "a/b.jpg"
