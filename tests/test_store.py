"""The embedding store: round trips, de-duplication, compaction, incremental runs, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import write_random_images
from imgclust.encoders import create_encoder
from imgclust.pipeline.embed import embed_records
from imgclust.pipeline.sources import ImageRecord, file_hash, load_image
from imgclust.pipeline.store import EmbeddingStore

DIM = 4


def _vecs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def test_add_get_round_trip_in_order(tmp_path):
    s = EmbeddingStore(tmp_path, "fp", DIM, spec={"name": "test"})
    v = _vecs(3)
    s.add(["a", "b", "c"], v)
    assert len(s) == 3 and "b" in s and "z" not in s
    found, got = s.get(["c", "z", "a"])
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(got, v[[2, 0]])
    assert (tmp_path / "embeddings" / "fp" / "spec.json").exists()


def test_reopen_sees_rows(tmp_path):
    v = _vecs(5)
    EmbeddingStore(tmp_path, "fp", DIM).add(list("abcde"), v)
    s2 = EmbeddingStore(tmp_path, "fp", DIM)
    assert len(s2) == 5
    found, got = s2.get(list("edcba"))
    assert found.all()
    np.testing.assert_array_equal(got, v[::-1])
    # A different fingerprint is a different store.
    assert len(EmbeddingStore(tmp_path, "other", DIM)) == 0


def test_dedup_by_hash(tmp_path):
    s = EmbeddingStore(tmp_path, "fp", DIM)
    v = _vecs(3)
    s.add(["a", "b", "a"], v)  # duplicate inside one batch: first occurrence wins
    s.add(["b", "c"], _vecs(2, seed=1))  # "b" already stored: only "c" is written
    assert len(s) == 3
    assert len(list(s.dir.glob("part-*.parquet"))) == 2
    _, got = s.get(["a", "b"])
    np.testing.assert_array_equal(got, v[:2])
    s.add(["a", "c"], _vecs(2, seed=2))  # nothing new: no new part
    assert len(list(s.dir.glob("part-*.parquet"))) == 2
    s2 = EmbeddingStore(tmp_path, "fp", DIM)
    assert len(s2) == 3
    np.testing.assert_array_equal(s2.get(["a", "b"])[1], v[:2])


def test_duplicate_rows_on_disk_are_dropped_on_load(tmp_path):
    a = EmbeddingStore(tmp_path, "fp", DIM)
    b = EmbeddingStore(tmp_path, "fp", DIM)  # two writers that both add "x"
    v = _vecs(1)
    a.add(["x"], v)
    b.add(["x", "y"], np.concatenate([v, _vecs(1, 5)]))
    s = EmbeddingStore(tmp_path, "fp", DIM)
    assert len(s) == 2
    np.testing.assert_array_equal(s.get(["x"])[1], v)


def test_compaction_keeps_all_rows(tmp_path):
    s = EmbeddingStore(tmp_path, "fp", DIM, compact_every=4)
    all_v = []
    for i in range(10):
        v = _vecs(3, seed=i)
        all_v.append(v)
        s.add([f"h{i}-{j}" for j in range(3)], v)
    parts = list(s.dir.glob("part-*.parquet"))
    assert len(parts) < 4  # compacted along the way
    expected = np.concatenate(all_v)
    keys = [f"h{i}-{j}" for i in range(10) for j in range(3)]
    for store in (s, EmbeddingStore(tmp_path, "fp", DIM)):
        found, got = store.get(keys)
        assert found.all() and len(store) == 30
        np.testing.assert_array_equal(got, expected)
    s.compact()
    assert len(list(s.dir.glob("part-*.parquet"))) == 1
    found, got = EmbeddingStore(tmp_path, "fp", DIM).get(keys)
    assert found.all()
    np.testing.assert_array_equal(got, expected)


def test_compaction_keeps_rows_written_by_another_process(tmp_path):
    a = EmbeddingStore(tmp_path, "fp", DIM, compact_every=1000)
    b = EmbeddingStore(tmp_path, "fp", DIM, compact_every=1000)
    a.add(["a"], _vecs(1, 0))
    b.add(["b"], _vecs(1, 1))  # a never loaded this part
    a.add(["c"], _vecs(1, 2))
    a.compact()
    s = EmbeddingStore(tmp_path, "fp", DIM)
    assert len(s) == 3
    np.testing.assert_array_equal(s.get(["b"])[1], _vecs(1, 1))


def test_damaged_temp_and_empty_files_do_not_break_loading(tmp_path):
    s = EmbeddingStore(tmp_path, "fp", DIM)
    v = _vecs(2)
    s.add(["a", "b"], v)
    (s.dir / ".part-00000000000000000001-abc.parquet.deadbeef.tmp").write_bytes(b"PAR1 half written")
    (s.dir / "part-99999999999999999999-zzz.parquet").write_bytes(b"garbage, not parquet")
    empty = pa.table({"hash": pa.array([], pa.string()),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array([], pa.float32()), DIM)})
    pq.write_table(empty, s.dir / "part-99999999999999999998-emp.parquet")
    wrong = pa.table({"hash": pa.array(["w"], pa.string()),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array([1.0] * 3, pa.float32()), 3)})
    pq.write_table(wrong, s.dir / "part-99999999999999999997-dim.parquet")
    s2 = EmbeddingStore(tmp_path, "fp", DIM)
    assert len(s2) == 2 and "w" not in s2
    np.testing.assert_array_equal(s2.get(["a", "b"])[1], v)
    s2.clean_temp()
    assert not list(s2.dir.glob(".*.tmp"))


# --------------------------------------------------------------------------- incremental embedding
def test_embed_images_only_new_or_changed(tmp_path):
    from imgclust.pipeline.embed import embed_images

    folder = tmp_path / "imgs"
    paths = write_random_images(folder, 12)
    cache = tmp_path / "cache"
    r1 = embed_images(folder, encoder="pixels", cache_dir=cache)
    assert (r1.n_encoded, r1.n_cached) == (12, 0)
    assert r1.embeddings.shape == (12, 32 * 32 * 3)
    r2 = embed_images(folder, encoder="pixels", cache_dir=cache)
    assert (r2.n_encoded, r2.n_cached) == (0, 12)
    np.testing.assert_array_equal(r1.embeddings, r2.embeddings)
    # Modify one file, add one: exactly two encodings.
    Image.new("RGB", (8, 8), (1, 2, 3)).save(paths[3])
    write_random_images(folder, 1, seed=99, start=100)
    r3 = embed_images(folder, encoder="pixels", cache_dir=cache)
    assert (r3.n_encoded, r3.n_cached) == (2, 11)
    assert len(r3.records) == 13
    fresh = create_encoder("pixels").encode_images([load_image(r.path) for r in r3.records])
    np.testing.assert_allclose(r3.embeddings, fresh, atol=1e-6)


def test_identical_content_encoded_once(tmp_path):
    folder = tmp_path / "imgs"
    paths = write_random_images(folder, 3)
    for i in range(2):
        (folder / f"copy{i}.png").write_bytes(paths[0].read_bytes())
    calls = []
    enc = create_encoder("pixels")
    real = enc.encode_images

    def counting(images):
        calls.append(len(images))
        return real(images)

    enc.encode_images = counting
    store = EmbeddingStore(tmp_path / "cache", enc.fingerprint(), enc.dim)
    recs = [ImageRecord(str(p)) for p in sorted(folder.iterdir())]
    res = embed_records(recs, enc, store=store, progress=False)
    assert sum(calls) == 3 and res.n_encoded == 3
    assert len(res.records) == 5 and len(store) == 3
    by_name = {Path(r.path).name: v for r, v in zip(res.records, res.embeddings)}
    np.testing.assert_array_equal(by_name["copy0.png"], by_name["img0000.png"])
    np.testing.assert_array_equal(by_name["copy1.png"], by_name["img0000.png"])


def test_bad_files_skipped_with_reasons(tmp_path):
    folder = tmp_path / "imgs"
    write_random_images(folder, 3)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("hello")
    enc = create_encoder("pixels")
    res = embed_records([ImageRecord(str(p)) for p in sorted(folder.iterdir())] + [ImageRecord(str(folder / "x.png"))],
                        enc, store=EmbeddingStore(tmp_path / "c", enc.fingerprint(), enc.dim), progress=False)
    assert len(res.records) == 3
    assert [(Path(s["path"]).name, s["reason"].split(":")[0]) for s in res.skipped] == [
        ("empty.png", "empty file"), ("text.jpg", "not an image"), ("x.png", "unreadable")]


def test_interrupt_keeps_encoded_batches(tmp_path):
    """Ctrl-C mid-run: batches already encoded are flushed, so the re-run resumes from there."""
    folder = tmp_path / "imgs"
    write_random_images(folder, 50)
    recs = [ImageRecord(str(p)) for p in sorted(folder.iterdir())]
    enc = create_encoder("pixels")
    real = enc.encode_images
    n_batches = []

    def flaky(images):
        n_batches.append(1)
        if len(n_batches) == 4:
            raise KeyboardInterrupt
        return real(images)

    enc.encode_images = flaky
    store = EmbeddingStore(tmp_path / "cache", enc.fingerprint(), enc.dim)
    with pytest.raises(KeyboardInterrupt):
        embed_records(recs, enc, store=store, batch_size=10, flush_every=1000, progress=False)
    assert len(EmbeddingStore(tmp_path / "cache", enc.fingerprint(), enc.dim)) == 30
    enc.encode_images = real
    res = embed_records(recs, enc, store=EmbeddingStore(tmp_path / "cache", enc.fingerprint(), enc.dim),
                        batch_size=10, progress=False)
    assert (res.n_encoded, res.n_cached) == (20, 30)


# --------------------------------------------------------------------------- resume after SIGKILL
_SLOW_EMBED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from imgclust.pipeline.embed import embed_records
    from imgclust.encoders import create_encoder
    from imgclust.pipeline.sources import ImageRecord
    from imgclust.pipeline.store import EmbeddingStore

    folder, cache = sys.argv[1], sys.argv[2]
    enc = create_encoder("pixels")
    real = enc.encode_images

    def slow(images):
        time.sleep(0.1)
        return real(images)

    enc.encode_images = slow
    store = EmbeddingStore(cache, enc.fingerprint(), enc.dim, compact_every=4)
    recs = [ImageRecord(str(p)) for p in sorted(Path(folder).iterdir())]
    embed_records(recs, enc, store=store, batch_size=10, flush_every=20, workers=2, progress=False)
    print("finished")
""")


@pytest.mark.timeout(90)
def test_resume_after_sigkill(tmp_path):
    folder = tmp_path / "imgs"
    paths = write_random_images(folder, 300)
    cache = tmp_path / "cache"
    enc = create_encoder("pixels")
    store_dir = cache / "embeddings" / enc.fingerprint()
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_EMBED, str(folder), str(cache)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list(store_dir.glob("part-*.parquet")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no part file appeared"
            time.sleep(0.01)
        time.sleep(0.35)  # let it get a few more flushes (and maybe a compaction) in
        assert proc.poll() is None, "the embedding finished before it could be killed; slow it down"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL and b"finished" not in out
    # Simulate the worst case too: a kill in the middle of writing a part leaves a temp file.
    (store_dir / ".part-00000000000000000042-kill.parquet.0badf00d.tmp").write_bytes(b"PAR1\x00\x00truncated")

    store = EmbeddingStore(cache, enc.fingerprint(), enc.dim)
    n_saved = len(store)
    assert 0 < n_saved < 300 and n_saved % 20 == 0  # whole flushes only
    by_hash = {file_hash(str(p)): p for p in paths}
    saved = list(store._index)
    assert len(set(saved)) == len(saved) and set(saved) <= set(by_hash)
    found, vecs = store.get(saved)
    assert found.all()
    fresh = enc.encode_images([load_image(str(by_hash[h])) for h in saved])
    np.testing.assert_allclose(vecs, fresh, atol=1e-6)

    calls = []
    real = enc.encode_images
    enc.encode_images = lambda imgs: calls.append(len(imgs)) or real(imgs)
    res = embed_records([ImageRecord(str(p)) for p in paths], enc, store=store, batch_size=32, progress=False)
    assert res.n_cached == n_saved and res.n_encoded == 300 - n_saved == sum(calls)
    assert [r.path for r in res.records] == [str(p) for p in paths]
    final = EmbeddingStore(cache, enc.fingerprint(), enc.dim)
    assert len(final) == 300 and set(final._index) == set(by_hash)
    np.testing.assert_allclose(res.embeddings, real([load_image(str(p)) for p in paths]), atol=1e-6)
