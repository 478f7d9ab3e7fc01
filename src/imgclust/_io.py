"""Atomic file writes and JSON encoding shared by every stage that writes to disk.

Every output imgclust writes (cache parts, run-directory files, reports) goes through these:
a temp file beside the target, fsync, then rename, so a killed process never leaves a half
written file behind.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["default_cache_dir", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "jsonable", "tmp_name"]


def default_cache_dir() -> Path:
    """``$IMGCLUST_CACHE``, else ``$XDG_CACHE_HOME/imgclust``, else ``~/.cache/imgclust``."""
    env = os.environ.get("IMGCLUST_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "imgclust"


def tmp_name(path: Path) -> Path:
    """A hidden, unique temp name in the same folder as ``path`` (same filesystem: rename is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays turned into Python values and NaN/inf into ``None``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (through :func:`jsonable`), atomically."""
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2))


def atomic_write_table(path: str | os.PathLike, table, csv: bool = False) -> None:
    """Write a pyarrow ``table`` to ``path`` (Parquet) atomically; with ``csv`` also ``path`` as ``.csv``."""
    import io

    import pyarrow.parquet as pq

    path = Path(path)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())
    if csv:
        import pyarrow.csv as pacsv

        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        atomic_write_bytes(path.with_suffix(".csv"), buf.getvalue())
