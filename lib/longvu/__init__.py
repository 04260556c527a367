"""placeholder docstring (rewritten below)"""

from __future__ import annotations


def __getattr__(name):
    if name in ("load", "save", "LongVULoadError", "bnb_config"):
        from . import loading
        return getattr(loading, name)
    if name in ("LongVU", "Flags"):
        from . import model
        return getattr(model, name)
    raise AttributeError(name)
