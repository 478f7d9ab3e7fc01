"""Store files: parquet parts (small, incremental) and memory-mapped ``.npy`` shards (large).

A shard is ``shard-<time>-<id>.npy`` (an (N, D) float32 or float16 array) plus
``shard-<time>-<id>.hashes.parquet`` (one ``hash`` per row). The array is renamed into place
first and the hash file last, so a shard exists only once both are complete: a killed writer
leaves an orphan ``.npy`` that loading ignores, never a half shard.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np

from .._io import tmp_name
from .._rows import take_rows  # noqa: F401  (re-exported: the store gathers rows with it)

__all__ = ["read_part", "write_part", "read_shard", "write_shard", "shard_files", "part_files", "take_rows"]


def part_files(folder: Path) -> list[Path]:
    """Parquet parts, oldest first."""
    return sorted(folder.glob("part-*.parquet"))


def shard_files(folder: Path) -> list[Path]:
    """Complete shards (their hash file exists), oldest first, as the ``.npy`` paths."""
    return sorted(p.with_name(p.name[:-len(".hashes.parquet")] + ".npy")
                  for p in folder.glob("shard-*.hashes.parquet"))


def _fsync_rename(tmp: Path, name: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, name)


def read_part(path: Path, dim: int) -> tuple[list[str], np.ndarray] | None:
    """``(hashes, float32 vectors)`` of a parquet part, or ``None`` when foreign, damaged, empty or of another dim."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception:  # a foreign or damaged file: ignore it rather than lose the cache
        return None
    if len(table) == 0:
        return None
    vec = table.column("vector").combine_chunks()
    arr = vec.values.to_numpy(zero_copy_only=False).reshape(len(table), -1).astype(np.float32, copy=False)
    if arr.shape[1] != dim:
        return None
    return table.column("hash").to_pylist(), arr


def write_part(folder: Path, hashes: list[str], vectors: np.ndarray, dim: int, name: str | None = None) -> Path:
    """Write one parquet part atomically (temp file, fsync, rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "hash": pa.array(hashes, pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(vectors, np.float32).reshape(-1),
                                                             pa.float32()), dim),
    })
    path = folder / (name or f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.parquet")
    tmp = tmp_name(path)
    pq.write_table(table, tmp)
    _fsync_rename(tmp, path)
    return path


def read_shard(path: Path, dim: int) -> tuple[list[str], np.memmap] | None:
    """``(hashes, memory-mapped vectors)`` of a shard, or ``None`` when incomplete or inconsistent."""
    import pyarrow.parquet as pq

    try:
        hashes = pq.read_table(path.with_name(path.name[:-4] + ".hashes.parquet")).column("hash").to_pylist()
        arr = np.load(path, mmap_mode="r")
    except Exception:
        return None
    if arr.ndim != 2 or arr.shape[1] != dim or len(arr) != len(hashes) or not len(hashes):
        return None
    return hashes, arr


def write_shard(folder: Path, hashes: list[str], vectors: np.ndarray, dtype: str = "float32") -> Path:
    """Write a shard: the array first, the hash file last (its rename is the commit)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stem = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}"
    npy = folder / f"{stem}.npy"
    tmp = tmp_name(npy)
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(vectors, dtype=np.dtype(dtype)))
    _fsync_rename(tmp, npy)
    hpath = folder / f"{stem}.hashes.parquet"
    tmp = tmp_name(hpath)
    pq.write_table(pa.table({"hash": pa.array(list(hashes), pa.string())}), tmp)
    _fsync_rename(tmp, hpath)
    return npy
