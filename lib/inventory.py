"""What the full profile needs, what is present, and the exact commands to fetch the rest.

Used by notebook 00. Nothing here downloads: this machine class reaches no model hub, so the
commands are printed for the researcher to run where the hub is reachable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lib import coco, paper, paths, profiles, tvbench

TOWERS = {
    "google/siglip-so400m-patch14-384": "SigLIP vision tower (all four checkpoints)",
    "facebook/dinov2-giant": "DINOv2 vision tower (all four checkpoints)",
}


@dataclass
class Item:
    kind: str
    name: str
    path: Path
    present: bool
    detail: str
    fetch: str

    def row(self) -> dict:
        return {"kind": self.kind, "name": self.name, "present": self.present,
                "detail": self.detail, "path": str(self.path)}


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def hub_dir(repo_id: str, root: Path | None = None) -> Path:
    return (root or paths.checkpoints_dir()) / repo_id.split("/")[-1]


def check_hub_model(repo_id: str, kind: str, about: str, root: Path | None = None) -> Item:
    d = hub_dir(repo_id, root)
    has_config = (d / "config.json").exists()
    weights = sorted(d.glob("*.safetensors"))
    present = has_config and bool(weights)
    detail = (f"{about}; {len(weights)} safetensors file(s), {_gb(_size(d))}" if present
              else f"{about}; " + ("no config.json" if not has_config else "no *.safetensors"))
    fetch = f"hf download {repo_id} --local-dir {d}"
    return Item(kind, repo_id, d, present, detail, fetch)


def check_coco(root: Path | None = None) -> Item:
    root = root or profiles.coco_root("full")
    try:
        capt = coco.captions_path(root, "train")
    except coco.CocoError:
        return Item("dataset", "COCO train2017 captions + images", root, False,
                    "captions_train2017.json not found", coco.download_hint(root))
    rep = coco.validate_captions(capt, coco.images_dir(root, "train"), check_images="exists",
                                 raise_on_error=False)
    detail = (f"{rep.num_images} images, {rep.num_captions} captions, "
              f"{rep.num_image_files_checked} image files checked; "
              + ("valid" if rep.ok else f"{len(rep.problems)} problem(s): {rep.problems[0]}"))
    return Item("dataset", "COCO train2017 captions + images", root, rep.ok, detail,
                coco.download_hint(root))


def check_tvbench(root: Path | None = None) -> Item:
    root = root or profiles.benchmark_root("full")
    fetch = tvbench.TVBENCH_DOWNLOAD.format(root=root)
    if not (root / "json").is_dir():
        return Item("benchmark", "TVBench (revised, 2,525 questions)", root, False,
                    "json/ not found", fetch)
    rep = tvbench.validate(root, release="tvbench-2525", raise_on_error=False)
    detail = (f"{rep.num_questions} questions in {len(rep.tasks)} tasks, "
              f"{sum(rep.videos.values())} videos present, {len(rep.missing_videos)} missing; "
              + ("valid" if rep.ok else f"{len(rep.problems) + bool(rep.missing_videos)} "
                 "problem(s)"))
    return Item("benchmark", "TVBench (revised, 2,525 questions)", root, rep.ok, detail, fetch)


def full_profile(checkpoints_root: Path | str | None = None, coco_root: Path | str | None = None,
                 tvbench_root: Path | str | None = None) -> list[Item]:
    """Every asset of the full profile with its status and fetch command (None: the default)."""
    checkpoints_root, coco_root, tvbench_root = (
        Path(p) if p is not None else None for p in (checkpoints_root, coco_root, tvbench_root))
    items = [check_hub_model(repo, "checkpoint", f"{stage}-trained, {paper.LLM_NAMES[backbone]}",
                             checkpoints_root)
             for (backbone, stage), repo in profiles.OFFICIAL.items()]
    items += [check_hub_model(r, "tower", a, checkpoints_root) for r, a in TOWERS.items()]
    items += [check_coco(coco_root), check_tvbench(tvbench_root)]
    return items


def fetch_script(items: list[Item]) -> str:
    """The commands that fetch what is missing, as one shell script."""
    missing = [i for i in items if not i.present]
    if not missing:
        return "# everything for the full profile is present"
    lines = ["# run where the Hugging Face hub and images.cocodataset.org are reachable",
             "pip install -U huggingface_hub   # provides the `hf` command"]
    for i in missing:
        lines.append(f"# {i.kind}: {i.name} ({i.detail})")
        lines.extend(i.fetch.splitlines())
    return "\n".join(lines)
