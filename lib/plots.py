"""One plotting style and ``save_figure`` (PNG + PDF with deterministic metadata).

Used by notebooks 01-05 for every report figure; figures land in ``figures/`` (tests redirect
them with ``WORKBOOK_FIGURES_DIR``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

from lib import paths

DPI = 150
PALETTE = "colorblind"


def set_style() -> None:
    """The workbook's one seaborn theme; notebooks never call ``sns.set`` themselves."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": DPI, "svg.hashsalt": "workbook",
                                "figure.autolayout": False})


def save_figure(fig, name: str, out_dir: Path | str | None = None) -> list[Path]:
    """Write ``<figures>/<name>.png`` and ``.pdf``; the same figure gives the same bytes."""
    out = Path(out_dir) if out_dir is not None else paths.figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None,
                                                            "Producer": None})):
        p = out / f"{name}.{ext}"
        fig.savefig(p, format=ext, bbox_inches="tight", metadata=meta)
        written.append(p)
    return written
