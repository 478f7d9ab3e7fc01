"""Validation: the held-out pairs embedded, retrieval recall@1/@5 measured both ways.

Image->text ranks the *distinct* captions of the validation set; text->image asks each pair's
caption for images, and any image with that same caption is a hit. With unique captions this is
the usual recall@K; with repeated ones (class-like captions) identical texts are neither
double-counted nor penalised.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .data import PairData
from .model import autocast

__all__ = ["retrieval_recall", "embed_pairs", "validate"]


def retrieval_recall(image_emb: np.ndarray, text_emb: np.ndarray, groups: Sequence[int] | None = None,
                     ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Recall@K of paired embeddings, image->text and text->image.

    Args:
        image_emb: (N, D) L2-normalised image embeddings.
        text_emb: (N, D) L2-normalised text embeddings; row i is image i's caption.
        groups: Caption id per pair (identical captions share an id). Image->text ranks the
            distinct ids (one candidate per caption); a retrieved item is correct when its id
            equals the query's. Default: every pair is its own id (plain recall@K).
        ks: The K values.

    Returns:
        ``{"i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5", ...}`` in [0, 1].
    """
    n = len(image_emb)
    g = np.arange(n) if groups is None else np.asarray(groups)
    img = np.asarray(image_emb, np.float32)
    txt = np.asarray(text_emb, np.float32)
    out: dict[str, float] = {}
    if not n:
        return {f"{d}_r{k}": 0.0 for d in ("i2t", "t2i") for k in ks}
    # Image -> text ranks the distinct captions (a caption listed twice is one candidate).
    uniq, first = np.unique(g, return_index=True)
    top = np.argsort(-(img @ txt[first].T), axis=1, kind="stable")
    hit = uniq[top] == g[:, None]
    for k in ks:
        out[f"i2t_r{k}"] = float(hit[:, :k].any(1).mean())
    # Text -> image: every pair's caption is a query; any image with that caption is a hit.
    top = np.argsort(-(txt @ img.T), axis=1, kind="stable")[:, :max(ks)]
    hit = g[top] == g[:, None]
    for k in ks:
        out[f"t2i_r{k}"] = float(hit[:, :k].any(1).mean())
    return out


def embed_pairs(enc, data: PairData, idx: np.ndarray, batch_size: int, precision: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised image and text vectors of the pairs ``idx`` (eval mode, no gradients)."""
    import torch

    dev = enc.device
    enc.model.eval()
    imgs, txts = [], []
    with torch.no_grad():
        for s in range(0, len(idx), 2 * batch_size):
            b = torch.as_tensor(idx[s:s + 2 * batch_size])
            with autocast(dev, precision)[0]:
                im = enc.image_features(data.pixels.get(b).to(dev))
                tx = enc.text_features({k: v[b].to(dev) for k, v in data.tokens.items()})
            imgs.append(torch.nn.functional.normalize(im.float(), dim=-1).cpu().numpy())
            txts.append(torch.nn.functional.normalize(tx.float(), dim=-1).cpu().numpy())
    return np.concatenate(imgs), np.concatenate(txts)


def validate(enc, data: PairData, batch_size: int, precision: str) -> dict[str, float] | None:
    """Recalls of the held-out pairs plus ``mean_r1`` (rounded to 6 places); None without any."""
    if not len(data.val_idx):
        return None
    im, tx = embed_pairs(enc, data, data.val_idx, batch_size, precision)
    rec = retrieval_recall(im, tx, data.groups[data.val_idx].numpy())
    rec["mean_r1"] = (rec["i2t_r1"] + rec["t2i_r1"]) / 2
    return {k: round(v, 6) for k, v in rec.items()}
