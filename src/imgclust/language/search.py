"""Search a run: text -> image with a text tower (CLIP, SigLIP, hf:DIR), or image -> image.

Scores are cosine similarities between the query's embedding and the run's stored image
embeddings (``embeddings.npy``), so nothing but the query is encoded: an image that is already
part of the run is not even re-read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ImgclustError

__all__ = ["search_run", "query_embedding"]


def _is_image_query(query: str) -> bool:
    return os.path.isfile(os.path.expanduser(query))


def query_embedding(run: dict, query: str, device: str = "auto", encoder=None,
                    templates: Sequence[str] | None = None) -> tuple[np.ndarray, int | None]:
    """The query's L2-normalised embedding, and its row in the run when it is one of its images.

    Args:
        run: :func:`imgclust.api.load_run` output.
        query: An existing image file (image -> image) or any text (text -> image).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        encoder: Use this encoder instead of re-creating the run's.
        templates: Text only: prompt templates with ``{}`` to ensemble the query through (e.g.
            ``["a photo of a {}."]`` for one-word queries); default: the text as given.
    """
    from ..rundir import run_encoder
    from .naming import prompt_embeddings

    if _is_image_query(query):
        path = os.path.abspath(os.path.expanduser(query))
        paths = [os.path.abspath(p) for p in run["table"].column("path").to_pylist()]
        if path in paths and run["embeddings"] is not None:
            row = paths.index(path)
            v = np.asarray(run["embeddings"][row], np.float32)
            return v / max(float(np.linalg.norm(v)), 1e-12), row
        from ..pipeline.sources import DecodeError, load_image

        try:
            image = load_image(path)
        except DecodeError as exc:
            raise ImgclustError(f"query image {query}: {exc.reason}") from exc
        enc = run_encoder(run, device=device, encoder=encoder, strict=False)
        return enc.encode_images([image])[0], None
    if not query.strip():
        raise ImgclustError("empty query: give a sentence or the path of an image")
    enc = run_encoder(run, device=device, encoder=encoder, strict=False)
    if not getattr(enc, "has_text", False):
        raise ImgclustError(f"text search needs an encoder with a text tower; this run used {enc.name!r} "
                            "(use CLIP/SigLIP or hf:DIR from `imgclust finetune`), or pass an image path "
                            "for image-to-image search")
    if templates:
        return prompt_embeddings(enc, [query], templates)[0], None
    return enc.encode_text([query])[0], None


def search_run(run_dir: str | os.PathLike, query: str, top: int = 10, device: str = "auto", *, encoder=None,
               templates: Sequence[str] | None = None, include_self: bool = False) -> list[tuple[str, float]]:
    """Rank a run's images by similarity to a sentence or to an image.

    Args:
        run_dir: A run directory (``imgclust run``).
        query: Text ("a dog on the grass") for text -> image retrieval (needs a text tower), or
            the path of an existing image file for image -> image retrieval (any encoder).
        top: Number of results.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        encoder: Use this encoder instead of re-creating the run's from ``run.json``.
        templates: Text only: prompt templates to ensemble the query through.
        include_self: Image queries that belong to the run: keep the query image itself
            (similarity 1) in the results.

    Returns:
        ``[(path, cosine similarity), ...]``, most similar first.

    Raises:
        ImgclustError: Not a run directory, no embeddings, or a text query on an encoder
            without a text tower.
    """
    from ..rundir import load_run

    if top < 1:
        raise ImgclustError(f"--top must be at least 1 (got {top})")
    run = load_run(Path(run_dir))
    X = run["embeddings"]
    paths = [str(p) for p in run["table"].column("path").to_pylist()]
    if X is None or len(X) != len(paths):
        raise ImgclustError(f"{run_dir} has no embeddings.npy matching its table; re-run `imgclust run`")
    q, row = query_embedding(run, query, device=device, encoder=encoder, templates=templates)
    if q.shape[-1] != X.shape[1]:
        raise ImgclustError(f"query embedding ({q.shape[-1]}-d) does not match the run's ({X.shape[1]}-d)")
    Xn = np.asarray(X, np.float32)
    Xn = Xn / np.maximum(np.linalg.norm(Xn, axis=1, keepdims=True), 1e-12)
    sims = Xn @ q.astype(np.float32)
    if row is not None and not include_self:
        sims[row] = -np.inf
    order = np.argsort(-sims, kind="stable")[:top]
    return [(paths[i], float(sims[i])) for i in order if np.isfinite(sims[i])]
