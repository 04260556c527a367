"""CLI: `python -m lib.longvu tiny ...` writes a tiny checkpoint; `... parity DIR` runs parity.

    python -m lib.longvu tiny --backbone qwen|llama --stage video|image --geometry real|small|demo \\
        --seed 0 --out DIR
    python -m lib.longvu parity DIR        # exits 1 if any case fails
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(prog="python -m lib.longvu")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tiny", help="write a tiny random LongVU checkpoint (original layout)")
    t.add_argument("--backbone", choices=["qwen", "llama"], default="qwen")
    t.add_argument("--stage", choices=["video", "image"], default="video")
    t.add_argument("--geometry", choices=["real", "small", "demo"], default="real")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True)
    p = sub.add_parser("parity", help="run every parity case under DIR/cases/")
    p.add_argument("dir")
    args = ap.parse_args(argv)
    if args.cmd == "tiny":
        # here, not at the top: HF_HUB_OFFLINE above must be set before transformers loads
        from .tiny import write_tiny
        out = write_tiny(args.out, args.backbone, args.stage, args.geometry, args.seed)
        print(f"wrote tiny LongVU ({args.backbone}, {args.stage}, {args.geometry}, "
              f"seed {args.seed}) to {out}")
        return 0
    from .parity import run_all  # after HF_HUB_OFFLINE, as above
    results = run_all(args.dir)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
