"""How clustering holds up under corrupted images and mixed-in distractors (CLI: ``imgclust robustness``).

The clean images are embedded and clustered once (a normal run directory is written to
``out``). Then, for every named corruption and severity (:mod:`._corruptions`), every image is
re-embedded corrupted, through a store of its own (``<encoder fingerprint>+<corruption>-<param>
[-seed<s>]-v<version>``, keyed by the original file's hash, so a second run re-encodes
nothing), and reclustered with the clean run's settings (reducer, method, the clean run's k,
seeds). ``distractors`` instead adds a share of unrelated images from another folder and
scores the originals only.

Each (corruption, severity) row has the external scores (with labels), the silhouette, the
agreement with the clean clustering (NMI/ARI of the two labelings: meaningful without labels)
and the mean cosine similarity of each image's corrupted vector to its clean one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ImgclustError
from ._corruptions import CORRUPTIONS, SEVERITIES, corrupt, get_corruption, parse_corruptions

__all__ = ["robustness", "RobustnessResult", "SCORES"]

SCORES = ("acc", "nmi", "ari", "silhouette", "nmi_vs_clean", "ari_vs_clean", "cosine_to_clean")
_CHUNK = 256


@dataclass
class RobustnessResult:
    """One row per (corruption, severity), severity 0 being the clean images."""

    rows: list[dict]
    clean: Any
    config: dict
    out: Path | None = None
    timings: dict = field(default_factory=dict)

    def table(self):
        """The rows as a pyarrow table."""
        import pyarrow as pa

        return pa.Table.from_pylist(self.rows)

    def to_pandas(self):
        """The rows as a pandas DataFrame."""
        return self.table().to_pandas()

    def score(self, corruption: str, severity: int, key: str = "acc") -> float | None:
        """One score of one row (``None`` when not measured)."""
        for r in self.rows:
            if r["corruption"] == corruption and r["severity"] == severity:
                return r.get(key)
        raise KeyError((corruption, severity))


def _embed(records, encoder, store, transform, batch_size: int, adv) -> tuple[dict[str, np.ndarray], int, int]:
    """Vectors by file hash for ``records`` under ``transform``, chunk by chunk (the bar advances per chunk)."""
    from ..pipeline.embed import embed_records

    vectors: dict[str, np.ndarray] = {}
    n_enc = n_cached = 0
    for s in range(0, len(records), _CHUNK):
        chunk = records[s:s + _CHUNK]
        res = embed_records(chunk, encoder, store=store, batch_size=batch_size, progress=False, transform=transform)
        vectors.update(zip(res.hashes, res.embeddings))
        n_enc += res.n_encoded
        n_cached += res.n_cached
        adv(len(chunk))
    return vectors, n_enc, n_cached


def _scores(res, clean, n_orig: int, cosine: float | None) -> dict:
    """The row's scores: external (originals), silhouette, agreement with the clean clustering."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    m = res.metrics
    ext = m.get("external", {})
    ref, lab = clean.labels, res.labels[:n_orig]
    return {"acc": ext.get("acc"), "nmi": ext.get("nmi"), "ari": ext.get("ari"),
            "silhouette": m["internal"].get("silhouette"),
            "nmi_vs_clean": float(normalized_mutual_info_score(ref, lab)),
            "ari_vs_clean": float(adjusted_rand_score(ref, lab)), "cosine_to_clean": cosine,
            "n_images": int(len(res.labels))}


def _clean_run(inputs, encoder, labels, settings: dict, batch_size: int, cache_dir, cache: bool, progress: bool):
    """The clean images embedded and clustered as ``imgclust run`` would (the reference row)."""
    from ..analyze import check_k, cluster_embeddings, validate_options
    from ..pipeline.embed import embed_images
    from ..pipeline.sources import discover
    from ..rundir import run_config

    validate_options(settings["method"], settings["reduce"], settings["map"])
    records = discover(inputs, labels=labels)
    if isinstance(settings["k"], int):
        check_k(settings["method"], settings["k"], len(records), str(settings["method"]))
    emb = embed_images(records, encoder=encoder, batch_size=batch_size, cache_dir=cache_dir, cache=cache,
                       progress=progress)
    cfg = run_config(inputs, emb, labels=labels, batch_size=batch_size, cache_dir=cache_dir, k=settings["k"])
    res = cluster_embeddings(emb.embeddings, emb.records, hashes=emb.hashes, skipped=emb.skipped, config=cfg,
                             progress=progress, **settings)
    res.timings = {**emb.timings(), **res.timings}
    return res


def _plan(corruptions, severities, distractors) -> tuple[list[str], list[int]]:
    """Validated corruption names (``distractors`` only with a folder) and sorted severities."""
    names = [c for c in parse_corruptions(corruptions) if c != "distractors" or distractors is not None]
    sev = sorted({int(s) for s in severities})
    for s in sev:
        get_corruption("jpeg").param(s)  # validates the severity
    if not names:
        raise ImgclustError("no corruption to run (distractors needs --distractors FOLDER)")
    return names, sev


def _run_settings(inputs, given: dict) -> tuple[Any, dict]:
    """A run directory as the input: its images and the settings it was made with replace ``given``."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if len(items) != 1 or not (Path(items[0]) / "clusters.parquet").is_file():
        return inputs, given
    from ..rundir import load_run

    cfg = load_run(items[0])["run"].get("config", {}) or {}
    if not cfg.get("inputs") or cfg.get("from_run") or cfg.get("augment"):
        raise ImgclustError(f"{items[0]} was not made by a plain `imgclust run` on images; give the image folder "
                            "and the settings instead")
    return cfg["inputs"], {**given, **{key: cfg[key] for key in given if cfg.get(key) is not None}}


def _recluster(X, records, settings: dict):
    """Cluster ``X`` exactly as the clean run was (no 2-D map: it is not needed for the scores)."""
    from ..analyze import cluster_embeddings

    return cluster_embeddings(X, records, coords=np.zeros((len(X), 2), np.float32), hashes=None, **settings)


def _corruption_rows(name: str, severities, clean, encoder, settings, opts, adv) -> list[dict]:
    from ..pipeline.embed import open_store

    c = get_corruption(name)
    rows = []
    for sev in severities:
        seed = opts["random_state"]

        def transform(img, key, _sev=sev, _seed=seed):
            return corrupt(img, name, _sev, seed=_seed, key=key)

        store = open_store(encoder, opts["cache_dir"], c.variant(sev, seed)) if opts["cache"] else None
        vecs, n_enc, n_cached = _embed(clean.records, encoder, store, transform, opts["batch_size"], adv)
        missing = [h for h in clean.hashes if h not in vecs]
        if missing:  # decoded clean, so a corrupted copy always encodes; anything else is a bug upstream
            raise ImgclustError(f"{len(missing)} image(s) could not be embedded under {name}")
        X = np.stack([vecs[h] for h in clean.hashes]).astype(np.float32)
        cos = float(np.mean(np.sum(X * clean.embeddings, 1)))
        res = _recluster(X, clean.records, settings)
        rows.append({"corruption": name, "severity": int(sev), "param": float(c.param(sev)),
                     **_scores(res, clean, len(clean.records), cos), "n_encoded": n_enc, "n_cached": n_cached})
    return rows


def _distractor_rows(folder, severities, clean, encoder, settings, opts, adv) -> list[dict]:
    """Mix ``share * n`` distractors (one fixed shuffle, so severities are nested) into the clean set."""
    from ..pipeline.embed import embed_records, open_store
    from ..pipeline.sources import ImageRecord, discover

    c = CORRUPTIONS["distractors"]
    pool = [ImageRecord(r.path) for r in discover(folder, labels="none")]
    order = np.random.default_rng(opts["random_state"]).permutation(len(pool))
    n = len(clean.records)
    need = min(len(pool), int(round(max(c.param(s) for s in severities) * n)))
    pick = [pool[i] for i in order[:need]]
    store = open_store(encoder, opts["cache_dir"]) if opts["cache"] else None
    emb = embed_records(pick, encoder, store=store, batch_size=opts["batch_size"], progress=False)
    adv(len(severities) * n)
    rows = []
    for sev in severities:
        m = min(len(emb.records), int(round(c.param(sev) * n)))
        X = np.concatenate([clean.embeddings, emb.embeddings[:m]]).astype(np.float32)
        res = _recluster(X, list(clean.records) + list(emb.records[:m]), settings)
        rows.append({"corruption": "distractors", "severity": int(sev), "param": float(m / n),
                     **_scores(res, clean, n, None), "n_encoded": emb.n_encoded, "n_cached": emb.n_cached})
    return rows


def _clean_row(name: str, clean) -> dict:
    m = clean.metrics
    ext = m.get("external", {})
    return {"corruption": name, "severity": 0, "param": 0.0, "acc": ext.get("acc"), "nmi": ext.get("nmi"),
            "ari": ext.get("ari"), "silhouette": m["internal"].get("silhouette"), "nmi_vs_clean": 1.0,
            "ari_vs_clean": 1.0, "cosine_to_clean": 1.0 if name != "distractors" else None,
            "n_images": int(len(clean.labels)), "n_encoded": 0, "n_cached": 0}


def robustness(inputs: str | os.PathLike | Sequence[str | os.PathLike], encoder="efficientnet-lite0", *,
               labels: str | None = None, corruptions: str | Sequence[str] | None = "all",
               severities: Sequence[int] = SEVERITIES, distractors: str | os.PathLike | None = None,
               reduce: str = "pca", n_components: int = 50, map: str = "auto", method: str | Any = "kmeans",
               k: int | str | None = 10, seeds: int = 1, random_state: int = 0, device: str = "auto",
               batch_size: int = 64, cache_dir: str | os.PathLike | None = None, cache: bool = True,
               out: str | os.PathLike | None = None, plots: bool = True, report: bool = True,
               method_params: dict | None = None, progress: bool = False) -> RobustnessResult:
    """Re-embed the images under corruptions at several severities and recluster (CLI: ``imgclust robustness``).

    Args:
        inputs: Files, folders, globs or manifests (as for :func:`imgclust.cluster_images`), or
            a run directory: its images and settings (encoder, labels, reducer, method, k,
            seeds, seed) are then used and the corresponding arguments ignored.
        encoder: Encoder name or object.
        labels: ``folder`` or ``manifest`` for ACC/NMI/ARI; without labels the agreement with
            the clean clustering and the silhouette are still reported.
        corruptions: ``"all"`` or names from :data:`imgclust.explore._corruptions.CORRUPTIONS`;
            ``distractors`` is used only when ``distractors`` is given.
        severities: Severities to run, each in 1..5.
        distractors: Folder (or glob/manifest) of unrelated images to mix in.
        reduce: Reducer of the clustering input (as for the clean run).
        n_components: Clustering input dimension.
        map: 2-D map of the clean run (``auto``, ``umap``, ``tsne``, ``pca``).
        method: Clusterer name or estimator.
        k: Clusters (``"auto"`` picks k on the clean images; corrupted runs reuse that k).
        seeds: Clustering seeds per row (scores are means).
        random_state: Seed of the clustering and of the corruptions.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        batch_size: Images per forward pass.
        cache_dir: Embedding cache root.
        cache: Read and fill the caches (clean and corrupted).
        out: Run directory: the clean run plus ``robustness.{parquet,csv,json}``,
            ``plots/robustness.png`` and the report's robustness section.
        plots: Write the plots.
        report: Write ``report.html``.
        method_params: Extra clusterer arguments.
        progress: Show a progress bar.

    Returns:
        A :class:`RobustnessResult` (``rows``; ``clean`` is the clean :class:`~imgclust.ClusteringResult`).
    """
    from ..encoders import create_encoder
    from ..progress import progress_bar

    t0 = time.perf_counter()
    names, sev = _plan(corruptions, severities, distractors)
    inputs, st = _run_settings(inputs, {"encoder": encoder, "labels": labels, "reduce": reduce,
                                        "n_components": n_components, "map": map, "method": method, "k": k,
                                        "seeds": seeds, "random_state": random_state, "method_params": method_params})
    enc = create_encoder(st.pop("encoder"), device=device)
    labels = st.pop("labels")
    settings = {key: st[key] for key in ("reduce", "n_components", "method", "k", "seeds", "random_state",
                                         "method_params")}
    clean = _clean_run(inputs, enc, labels, {**settings, "map": st["map"]}, batch_size, cache_dir, cache, progress)
    settings.update(map="pca", k=clean.config["k"] if clean.config.get("k") else settings["k"])
    opts = {"random_state": settings["random_state"], "cache_dir": cache_dir, "cache": cache, "batch_size": batch_size}
    rows: list[dict] = []
    n = len(clean.records)
    with progress_bar(n * len(sev) * len(names), "robustness", progress) as adv:
        for name in names:
            rows.append(_clean_row(name, clean))
            if name == "distractors":
                rows.extend(_distractor_rows(distractors, sev, clean, enc, settings, opts, adv))
            else:
                rows.extend(_corruption_rows(name, sev, clean, enc, settings, opts, adv))
    config = {"corruptions": names, "severities": sev, "distractors": str(distractors) if distractors else None,
              "params": {nm: list(CORRUPTIONS[nm].params) for nm in names},
              "descriptions": {nm: CORRUPTIONS[nm].description for nm in names}, "encoder": enc.name,
              **{key: settings[key] for key in ("k", "reduce", "n_components", "seeds", "random_state")},
              "method": clean.config.get("method"), "n_images": n, "labels": labels}
    result = RobustnessResult(rows=rows, clean=clean, config=config,
                              timings={"total": time.perf_counter() - t0})
    if out is not None:
        from ._robustness_io import write_robustness

        result.out = write_robustness(result, out, plots=plots, report=report)
    return result
