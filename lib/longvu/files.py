"""Weight files of a checkpoint dir and their key shapes, read from safetensors headers only.

Which files hold the weights (one `model.safetensors`, or the shards an index names: every entry
must be a plain `.safetensors` name inside the dir), every key's shape across them (a key in two
shards is refused), and the header check that names a damaged file and its fix. Safetensors
only: pickles are refused with a conversion recipe. Used by `loading` (checkpoints, towers,
adapters) for notebooks 01, 03, 04.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open

from .errors import LongVULoadError, read_json, refetch_hint

PICKLE_RECIPE = ("Convert once in a trusted environment: torch.load(f, weights_only=True) then "
                 "safetensors.torch.save_file(state_dict, '{name}')")


def shard_name_problem(name) -> str | None:
    """Why an index entry is not a plain file name inside the checkpoint dir (None if it is).

    Only the *name* is judged: a contained name whose file is a symlink (HF cache snapshots
    link into ../../blobs) is fine."""
    if not isinstance(name, str) or not name:
        return "not a file name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "a path with '..'"
    if any(p in ("", ".") for p in parts):
        return "not a normalised relative path"
    if not name.endswith(".safetensors"):
        return "not a .safetensors file"
    return None


def weight_files(ckpt: Path) -> list[Path]:
    """The checkpoint's safetensors files (single file or sharded with an index).

    Index entries must name .safetensors files inside `ckpt` (no absolute paths, no '..');
    a dir holding both an index and model.safetensors is refused (transformers would load the
    single file while the index names other shards)."""
    index = ckpt / "model.safetensors.index.json"
    single = ckpt / "model.safetensors"
    if index.is_file():
        if single.is_file():
            raise LongVULoadError(
                f"{ckpt}: holds both {index.name} and {single.name}; which one is current is "
                "ambiguous (transformers would read model.safetensors, the index names other "
                "shards). Fix: delete the stale one, or re-download the checkpoint.")
        data = read_json(index, "safetensors index")
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise LongVULoadError(f"{index}: no 'weight_map' object; truncated or not a "
                                  f"safetensors index. Fix: {refetch_hint(index)}")
        bad = sorted({f"{v!r} ({why})" for v in weight_map.values()
                      if (why := shard_name_problem(v))})
        if bad:
            raise LongVULoadError(
                f"{index}: weight_map names files that are not plain .safetensors names inside "
                f"{ckpt}: {bad[:10]}; refusing to open them. Fix: use the checkpoint's own "
                f"index ({refetch_hint(index)})")
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (ckpt / s).is_file()]
        if missing:
            raise FileNotFoundError(f"{ckpt}: shards listed in {index.name} are absent: "
                                    f"{missing}; re-run the download of this checkpoint")
        return [ckpt / s for s in shards]
    if single.is_file():
        return [single]
    pickles = sorted(p.name for p in ckpt.glob("*.bin"))
    if pickles:
        raise FileNotFoundError(
            f"{ckpt}: only pickle weights {pickles}; this loader reads safetensors only. "
            + PICKLE_RECIPE.format(name="model.safetensors"))
    raise FileNotFoundError(f"{ckpt}: no model.safetensors or model.safetensors.index.json")


def header_shapes(f: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape from one file's header, or LongVULoadError naming the damaged file."""
    try:
        size = f.stat().st_size
        with safe_open(str(f), "pt") as sf:
            return {k: tuple(sf.get_slice(k).get_shape()) for k in sf.keys()}
    except Exception as e:  # SafetensorError, OSError
        state = "empty (0 bytes)" if f.exists() and size == 0 else f"unreadable ({e})"
        raise LongVULoadError(f"{f}: safetensors file is {state}: truncated or corrupt. Fix: "
                              f"{refetch_hint(f)}") from None


def read_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """Every key's shape across the files; a key stored in two files is refused."""
    shapes: dict[str, tuple[int, ...]] = {}
    where: dict[str, Path] = {}
    dup = []
    for f in files:
        for k, shape in header_shapes(f).items():
            if k in where:
                dup.append(f"{k} ({where[k].name} and {f.name})")
            shapes[k], where[k] = shape, f
    if dup:
        raise LongVULoadError(f"{files[0].parent}: tensors stored in more than one shard, which "
                              f"copy is meant is ambiguous: {dup[:10]}. Fix: re-download the "
                              "checkpoint.")
    return shapes
