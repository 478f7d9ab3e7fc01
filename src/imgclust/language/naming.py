"""Name clusters with words: CLIP-style text towers, or an ImageNet classifier head.

Two paths, picked from the run's encoder (re-created from ``run.json``):

* **Text tower** (CLIP, SigLIP, a fine-tuned ``hf:DIR``): every vocabulary name is embedded
  through a set of prompt templates ("a photo of a {}.", "a close-up photo of a {}.", ...) and
  the normalised template embeddings are averaged (prompt ensembling). The logit of image
  ``x`` for name ``v`` is ``l(x, v) = T * cos(x, v)`` with ``T`` the model's own temperature
  (CLIP's ``logit_scale.exp()``; 100 when the model has none), and the logit of a whole
  cluster is that of its centroid (the normalised mean of its members' embeddings from
  ``embeddings.npy``: the encoder's joint image-text space, not the reduced clustering space).

* **Classifier head** (the offline ``efficientnet-lite0`` and its ImageNet-1k head): up to
  ``sample`` members closest to each cluster's centre are re-read from disk; ``l(x, v)`` is the
  log-probability of class ``v`` and a cluster's logit is the log of its members' mean
  probability.

Both paths then score every (cluster ``c``, name ``v``) the same way: a soft vote of the
members over names, on logits from which each name's fit to the *other* clusters is partly
subtracted::

    b(c, v)     = mean over clusters c' != c of l(c', v)     (0 when there is one cluster)
    score(c, v) = mean over members x of c of softmax over names v of [l(x, v) - lambda * b(c, v)]

``lambda`` (``contrast``, default 0.5) sets the contrast against the other centroids: 0 is
plain zero-shot classification of the members (the globally most likely word wins, e.g. a
generic "photo" or "object" that fits every cluster), 1 ranks purely by how much better a
name fits this cluster than the others (which can favour a name that fits nothing well, only
slightly less badly). In between, a name wins by describing the cluster's members *and*
separating the cluster from the rest. Scores are per-cluster distributions over the
vocabulary (in [0, 1], summing to 1), so "0.9" means nine members in ten vote for the name.

Encoders with neither (``pixels``, DINO, ViT) raise :class:`~imgclust.errors.ImgclustError`.

Vocabularies and prompts are in :mod:`imgclust.language.vocab`; writing back is
:mod:`imgclust.language._naming_io`. Results are written back into the run directory: a ``cluster_name`` column in
``clusters.parquet``/``clusters.csv``; ``cluster_names`` (cluster id -> best name),
``cluster_name_scores`` (cluster id -> ranked ``{"name", "score"}``) and ``naming`` (how) in
``metrics.json``; the labelled plots; and ``report.html`` when the run has one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ImgclustError
from ._naming_io import save_names
from .vocab import BUILTIN_VOCABS, DEFAULT_TEMPLATES, imagenet_classes, load_vocab, prompt_embeddings

__all__ = [
    "BUILTIN_VOCABS",
    "DEFAULT_TEMPLATES",
    "SCORE_FORMULA",
    "load_vocab",
    "imagenet_classes",
    "contrastive_scores",
    "name_clusters",
    "prompt_embeddings",
]

SCORE_FORMULA = ("mean over members x of softmax over names v of "
                 "[l(x, v) - contrast * mean over other clusters c' of l(c', v)]")


def _vocab_label(vocab) -> str:
    if vocab is None:
        return "auto"
    if isinstance(vocab, (str, os.PathLike)):
        return str(vocab)
    return f"list of {len(list(vocab))} names"


def _logit_scale(encoder) -> float:
    """The model's own softmax temperature (CLIP's exp(logit_scale)), capped like CLIP at 100."""
    scale = getattr(getattr(encoder, "model", None), "logit_scale", None)
    try:
        value = float(scale.detach().float().exp().item()) if scale is not None else 100.0
    except (AttributeError, TypeError, ValueError):  # pragma: no cover - an odd model
        value = 100.0
    return float(min(max(value, 1.0), 100.0))


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def contrastive_scores(member_logits: Sequence[np.ndarray], cluster_logits: np.ndarray, contrast: float = 0.5,
                       chunk: int = 4096) -> np.ndarray:
    """Per-cluster name scores: the members' soft vote on contrast-corrected logits.

    Args:
        member_logits: One (n_c, V) array per cluster: logits of its members for every name.
        cluster_logits: (K, V) logits of each cluster as a whole (centroid / mean probability).
        contrast: ``lambda``: how much of a name's mean logit over the *other* clusters is
            subtracted before the vote (0 = plain zero-shot, 1 = full contrast).
        chunk: Members per softmax block (bounds memory for big clusters and vocabularies).

    Returns:
        (K, V) scores; each row is a distribution over the names.
    """
    cluster_logits = np.asarray(cluster_logits, np.float64)
    k = len(member_logits)
    total = cluster_logits.sum(0)
    out = np.zeros((k, cluster_logits.shape[1]), np.float64)
    for j, L in enumerate(member_logits):
        base = (total - cluster_logits[j]) / (k - 1) if k > 1 else np.zeros_like(total)
        acc = np.zeros(cluster_logits.shape[1], np.float64)
        for s in range(0, len(L), chunk):
            acc += _softmax(np.asarray(L[s:s + chunk], np.float64) - contrast * base, axis=1).sum(0)
        out[j] = acc / max(1, len(L))
    return out


def _text_logits(X: np.ndarray, labels: np.ndarray, ids: list[int], text: np.ndarray, scale: float):
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    text = np.asarray(text, np.float32)
    members, cents = [], np.zeros((len(ids), X.shape[1]), np.float64)
    for j, c in enumerate(ids):
        Xc = X[labels == c]
        members.append(scale * (Xc @ text.T))
        cen = Xc.astype(np.float64).mean(0)
        cents[j] = cen / max(np.linalg.norm(cen), 1e-12)
    return members, scale * (cents @ text.T.astype(np.float64))


def _classifier_logits(encoder, paths: list[str], labels: np.ndarray, distances: np.ndarray, ids: list[int],
                       sample: int, batch_size: int = 32):
    from ..pipeline.sources import DecodeError, load_image

    d = np.nan_to_num(np.asarray(distances, np.float64), nan=np.inf)
    members, means = [], []
    n_read = 0
    for c in ids:
        idx = np.flatnonzero(labels == c)
        idx = idx[np.argsort(d[idx], kind="stable")][:max(1, sample)]  # the most typical members
        probs = []
        batch: list = []
        for i in idx:
            try:
                batch.append(load_image(paths[i]))
            except DecodeError:
                continue  # moved or deleted since the run: name from the others
            if len(batch) == batch_size:
                probs.append(encoder.predict_proba(batch))
                batch = []
        if batch:
            probs.append(encoder.predict_proba(batch))
        if not probs:
            raise ImgclustError(f"none of cluster {c}'s images could be read again (moved or deleted?)")
        P = np.concatenate(probs).astype(np.float64)
        n_read += len(P)
        members.append(np.log(np.maximum(P, 1e-12)))
        means.append(np.log(np.maximum(P.mean(0), 1e-12)))
    return members, np.stack(means), n_read


def name_clusters(run_dir: str | os.PathLike, vocab: str | os.PathLike | Sequence[str] | None = None, top: int = 3,
                  templates: Sequence[str] | None = None, device: str = "auto", *, contrast: float = 0.5,
                  sample: int = 32,
                  encoder=None, write: bool = True, report: bool = True) -> dict[int, list[tuple[str, float]]]:
    """Give every cluster of a run its best names from a vocabulary (see the module docstring).

    Args:
        run_dir: A run directory written by ``imgclust run`` / :func:`imgclust.cluster_images`.
        vocab: Text-tower encoders: a built-in vocabulary (``general``, ``imagenet``,
            ``cifar100``), a file with one name per line, or a list of names; ``None`` means
            ``general``. Classifier encoders name with their own classes (ImageNet-1k for
            ``efficientnet-lite0``); a vocabulary given there keeps only the classes it lists.
        top: Names kept per cluster.
        templates: Prompt templates with ``{}`` for the name (default :data:`DEFAULT_TEMPLATES`).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        contrast: ``lambda`` of the score (module docstring): 0 = plain zero-shot vote, 1 = full
            contrast against the other clusters' centroids.
        sample: Classifier path: members closest to the centre that are re-read per cluster.
        encoder: Use this :class:`~imgclust.encoders.Encoder` instead of re-creating the run's.
        write: Write names into the run directory (table, metrics, plots, report).
        report: Rebuild ``report.html`` when the run has one.

    Returns:
        ``{cluster id: [(name, score), ...]}``, best first; noise (-1) is not named.

    Raises:
        ImgclustError: Not a run directory, no embeddings, an encoder without a text tower or
            a classifier head, or an unusable vocabulary.
    """
    from ..rundir import load_run, run_encoder

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    if top < 1:
        raise ImgclustError(f"--top must be at least 1 (got {top})")
    if not 0 <= contrast <= 1:
        raise ImgclustError(f"--contrast must be between 0 and 1 (got {contrast})")
    table = run["table"]
    labels = np.asarray(table.column("cluster").to_numpy(zero_copy_only=False), np.int64)
    ids = sorted(set(labels.tolist()) - {-1})
    if not ids:
        raise ImgclustError(f"{run_dir} has no clusters to name (every image is noise)")
    enc = run_encoder(run, device=device, encoder=encoder, strict=False)

    info: dict[str, Any] = {"encoder": enc.name, "vocab": _vocab_label(vocab), "top": int(top),
                            "score": SCORE_FORMULA, "contrast": float(contrast)}
    if getattr(enc, "has_text", False):
        names, member_logits, cluster_logits = _text_path(run_dir, run, enc, labels, ids, vocab, templates, info)
    elif hasattr(enc, "predict_proba"):
        names, member_logits, cluster_logits = _classifier_path(table, enc, labels, ids, vocab, sample, info)
    else:
        raise ImgclustError(f"encoder {enc.name!r} has neither a text tower nor a classifier head, so its clusters "
                            "cannot be named: use a CLIP/SigLIP encoder (or hf:DIR from `imgclust finetune`) "
                            "or efficientnet-lite0")

    scores = contrastive_scores(member_logits, cluster_logits, contrast=contrast)
    result = _ranked(scores, names, ids, top)
    info["vocab_size"] = len(names)
    if write:
        save_names(run_dir, run, table, labels, result, info, report=report)
    return result


def _text_path(run_dir: Path, run: dict, enc, labels: np.ndarray, ids: list[int], vocab, templates,
               info: dict[str, Any]) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """Text tower: ``(names, member logits, cluster logits)`` from prompt-ensembled name embeddings."""
    X = run["embeddings"]
    if X is None or len(X) != len(labels):
        raise ImgclustError(f"{run_dir} has no embeddings.npy matching its table; re-run `imgclust run`")
    names = load_vocab("general" if vocab is None else vocab)
    templates = list(templates or DEFAULT_TEMPLATES)
    if any(not t.strip() for t in templates):
        raise ImgclustError("a prompt template is empty (use e.g. --template 'a photo of a {}.')")
    text = prompt_embeddings(enc, names, templates)
    if text.shape[1] != X.shape[1]:
        raise ImgclustError(f"text embeddings ({text.shape[1]}-d) do not match the run's image embeddings "
                            f"({X.shape[1]}-d): was the run made with another encoder?")
    scale = _logit_scale(enc)
    member_logits, cluster_logits = _text_logits(np.asarray(X, np.float32), labels, ids, text, scale)
    info.update(method="text", templates=templates, temperature=round(scale, 4))
    return names, member_logits, cluster_logits


def _classifier_path(table, enc, labels: np.ndarray, ids: list[int], vocab, sample: int,
                     info: dict[str, Any]) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """Classifier head: ``(names, member logits, cluster logits)`` from re-read typical members."""
    classes = imagenet_classes()
    keep = None
    if vocab is not None:
        # Keep only the listed classes; probabilities are re-normalised over them.
        wanted = {n.lower() for n in load_vocab(vocab)}
        keep = np.array([n.lower() in wanted for n in classes])
        if not keep.any():
            raise ImgclustError(f"none of the vocabulary's names is a class of {enc.name} "
                                "(its names are the ImageNet-1k classes)")
    paths = [str(p) for p in table.column("path").to_pylist()]
    dist = np.asarray(table.column("distance").to_numpy(zero_copy_only=False), np.float64)
    scorer = enc if keep is None else _ClassSubset(enc, keep)
    member_logits, cluster_logits, n_read = _classifier_logits(scorer, paths, labels, dist, ids, sample)
    names = classes if keep is None else [n for n, k in zip(classes, keep) if k]
    if cluster_logits.shape[1] != len(names):  # pragma: no cover - a head that is not ImageNet-1k
        names = [f"class {i}" for i in range(cluster_logits.shape[1])]
    info.update(method="classifier", classes="imagenet-1k", images_read=int(n_read), sample=int(sample))
    if vocab is None:
        info["vocab"] = "imagenet (the classifier's classes)"
    return names, member_logits, cluster_logits


def _ranked(scores: np.ndarray, names: list[str], ids: list[int], top: int) -> dict[int, list[tuple[str, float]]]:
    """The ``top`` best-scoring names of every cluster, best first."""
    result: dict[int, list[tuple[str, float]]] = {}
    k = min(top, len(names))
    for j, c in enumerate(ids):
        order = np.argsort(-scores[j], kind="stable")[:k]
        result[int(c)] = [(names[i], float(scores[j, i])) for i in order]
    return result


class _ClassSubset:
    """A classifier restricted to some classes, probabilities renormalised over them."""

    def __init__(self, encoder, keep: np.ndarray):
        self.encoder = encoder
        self.keep = keep

    def predict_proba(self, images) -> np.ndarray:
        P = self.encoder.predict_proba(images)[:, self.keep]
        return P / np.maximum(P.sum(1, keepdims=True), 1e-12)
