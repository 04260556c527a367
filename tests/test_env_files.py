"""requirements.txt is fully pinned and environment.yml's pip list equals it."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("torchvision", "timm", "open_clip", "open-clip")


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def test_requirements_pinned_torch_first():
    reqs = _requirements()
    assert reqs[0] == "torch==2.13.0"
    unpinned = [r for r in reqs if "==" not in r]
    assert not unpinned, f"pin these in requirements.txt: {unpinned}"
    bad = [r for r in reqs if r.split("==")[0].lower().startswith(FORBIDDEN)]
    assert not bad, f"{bad} pull CUDA torch and break transformers here"


def test_environment_yml_matches_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert any(str(d).startswith("python=") for d in deps)
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    pins = [p for p in pip if not p.startswith("-e")]
    assert pins == _requirements(), "environment.yml pip list drifted from requirements.txt"
