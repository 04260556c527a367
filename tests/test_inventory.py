"""Notebook 00's inventory of the full profile works with nothing present."""

from lib import inventory


def test_nothing_present_prints_fetch_commands(tmp_path):
    items = inventory.full_profile(tmp_path / "ckpt", tmp_path / "coco", tmp_path / "tvb")
    assert len(items) == 8 and not any(i.present for i in items)
    script = inventory.fetch_script(items)
    assert "hf download Vision-CAIR/LongVU_Qwen2_7B_img --local-dir" in script
    assert "hf download google/siglip-so400m-patch14-384" in script
    assert "train2017.zip" in script and "FunAILab/TVBench" in script
    assert "NTU" in script  # Action Antonym videos are not on the hub


def test_checkpoint_detected(tmp_path):
    d = inventory.hub_dir("Vision-CAIR/LongVU_Qwen2_7B", tmp_path)
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model-00001-of-00002.safetensors").write_bytes(b"0" * 10)
    item = inventory.check_hub_model("Vision-CAIR/LongVU_Qwen2_7B", "checkpoint", "x", tmp_path)
    assert item.present and "1 safetensors" in item.detail


def test_generated_benchmark_is_checked_like_tvbench(smoke_assets):
    item = inventory.check_tvbench(smoke_assets / "minitvbench")
    assert not item.present  # valid MiniTVBench, but not the 2,525-question release
    assert "48 questions" in item.detail
