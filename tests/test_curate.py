"""Duplicates and outliers of a run: planted exact/near duplicates and planted outliers are found exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgclust.analyze import cluster_embeddings
from imgclust.cli import app
from imgclust.errors import ImgclustError
from imgclust.explore.curate import duplicate_groups, find_duplicates, find_outliers, outlier_scores
from imgclust.pipeline.sources import ImageRecord

pytestmark = pytest.mark.usefixtures("limit_threads")


def _unit(v):
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _planted_duplicates(seed: int = 0):
    """300 random directions in 64-D (pairwise cosine ~0 +- 0.13) plus planted duplicate sets.

    Returns ``(X, hashes, planted)`` where ``planted`` is a list of sets of row indices.
    """
    rng = np.random.default_rng(seed)
    X = list(_unit(rng.standard_normal((300, 64))))
    hashes = [f"h{i}" for i in range(300)]
    planted = []
    for base in range(0, 40, 4):  # 10 near pairs: noise gives cosine ~0.989
        X.append(_unit(X[base] + 0.15 * _unit(rng.standard_normal(64))))
        hashes.append(f"near{base}")
        planted.append({base, len(X) - 1})
    for base in range(100, 110, 2):  # 5 exact copies: same vector, same content hash
        X.append(X[base].copy())
        hashes.append(hashes[base])
        planted.append({base, len(X) - 1})
    # A chain: a ~ b ~ c, a and c further apart than the threshold, still one group.
    a = 200
    b = _unit(X[a] + 0.28 * _unit(rng.standard_normal(64)))
    c = _unit(b + 0.28 * _unit(rng.standard_normal(64)))
    X += [b, c]
    hashes += ["chain-b", "chain-c"]
    planted.append({a, len(X) - 2, len(X) - 1})
    return np.stack(X), hashes, planted


def _save_run(tmp_path: Path, X, hashes=None, labels=None, paths=None) -> Path:
    n = len(X)
    paths = paths or [f"/nowhere/img{i:04d}.png" for i in range(n)]
    records = [ImageRecord(p, None if labels is None else str(labels[i])) for i, p in enumerate(paths)]
    res = cluster_embeddings(X, records, reduce="none", map="pca", k=3, hashes=hashes)
    out = tmp_path / "run"
    res.save(out)
    return out


def _found(res) -> list[set[int]]:
    return [set(g["members"]) for g in res.groups]


def test_planted_duplicates_are_found_exactly(tmp_path):
    X, hashes, planted = _planted_duplicates()
    run = _save_run(tmp_path, X, hashes)
    res = find_duplicates(run, threshold=0.95, report=False)
    found = _found(res)
    assert sorted(map(sorted, found)) == sorted(map(sorted, planted))  # recall 1 and precision 1
    kinds = {frozenset(g["members"]): g["kind"] for g in res.groups}
    for s in planted:
        want = "exact" if len({hashes[i] for i in s}) == 1 else "near"
        assert kinds[frozenset(s)] == want
    a, c = X[200], X[-1]
    assert float(a @ c) < 0.95 < float(a @ X[-2])  # a and c are linked only through b
    assert res.n_removable == sum(len(s) - 1 for s in planted)
    # Files: one row per grouped image, representative first; removal list = the others.
    table = pq.read_table(run / "duplicates.parquet").to_pydict()
    assert len(table["index"]) == sum(len(s) for s in planted)
    assert sum(table["representative"]) == len(planted)
    first_rows = {}
    for g, rep in zip(table["group"], table["representative"]):
        first_rows.setdefault(g, rep)
    assert all(first_rows.values())
    removed = (run / "duplicates_remove.txt").read_text().splitlines()
    assert len(removed) == res.n_removable
    assert set(removed).isdisjoint({table["path"][j] for j, r in enumerate(table["representative"]) if r})
    summary = json.loads((run / "duplicates.json").read_text())
    assert summary["n_exact_groups"] == 5 and summary["n_near_groups"] == 11
    counts = [summary["groups_by_threshold"][t] for t in sorted(summary["groups_by_threshold"], key=float)]
    assert counts[-1] == 5  # at 0.995 only the exact copies remain (near pairs are at ~0.989)
    assert counts[0] >= len(planted)


def test_threshold_and_exact_only(tmp_path):
    X, hashes, planted = _planted_duplicates()
    run = _save_run(tmp_path, X, hashes)
    exact = find_duplicates(run, exact_only=True, report=False)
    assert sorted(map(sorted, _found(exact))) == sorted(sorted(s) for s in planted if len({hashes[i] for i in s}) == 1)
    strict = find_duplicates(run, threshold=0.999, report=False)
    assert all(g["kind"] == "exact" for g in strict.groups) and strict.n_groups == 5
    # Without hashes the exact copies are still found, by similarity 1.
    group, _ = duplicate_groups(X, None, threshold=0.95)
    assert len(set(group.tolist()) - {-1}) == len(planted)


def test_keep_modes(tmp_path):
    X, hashes, planted = _planted_duplicates()
    run = _save_run(tmp_path, X, hashes)
    first = find_duplicates(run, keep="first", report=False)
    assert all(g["representative"] == min(g["members"]) for g in first.groups)
    central = find_duplicates(run, keep="central", report=False)
    chain = next(g for g in central.groups if g["size"] == 3)
    assert chain["representative"] == len(X) - 2  # b sits between a and c
    with pytest.raises(ImgclustError, match="--keep"):
        find_duplicates(run, keep="best", report=False)
    with pytest.raises(ImgclustError, match="--threshold"):
        find_duplicates(run, threshold=1.5, report=False)


def _blobs_with_outliers(seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = _unit(rng.standard_normal((4, 32)))
    X = np.concatenate([_unit(c + 0.15 * rng.standard_normal((80, 32)) / np.sqrt(32)) for c in centers])
    planted = np.arange(len(X), len(X) + 6)
    X = np.concatenate([X, _unit(rng.standard_normal((6, 32)))])
    return X, planted


@pytest.mark.parametrize("method", ["lof", "knn"])
def test_planted_outliers_rank_first(tmp_path, method):
    X, planted = _blobs_with_outliers()
    run = _save_run(tmp_path, X)
    res = find_outliers(run, k=10, method=method, contamination=6 / len(X), report=False)
    assert set(res.indices[:6]) == set(planted.tolist())
    t = pq.read_table(run / "outliers.parquet").to_pydict()
    assert t["rank"] == list(range(1, len(X) + 1))
    assert sum(t["outlier"]) == 6 == res.n_flagged
    assert set(np.asarray(t["index"])[np.asarray(t["outlier"])].tolist()) == set(planted.tolist())
    assert all(a >= b for a, b in zip(t["score"], t["score"][1:]))


def test_lof_sees_local_density_knn_distance_does_not():
    """One image just off a very tight group is local outlier; a loose group is sparse but normal."""
    rng = np.random.default_rng(1)
    c1, c2 = np.eye(64, dtype=np.float32)[0], np.eye(64, dtype=np.float32)[1]
    tight = _unit(c1 + 0.02 * rng.standard_normal((60, 64)))
    loose = _unit(c2 + 0.12 * rng.standard_normal((60, 64)))
    off = _unit(c1 + 0.02 * rng.standard_normal(64) + 0.35 * np.eye(64, dtype=np.float32)[2])
    X = np.concatenate([tight, loose, off[None]])
    s = outlier_scores(X, k=10)
    assert int(np.argmax(s["lof"])) == 120
    assert np.argsort(-s["knn_distance"]).tolist().index(120) > 5  # the loose group's members rank above it


def test_exact_duplicates_do_not_break_lof():
    X, planted = _blobs_with_outliers()
    X = np.concatenate([X, np.repeat(X[:1], 15, axis=0)])  # 16 identical copies of one image
    hashes = [f"h{i}" for i in range(len(X) - 15)] + ["h0"] * 15
    s = outlier_scores(X, k=10, hashes=hashes)
    assert np.isfinite(s["lof"]).all()
    assert set(np.argsort(-s["lof"])[:6].tolist()) == set(planted.tolist())


def test_on_images_end_to_end_with_report_and_cli(tmp_path):
    from run_fixtures import make_run

    run_dir, images, result = make_run(tmp_path, per_class=8, plots=False, report=False)
    src = Path(result.paths[3])
    # Exact byte copy and a 2x upscaled re-encoded copy of one image, added as a new run.
    shutil.copy(src, images / "red" / "copy_exact.png")
    Image.open(src).resize((96, 96), Image.BICUBIC).save(images / "red" / "copy_big.png")
    from imgclust.api import cluster_images

    run2 = tmp_path / "run2"
    res2 = cluster_images([str(images)], encoder="pixels", k=3, labels="folder", map="pca",
                          cache_dir=tmp_path / "cache", out=run2, plots=False, report=False, progress=False)
    idx = {Path(p).name: i for i, p in enumerate(res2.paths)}
    # The fixture's images are plain generated shapes, which a 63-bit pHash cannot tell apart within a
    # class; this test is about the cosine threshold and the representative, so pHash links are off.
    dup = find_duplicates(run2, threshold=0.98, keep="largest", phash=False)
    group = next(g for g in dup.groups if idx[src.name] in g["members"])
    assert set(group["members"]) == {idx[src.name], idx["copy_exact.png"], idx["copy_big.png"]}
    assert group["representative"] == idx["copy_big.png"]  # most pixels
    out = find_outliers(run2, k=5)
    html = (run2 / "report.html").read_text()
    assert 'id="curation-section"' in html and "duplicates.parquet" in html
    from imgclust.report.builder import report_payload

    data, _ = report_payload(run2)
    assert data["curation"]["duplicates"]["groups"][0]["members"][0] == group["representative"]
    assert [o["i"] for o in data["curation"]["outliers"]["top"]][:5] == out.indices[:5]

    runner = CliRunner()
    r = runner.invoke(app, ["duplicates", str(run2), "--threshold", "0.98", "--no-phash", "--no-report"])
    assert r.exit_code == 0, r.output
    assert f"{dup.n_groups} duplicate groups" in " ".join(r.output.split())
    r = runner.invoke(app, ["outliers", str(run2), "--top", "3", "--no-report"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["duplicates", str(run2), "--threshold", "2"])
    assert r.exit_code != 0 and "--threshold" in r.output


def test_api_twins_are_exported():
    import imgclust

    assert imgclust.find_duplicates is find_duplicates and imgclust.find_outliers is find_outliers


CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-test"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not CIFAR.is_dir(), reason=f"CIFAR-10 folder not found at {CIFAR}")
def test_cifar_near_duplicates_recall_and_precision(tmp_path):
    """Re-encoded (JPEG q90/q50/q30), resized (2x, 0.75x) and cropped (1-2 px) copies of real 32-px photos.

    The issue's target: recall >= 0.95 at precision >= 0.95 with the defaults (cosine 0.9 + pHash links).
    """
    import itertools

    from imgclust.api import cluster_images

    folder = tmp_path / "images"
    folder.mkdir()
    originals = [p for c in sorted(CIFAR.iterdir()) for p in sorted(c.glob("*.jpg"))[:30]]
    copies = {}
    edits = [("jpg", lambda im: im, 90), ("jpg", lambda im: im, 50), ("jpg", lambda im: im, 30),
             ("png", lambda im: im.resize((64, 64), Image.BICUBIC), None),
             ("png", lambda im: im.resize((24, 24), Image.BICUBIC), None),
             ("png", lambda im: im.crop((1, 1, 31, 31)), None), ("png", lambda im: im.crop((2, 2, 30, 30)), None)]
    for j, src in enumerate(originals[::3]):
        ext, edit, quality = edits[j % len(edits)]
        dst = folder / f"copy{j:03d}.{ext}"
        edit(Image.open(src).convert("RGB")).save(dst, **({"quality": quality} if quality else {}))
        copies[str(dst)] = str(src)
    run = tmp_path / "run"
    res = cluster_images([str(p) for p in originals] + [str(folder)], k=10, map="pca", cache_dir=tmp_path / "cache",
                         out=run, plots=False, report=False, progress=False)
    dup = find_duplicates(run, report=False)  # the default threshold
    paths = res.paths
    truth = {frozenset((paths.index(c), paths.index(o))) for c, o in copies.items()}
    predicted = {frozenset(p) for g in dup.groups for p in itertools.combinations(g["members"], 2)}
    # Pairs of two CIFAR originals are not planted; they are left out of precision (the set may hold some).
    with_copy = {p for p in predicted if any(paths[i] in copies for i in p)}
    recall = len(truth & predicted) / len(truth)
    precision = len(truth & with_copy) / max(1, len(with_copy))
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)


def test_a_sampled_report_shows_every_curation_member_with_whole_counts(tmp_path):
    """Past the report's cap the curation rows join the sample and are renumbered to page positions."""
    from imgclust.report.builder import report_payload

    X, hashes, _ = _planted_duplicates()
    recs = [ImageRecord(f"img/{i:04d}.png") for i in range(len(hashes))]
    res = cluster_embeddings(X, recs, reduce="none", map="pca", method="kmeans", k=4, hashes=hashes)
    res.save(tmp_path)
    dup = find_duplicates(tmp_path, threshold=0.98, report=False)
    out = find_outliers(tmp_path, k=5, report=False)
    data, thumbs = report_payload(tmp_path, max_points=60)  # lowered cap: a sampled page
    assert data["rows"] is not None and data["n_total"] == len(X) and data["n"] < len(X)
    tidx = data["thumb"] or list(range(data["n"]))  # thumbnails are shared by identical files
    cur, rows = data["curation"], np.asarray(data["rows"])
    assert cur["duplicates"]["n_groups"] == dup.n_groups >= 10  # counts of the whole run
    by_members = {frozenset(rows[g["members"]].tolist()): g for g in cur["duplicates"]["groups"]}
    assert set(by_members) == {frozenset(g["members"]) for g in dup.groups}  # every member, mapped back
    for g in cur["duplicates"]["groups"]:
        assert g["size"] == len(g["members"]) and g["representative"] in g["members"]
        assert all(data["paths"][i] == recs[rows[i]].path and tidx[i] < len(thumbs) for i in g["members"])
    top = [int(rows[o["i"]]) for o in cur["outliers"]["top"]]
    assert top == list(out.indices[:len(top)]) and len(top) == min(len(X), 120)
    assert max(max(g["members"]) for g in cur["duplicates"]["groups"]) < data["n"]


def _texture(seed: int, size: int = 64) -> Image.Image:
    """A smooth random colour texture (distinct per seed, like a photo's low frequencies)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.normal(size=(size, size, 3)), (4, 4, 0))
    a = (a - a.min()) / (a.max() - a.min()) * 255
    return Image.fromarray(a.astype(np.uint8))


def test_phash_survives_heavy_reencoding_and_resizing_but_separates_distinct_images(tmp_path):
    from imgclust.explore._phash import hamming, phashes

    paths, pairs = [], []
    for i in range(30):
        im = _texture(i)
        im.save(tmp_path / f"o{i}.png")
        oi = len(paths)
        paths.append(str(tmp_path / f"o{i}.png"))
        for kind, dst in (("q30", tmp_path / f"c{i}_q30.jpg"), ("small", tmp_path / f"c{i}_small.png")):
            (im if kind == "q30" else im.resize((48, 48), Image.BICUBIC)).save(dst, **({"quality": 30} if
                                                                                    kind == "q30" else {}))
            pairs.append((oi, len(paths)))
            paths.append(str(dst))
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "flat.png")
    codes, valid = phashes([*paths, str(tmp_path / "flat.png")])
    assert valid[:-1].all() and not valid[-1]  # a flat image gets no hash (it would collide with every flat one)
    a, b = np.array(pairs).T
    assert hamming(codes, a, b).max() <= 8
    o = np.arange(0, len(paths), 3)
    ia, ib = np.triu_indices(len(o), 1)
    assert hamming(codes, o[ia], o[ib]).min() > 8


def test_phash_links_groups_the_cosine_misses(tmp_path):
    """Copies at cosine 0.7 (below every cosine threshold) are grouped only through their pHash."""
    from imgclust.explore._phash import phashes

    rng = np.random.default_rng(0)
    paths, X = [], []
    for i in range(20):
        _texture(100 + i).save(tmp_path / f"o{i}.png")
        _texture(100 + i).save(tmp_path / f"c{i}.jpg", quality=40)
        v = _unit(rng.normal(size=32))
        w = _unit(0.7 * v + np.sqrt(1 - 0.49) * _unit(rng.normal(size=32)))
        paths += [str(tmp_path / f"o{i}.png"), str(tmp_path / f"c{i}.jpg")]
        X += [v, w]
    X = np.asarray(X, np.float32)
    plain, _ = duplicate_groups(X, threshold=0.9)
    assert (plain < 0).all()
    group, _ = duplicate_groups(X, threshold=0.9, phash=phashes(paths))
    assert sorted(tuple(np.flatnonzero(group == g)) for g in range(group.max() + 1)) == [
        (2 * i, 2 * i + 1) for i in range(20)]
