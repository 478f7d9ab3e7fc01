"""Out-of-core store and run directories: memory-mapped shards, float16, runs that reference the store."""

from __future__ import annotations

import numpy as np
import pytest

from imgclust.pipeline.sources import ImageRecord
from imgclust.pipeline.store import EmbeddingStore

DIM = 8


def _unit(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_large_add_becomes_a_memory_mapped_shard(tmp_path):
    s = EmbeddingStore(tmp_path, "fp", DIM, shard_rows=100)
    v = _unit(150)
    s.add([f"h{i}" for i in range(150)], v)
    assert len(list(s.dir.glob("shard-*.npy"))) == 1 and not list(s.dir.glob("part-*.parquet"))
    s2 = EmbeddingStore(tmp_path, "fp", DIM, shard_rows=100)
    assert isinstance(s2.vectors(), np.memmap)  # one shard: the map itself, no copy
    np.testing.assert_array_equal(s2.vectors(), v)
    assert s2.hashes() == [f"h{i}" for i in range(150)]
    found, got = s2.get(["h149", "nope", "h0"])
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(got, v[[149, 0]])


def test_parts_compact_into_a_shard_and_dedup_across_both(tmp_path):
    s = EmbeddingStore(tmp_path, "fp", DIM, shard_rows=40, compact_every=1000)
    v = _unit(60)
    for i in range(0, 60, 10):
        s.add([f"h{j}" for j in range(i, i + 10)], v[i:i + 10])
    assert len(list(s.dir.glob("part-*.parquet"))) == 6
    s.compact()  # 60 rows >= shard_rows: a shard, no parts left
    assert len(list(s.dir.glob("shard-*.npy"))) == 1 and not list(s.dir.glob("part-*.parquet"))
    s.add(["h0", "new"], _unit(2, 9))  # h0 is already in the shard: only "new" is written
    s3 = EmbeddingStore(tmp_path, "fp", DIM)
    assert len(s3) == 61
    np.testing.assert_array_equal(s3.get(["h0"])[1], v[:1])
    locate = s3.locate(["h5", "h0"])
    assert locate is not None and locate[1].tolist() == [[0, 5], [0, 0]]
    assert s3.locate(["new"]) is None  # still in a parquet part
    s3.seal()
    assert s3.locate(["new"]) is not None


def test_float16_store_halves_the_bytes_and_reads_float32(tmp_path):
    v = _unit(200, dim=64)
    s32 = EmbeddingStore(tmp_path / "a", "fp", 64, shard_rows=10)
    s16 = EmbeddingStore(tmp_path / "b", "fp", 64, shard_rows=10, dtype="float16")
    for s in (s32, s16):
        s.add([f"h{i}" for i in range(200)], v)
    size = {k: next(s.dir.glob("shard-*.npy")).stat().st_size for k, s in (("32", s32), ("16", s16))}
    assert size["16"] < 0.6 * size["32"]
    _, got = EmbeddingStore(tmp_path / "b", "fp", 64).get(["h3"])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[0], v[3], atol=1e-3)


def test_orphan_shard_array_is_ignored_and_cleaned(tmp_path):
    s = EmbeddingStore(tmp_path, "fp", DIM, shard_rows=5)
    s.add([f"h{i}" for i in range(5)], _unit(5))
    np.save(s.dir / "shard-99999999999999999999-dead00.npy", _unit(3))  # killed before its hash file
    s2 = EmbeddingStore(tmp_path, "fp", DIM)
    assert len(s2) == 5
    s2.clean_temp()
    assert len(list(s2.dir.glob("shard-*.npy"))) == 1


def test_store_rejects_a_bad_dtype(tmp_path):
    from imgclust.errors import InputError

    with pytest.raises(InputError, match="float16"):
        EmbeddingStore(tmp_path, "fp", DIM, dtype="int8")


def _result(store, n: int):
    from imgclust.analyze import cluster_embeddings

    hashes = store.hashes()[:n]
    res = cluster_embeddings(store.vectors()[:n], [ImageRecord(f"img-{i}.png") for i in range(n)],
                             reduce="none", map="pca", method="kmeans", k=3, hashes=hashes)
    res.store = store
    return res


@pytest.mark.parametrize("large", [False, True])
def test_run_directory_references_the_store_when_large(tmp_path, monkeypatch, large):
    from imgclust import rundir

    monkeypatch.setattr(rundir, "RUN_REF_ROWS", 50 if large else 10**9)
    store = EmbeddingStore(tmp_path / "cache", "fp", DIM, shard_rows=10**9)  # rows stay in parquet parts
    v = np.concatenate([_unit(40, s) * 0.1 + np.eye(DIM, dtype=np.float32)[s] for s in range(3)])
    store.add([f"h{i}" for i in range(120)], v)
    res = _result(store, 120)
    out = res.save(tmp_path / "run")
    assert (out / "embeddings.npy").exists() != large
    assert (out / "embeddings.ref.json").exists() == large
    run = rundir.load_run(out)
    emb = rundir.run_embeddings(run)
    np.testing.assert_array_equal(emb, v)
    if large:  # sealed into one shard, contiguous rows: read as a view of the memory map
        assert isinstance(run["embeddings"], np.memmap)
        monkeypatch.setattr(rundir, "RUN_REF_ROWS", 10**9)
        res.save(out)  # re-saved small: the copy replaces the reference
        assert (out / "embeddings.npy").exists() and not (out / "embeddings.ref.json").exists()


def test_reference_to_a_deleted_store_is_one_clear_error(tmp_path, monkeypatch):
    import shutil

    from imgclust import rundir
    from imgclust.errors import ImgclustError

    monkeypatch.setattr(rundir, "RUN_REF_ROWS", 10)
    store = EmbeddingStore(tmp_path / "cache", "fp", DIM, shard_rows=10)
    store.add([f"h{i}" for i in range(30)], _unit(30))
    out = _result(store, 30).save(tmp_path / "run")
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(ImgclustError, match="gone"):
        rundir.run_embeddings(rundir.load_run(out))


def test_reference_reads_rows_in_run_order_across_shards(tmp_path, monkeypatch):
    from imgclust import rundir

    monkeypatch.setattr(rundir, "RUN_REF_ROWS", 10)
    store = EmbeddingStore(tmp_path / "cache", "fp", DIM, shard_rows=10)
    v = _unit(40)
    for i in (0, 20):
        store.add([f"h{j}" for j in range(i, i + 20)], v[i:i + 20])
    order = np.random.default_rng(0).permutation(40)
    rundir.write_embeddings(tmp_path, v[order], [f"h{j}" for j in order], store)
    assert not (tmp_path / "embeddings.npy").exists()
    got, err = rundir._read_ref(tmp_path)
    assert err is None
    np.testing.assert_array_equal(got, v[order])


def test_embed_command_fills_the_store_then_run_reuses_it(tmp_path):
    from typer.testing import CliRunner

    from conftest import write_random_images
    from imgclust.cli import app

    write_random_images(tmp_path / "imgs", 12)
    cache = tmp_path / "cache"
    runner = CliRunner()
    res = runner.invoke(app, ["embed", str(tmp_path / "imgs"), "--encoder", "pixels", "--cache-dir", str(cache),
                              "--dtype", "float16", "--quiet"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "embedded 12 new, 0 cached" in res.output
    res = runner.invoke(app, ["embed", str(tmp_path / "imgs"), "--encoder", "pixels", "--cache-dir", str(cache),
                              "--quiet"], env={"COLUMNS": "200"})
    assert "embedded 0 new, 12 cached" in res.output
    bad = runner.invoke(app, ["embed", str(tmp_path / "imgs"), "--encoder", "pixels", "--cache-dir", str(cache),
                              "--dtype", "int8", "--quiet"])
    assert bad.exit_code != 0 and "float16" in bad.output and "Traceback" not in bad.output


def test_engine_ray_without_ray_names_the_install(monkeypatch, tmp_path):
    import builtins
    import sys

    from imgclust.errors import MissingDependencyError
    from imgclust.pipeline.embed import embed_images

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("no ray")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'imgclust\[ray\]'"):
        embed_images([str(tmp_path)], encoder="pixels", engine="ray")
