"""The embedded default: COCO format, TVBench layout, determinism, balance, and the validators."""

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lib import assets, coco, minitvbench, tvbench


def test_shapes_coco_loads_with_pycocotools(smoke_assets):
    from pycocotools.coco import COCO

    for split, n in (("train", assets.PROFILES["smoke"].train_images),
                     ("val", assets.PROFILES["smoke"].val_images)):
        f = coco.captions_path(smoke_assets / "coco", split)
        c = COCO(str(f))
        assert len(c.getImgIds()) == n
        assert all(len(c.getAnnIds(imgIds=[i])) == 6 for i in c.getImgIds())
        rep = coco.validate_captions(f, coco.images_dir(smoke_assets / "coco", split),
                                     check_images="decode")
        assert rep.ok and rep.num_image_files_checked == n


def test_captions_identify_their_image(smoke_assets):
    """Six wordings per image: the three that name positions belong to one image each; the
    three position-free ones name the same shapes and background without them."""
    index = coco.CaptionIndex.from_root(smoke_assets / "coco", "train")
    owner = Counter(c for caps in index.captions.values() for c in caps[:3])
    assert max(owner.values()) == 1, "a caption with positions is shared by two images"
    where = ("at the", "on the left", "on the right", "in the center")
    for caps in index.captions.values():
        assert len(set(caps)) == 6
        assert all(any(w in c for w in where) for c in caps[:3])
        assert not any(w in c for c in caps[3:] for w in where)


def test_minitvbench_layout_and_balance(smoke_assets):
    root = smoke_assets / "minitvbench"
    rep = tvbench.validate(root)
    assert rep.ok and len(rep.tasks) >= 5
    for t in tvbench.task_table(root):
        items = json.loads((root / "json" / f"{t.key}.json").read_text())
        for it in items:
            assert (root / "video" / t.key / it["video"]).exists()
            assert it["candidates"].count(it["answer"]) == 1
            assert ("start" in it) == t.bound
        letters = Counter(it["candidates"].index(it["answer"]) for it in items)
        assert set(letters) == set(range(t.num_options))
        assert max(letters.values()) - min(letters.values()) <= 1, f"{t.key} letters {letters}"


@pytest.mark.slow
def test_demo_profile_text_alone_is_chance(tmp_path):
    """Question + candidate set alone cannot tell the answer: same set for every answer."""
    root = tmp_path / "mini"
    minitvbench.build_minitvbench(root, questions_per_task=32, size=48, fps=4, seed=1)
    for t in tvbench.task_table(root):
        items = json.loads((root / "json" / f"{t.key}.json").read_text())
        by_text: dict[tuple, Counter] = {}
        for it in items:
            k = (it["question"], tuple(sorted(it["candidates"])))
            by_text.setdefault(k, Counter())[it["answer"]] += 1
        # The best text-only guesser picks the most frequent answer for each (question, set).
        best = sum(c.most_common(1)[0][1] for c in by_text.values()) / len(items)
        chance = 1 / t.num_options
        assert best <= chance + 0.5 * (1 - chance) or len(by_text) > len(items) / 2, t.key
        answers = Counter(it["answer"] for it in items)
        if t.key in ("object_count", "action_count", "moving_direction",
                     "action_localization"):
            assert len(answers) == 4 and max(answers.values()) == min(answers.values()), t.key


def test_ordering_videos_need_time():
    """Scene transition: the two answers are the same frames in the opposite order."""
    import random

    frames, q, right, wrong, _ = minitvbench.gen_scene_transition(random.Random(0), 48, 4, 0)
    first, last = frames[0], frames[-1]
    assert not np.array_equal(first, last)
    assert right.startswith("From ") and wrong[0].startswith("From ")
    assert set(right[5:-1].split(" to ")) == set(wrong[0][5:-1].split(" to "))


def test_action_sequence_bounds_matter():
    import random

    frames, q, right, wrong, extra = minitvbench.gen_action_sequence(random.Random(0), 48, 4, 0)
    assert 0 < extra["start"] < extra["end"] < len(frames) / 4
    assert right != wrong[0]


def test_same_seed_same_bytes(tmp_path):
    a = assets.build("smoke", tmp_path / "a", seed=3)
    b = assets.build("smoke", tmp_path / "b", seed=3)
    c = assets.build("smoke", tmp_path / "c", seed=4)
    assert a["sha256"] == b["sha256"]
    assert assets.tree_hash(tmp_path / "a") == assets.tree_hash(tmp_path / "b")
    assert a["sha256"]["coco"] != c["sha256"]["coco"]
    again = assets.build("smoke", tmp_path / "a", seed=3)  # manifest matches: reused
    assert again == a


def test_cli_prints_what_it_wrote(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lib.assets", "build", "--profile", "smoke",
                          "--out", str(tmp_path / "d")], capture_output=True, text=True,
                         check=True).stdout
    assert "captions_train2017.json" in out and "minitvbench/json/" in out
    assert (tmp_path / "d" / "coco" / "train2017").is_dir()


# --- the validators reject bad input with the file, the item and the fix -----------------------


@pytest.fixture()
def bench_copy(smoke_assets, tmp_path):
    dst = tmp_path / "bench"
    shutil.copytree(smoke_assets / "minitvbench", dst)
    return dst


def test_answer_not_in_candidates(bench_copy):
    f = bench_copy / "json" / "object_count.json"
    items = json.loads(f.read_text())
    items[2]["answer"] = "seventeen"
    f.write_text(json.dumps(items))
    with pytest.raises(tvbench.BenchmarkError, match=r"object_count.json item 2.*exactly one"):
        tvbench.validate(bench_copy)


def test_missing_videos_all_listed(bench_copy):
    vids = sorted((bench_copy / "video" / "action_count").glob("*.mp4"))[:2]
    for v in vids:
        v.unlink()
    with pytest.raises(tvbench.BenchmarkError) as e:
        tvbench.validate(bench_copy)
    msg = str(e.value)
    assert "2 video file(s) missing" in msg and all(v.name in msg for v in vids)
    assert "hf download FunAILab/TVBench" in msg
    rep = tvbench.validate(bench_copy, raise_on_error=False)
    assert len(rep.missing_videos) == 2


def test_bad_bounds_and_upper_case_extension(bench_copy):
    f = bench_copy / "json" / "action_sequence.json"
    items = json.loads(f.read_text())
    items[0]["start"], items[0]["end"] = 5.0, 2.0
    f.write_text(json.dumps(items))
    v = bench_copy / "video" / "action_sequence" / items[1]["video"]
    v.rename(v.with_suffix(".MP4"))
    with pytest.raises(tvbench.BenchmarkError, match=r"action_sequence.json item 0: bounds"):
        tvbench.validate(bench_copy)
    items[0]["start"], items[0]["end"] = 1.0, 2.0
    f.write_text(json.dumps(items))
    assert tvbench.validate(bench_copy).ok  # the .MP4 is found


def test_release_counts_checked(bench_copy):
    rep = tvbench.validate(bench_copy, release="tvbench-2525", raise_on_error=False)
    assert any("action_antonym.json: missing" in p for p in rep.problems)


def test_corrupt_captions_json(smoke_assets, tmp_path):
    f = tmp_path / "captions_train2017.json"
    f.write_text('{"images": [')
    with pytest.raises(coco.CocoError, match="captions_train2017.json: not valid JSON"):
        coco.validate_captions(f)
    with pytest.raises(coco.CocoError, match="wget http://images.cocodataset.org"):
        coco.validate_captions(tmp_path / "nope" / "captions_train2017.json")


def test_corrupt_image_and_orphan_caption(smoke_assets, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(smoke_assets / "coco", root)
    f = coco.captions_path(root, "val")
    data = json.loads(f.read_text())
    broken = root / "val2017" / data["images"][0]["file_name"]
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    data["annotations"].append({"id": 10**6, "image_id": 424242, "caption": "a cat"})
    f.write_text(json.dumps(data))
    with pytest.raises(coco.CocoError) as e:
        coco.validate_captions(f, coco.images_dir(root, "val"), check_images="decode")
    msg = str(e.value)
    assert broken.name in msg and "cannot be decoded" in msg
    assert "unknown image_id 424242" in msg


def test_official_release_counts(tmp_path):
    f = tmp_path / "captions_val2017.json"
    f.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 1,
                                         "width": 1}],
                             "annotations": [{"id": 1, "image_id": 1, "caption": "x"}]}))
    with pytest.raises(coco.CocoError, match="official release has 5000 / 25014"):
        coco.validate_captions(f)
