"""Contrastive fine-tuning of a CLIP-family model on image-caption pairs.

The recipe is CLIP's own:

* **Loss**: symmetric InfoNCE over the batch. With ``T = exp(logit_scale)`` (CLIP's learnable
  temperature, clamped to at most 100 as in CLIP) and unit-norm image/text vectors,
  ``logits = T * img @ txt.T`` and the loss is the mean of the image->text and text->image
  cross-entropies. Identical captions in one batch (e.g. "a red circle" twice) are all
  counted as positives: the target row is uniform over them, which reduces to the usual
  one-hot target when captions are unique. SigLIP checkpoints get their own pairwise sigmoid
  loss with the learnable bias instead.
* **What trains**: ``all`` layers; ``last:N`` - the last N transformer blocks of each tower plus
  the final layer norms, projections and temperature; or ``proj`` - only the projections (and
  temperature), i.e. a linear re-alignment of the two frozen towers.
* **Optimiser**: AdamW (no weight decay on biases, norms, embeddings and the temperature),
  linear warm-up then cosine decay, gradient-norm clipping at 1.
* **Precision**: ``torch.autocast`` in bf16 (or fp16 with a gradient scaler) on CUDA only;
  CPU and MPS train in fp32.
* **Determinism**: the split and the batch order come from local generators seeded with
  ``random_state``. Dropout (absent from CLIP/SigLIP configs, present in some others) draws
  from torch's global generator, so training runs inside ``torch.random.fork_rng`` seeded
  with ``random_state``: reproducible, and the caller's global RNG state is restored after.
* **Validation**: after every epoch (and once before training) the held-out pairs are embedded
  and retrieval recall@1/@5 is measured both ways. Image->text ranks the *distinct* captions of
  the validation set; text->image asks each pair's caption for images, and any image with that
  same caption is a hit. With unique captions this is the usual recall@K; with repeated ones
  (class-like captions) identical texts are neither double-counted nor penalised.
* **Output**: the best epoch (highest mean recall@1, ties to the earlier epoch) is saved with
  ``save_pretrained`` (model, image processor, tokenizer) plus ``history.json``, so
  ``--encoder hf:DIR`` loads it like any checkpoint.

Pairs are read with :func:`imgclust.sources.read_manifest`: ``path,caption`` CSV/Parquet, or
ROCOv2's ``ID,Caption`` CSV beside an image folder. Unreadable images and empty captions are
skipped and reported, never fatal. Images are decoded once; their preprocessed tensors are kept
in memory when they fit in ``cache_mb``, otherwise decoded again for every batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ImgclustError
from ..pipeline.sources import DecodeError, ImageRecord, load_image

__all__ = ["finetune_clip", "retrieval_recall", "select_trainable", "read_pairs"]

# Parameter-name fragments that are always trained with ``last:N`` (heads after the blocks).
_HEAD_PARTS = ("post_layernorm", "final_layer_norm", "visual_projection", "text_projection", "logit_scale",
               "logit_bias", ".head.")
# ... and the only ones trained with ``proj``.
_PROJ_PARTS = ("visual_projection", "text_projection", "logit_scale", "logit_bias", "text_model.head.")
_NO_DECAY = ("bias", "norm", "embedding", "logit_scale", "logit_bias", "class_embedding", "probe")
_LAYER_RE = re.compile(r"^(.*\.layers?)\.(\d+)\.")


def read_pairs(pairs: str | os.PathLike | Sequence[ImageRecord] | Sequence[tuple[str, str]]
               ) -> tuple[list[ImageRecord], list[dict]]:
    """Captioned records from a manifest (``path,caption`` or ROCOv2) or a list of pairs.

    Returns:
        ``(records with a caption, skipped)`` where ``skipped`` lists ``{"path", "reason"}``.
    """
    from ..pipeline.sources import read_manifest

    if isinstance(pairs, (str, os.PathLike)):
        path = os.path.expanduser(str(pairs))
        if not os.path.isfile(path):
            raise ImgclustError(f"pairs file not found: {path}")
        records = read_manifest(path)
    else:
        records = [r if isinstance(r, ImageRecord) else ImageRecord(str(r[0]), None, r[1]) for r in pairs]
    kept, skipped = [], []
    for r in records:
        if r.caption is None or not str(r.caption).strip():
            skipped.append({"path": r.path, "reason": "no caption"})
        else:
            kept.append(r)
    if not kept:
        raise ImgclustError("no image-caption pairs: the manifest needs a 'caption' column (or ROCOv2's 'Caption')")
    return kept, skipped


def _parse_train(train: str) -> tuple[str, int]:
    train = (train or "all").strip().lower()
    if train in ("all", "proj"):
        return train, 0
    m = re.fullmatch(r"last:(\d+)", train)
    if m and int(m.group(1)) >= 1:
        return "last", int(m.group(1))
    raise ImgclustError(f"--train must be all, proj or last:N with N >= 1 (got {train!r})")


def select_trainable(model, train: str = "all") -> list[str]:
    """Set ``requires_grad`` for ``all``, ``last:N`` or ``proj``; return the trainable names."""
    mode, n = _parse_train(train)
    names = [name for name, _ in model.named_parameters()]
    if mode == "all":
        keep = set(names)
    elif mode == "proj":
        keep = {nm for nm in names if any(p in nm for p in _PROJ_PARTS)}
    else:
        depth: dict[str, int] = {}
        for nm in names:
            m = _LAYER_RE.match(nm)
            if m:
                depth[m.group(1)] = max(depth.get(m.group(1), -1), int(m.group(2)))
        keep = set()
        for nm in names:
            m = _LAYER_RE.match(nm)
            if m and int(m.group(2)) > depth[m.group(1)] - n:
                keep.add(nm)
            elif any(p in nm for p in _HEAD_PARTS):
                keep.add(nm)
    if not keep:
        raise ImgclustError(f"--train {train}: no parameters of this model match")
    for name, param in model.named_parameters():
        param.requires_grad_(name in keep)
    return [nm for nm in names if nm in keep]


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


class _Pixels:
    """Preprocessed images by index: all in memory, or decoded again per batch when too many."""

    def __init__(self, encoder, records: list[ImageRecord], tensors=None):
        self.encoder = encoder
        self.records = records
        self.tensors = tensors

    def get(self, idx):
        if self.tensors is not None:
            return self.tensors[idx]
        return self.encoder.preprocess([load_image(self.records[int(i)].path) for i in idx]).cpu()


def _decode_all(encoder, records: list[ImageRecord], cache: bool, progress: bool, chunk: int = 64
                ) -> tuple[_Pixels, list[ImageRecord], list[dict]]:
    """Decode every image once: keep the usable ones (preprocessed, when caching), report the others."""
    import torch

    from ..progress import progress_bar

    ok: list[ImageRecord] = []
    skipped: list[dict] = []
    chunks, pending = [], []
    with progress_bar(len(records), "decode", enabled=progress) as advance:
        for r in records:
            try:
                img = load_image(r.path)
            except DecodeError as exc:
                skipped.append({"path": r.path, "reason": exc.reason})
            else:
                ok.append(r)
                if cache:
                    pending.append(img)
                    if len(pending) == chunk:
                        chunks.append(encoder.preprocess(pending).cpu())
                        pending = []
            advance()
    if cache and pending:
        chunks.append(encoder.preprocess(pending).cpu())
    tensors = torch.cat(chunks) if cache and chunks else None
    return _Pixels(encoder, ok, tensors), ok, skipped


def _caption_key(text: str) -> str:
    return " ".join(str(text).lower().split())


def _contrastive_loss(img, txt, scale, same, bias=None):
    """Symmetric InfoNCE with identical captions as shared positives; sigmoid loss with a bias."""
    import torch.nn.functional as F

    logits = scale * img @ txt.t()
    if bias is not None:  # SigLIP: every pair is a binary match / no-match decision
        signs = same.float() * 2 - 1
        return -F.logsigmoid(signs * (logits + bias)).sum() / len(img)
    target = same.float()
    target = target / target.sum(1, keepdim=True)
    loss_i = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_t = -(target.t() * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return (loss_i + loss_t) / 2


def _autocast(device: str, precision: str):
    import torch

    if not device.startswith("cuda") or precision == "fp32":
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()) \
        else torch.float16
    return torch.autocast("cuda", dtype=dtype), dtype


@contextlib.contextmanager
def _seeded(seed: int, device: str):
    """Seed torch's global RNG (dropout) for the block only; restore the caller's state after."""
    import torch

    devices = [torch.cuda.current_device()] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def finetune_clip(pairs: str | os.PathLike | Sequence[ImageRecord] | Sequence[tuple[str, str]],
                  encoder: str = "clip-vit-b-32", out: str | os.PathLike = "runs/finetuned", *,
                  epochs: int = 5, batch_size: int = 32, lr: float = 1e-5, weight_decay: float = 0.1,
                  warmup: float = 0.1, train: str = "all", val_fraction: float = 0.1, device: str = "auto",
                  precision: str = "auto", random_state: int = 0, cache_mb: int = 2048, max_grad_norm: float = 1.0,
                  progress: bool = True) -> dict[str, Any]:
    """Fine-tune a CLIP-family checkpoint on image-caption pairs; save the best epoch to ``out``.

    Args:
        pairs: ``path,caption`` CSV/Parquet, ROCOv2 ``ID,Caption`` CSV, or a list of
            :class:`~imgclust.sources.ImageRecord` / ``(path, caption)`` pairs.
        encoder: A text-tower encoder: ``clip-vit-b-32`` (and the other CLIP/SigLIP names) or
            ``hf:<hub id or dir>`` of a CLIP/SigLIP checkpoint (e.g. an earlier fine-tune).
        out: Directory to write the checkpoint and ``history.json`` to.
        epochs: Passes over the training pairs.
        batch_size: Pairs per step (contrastive: bigger batches give more negatives).
        lr: Peak learning rate (AdamW).
        weight_decay: AdamW weight decay (not applied to biases, norms, embeddings, temperature).
        warmup: Linear warm-up length, as a fraction of all steps (< 1) or a number of steps.
        train: ``all``, ``last:N`` (last N blocks of each tower + heads) or ``proj``.
        val_fraction: Share of pairs held out for validation (0 = none; the last epoch is kept).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        precision: ``auto`` (bf16/fp16 autocast on CUDA, fp32 elsewhere), ``fp32``, ``bf16``, ``fp16``.
        random_state: Seed of the split, the batch order and the model's dropout.
        cache_mb: Keep preprocessed images in memory up to this many MiB.
        max_grad_norm: Gradient-norm clipping (0 = off).
        progress: Progress bars and one line per epoch on stderr.

    Returns:
        The training history (also written to ``out/history.json``): ``epochs`` (per epoch:
        ``train_loss``, ``val`` recalls, ``logit_scale``, ``lr``, ``seconds``; epoch 0 is the
        model before training), ``best_epoch``, ``best``, ``n_train``, ``n_val``, ``skipped``
        and the ``config``.

    Raises:
        ImgclustError: No usable pairs, an encoder without a text tower, bad options.
    """
    import torch

    from .._io import atomic_write_text
    from ..encoders import create_encoder
    from ..encoders._hf_load import _quiet_load
    from ..encoders.hf import HFEncoder
    from ..progress import console, progress_bar

    t_start = time.perf_counter()
    if epochs < 1:
        raise ImgclustError(f"--epochs must be at least 1 (got {epochs})")
    if batch_size < 2:
        raise ImgclustError(f"--batch-size must be at least 2 for a contrastive loss (got {batch_size})")
    if not 0 <= val_fraction < 1:
        raise ImgclustError(f"--val-fraction must be in [0, 1) (got {val_fraction})")
    if lr <= 0:
        raise ImgclustError(f"--lr must be positive (got {lr})")
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ImgclustError(f"--precision must be auto, fp32, bf16 or fp16 (got {precision!r})")
    _parse_train(train)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ImgclustError(f"--out {out} exists and is not a directory")

    records, skipped = read_pairs(pairs)
    enc = create_encoder(encoder, device=device)
    if not isinstance(enc, HFEncoder) or not enc.has_text or not hasattr(enc.model, "logit_scale"):
        raise ImgclustError(f"encoder {enc.name!r} is not a CLIP-family model with a text tower; "
                            "use clip-vit-b-32 (or another CLIP/SigLIP encoder) or hf:<CLIP checkpoint dir>")
    model = enc.model
    dev = enc.device
    sigmoid = getattr(model, "logit_bias", None) is not None  # SigLIP
    size = int(enc.spec.image_size or 224)
    cache = len(records) * 3 * size * size * 4 <= cache_mb * 2 ** 20
    pixels, records, bad = _decode_all(enc, records, cache=cache, progress=progress)
    skipped += bad
    if len(records) < 2:
        example = f"; e.g. {skipped[0]['path']}: {skipped[0]['reason']}" if skipped else ""
        raise ImgclustError(f"only {len(records)} usable image-caption pair(s), need at least 2 "
                            f"({len(skipped)} skipped{example})")
    if progress and skipped:
        console().print(f"[yellow]skipped {len(skipped)} pair(s)[/] (see history.json), e.g. "
                        f"{skipped[0]['path']}: {skipped[0]['reason']}", highlight=False)

    # Split: a seeded permutation, at least one pair on each side when validating.
    rng = np.random.default_rng(random_state)
    perm = rng.permutation(len(records))
    n_val = int(round(len(records) * val_fraction)) if val_fraction > 0 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 else 0), len(records) - 2)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])

    keys = [_caption_key(r.caption) for r in records]
    key_ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    groups = torch.tensor([key_ids[k] for k in keys])
    tokens = enc._tokenize([r.caption for r in records])
    tokens = {k: v.cpu() for k, v in tokens.items()}

    trainable = select_trainable(model, train)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if any(s in name.lower() for s in _NO_DECAY) else decay).append(p)
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)
    n_train = len(train_idx)
    per_epoch = max(1, n_train // batch_size)
    total = per_epoch * epochs
    n_warm = int(warmup if warmup >= 1 else round(warmup * total))
    n_warm = min(max(n_warm, 0), total - 1) if total > 1 else 0

    def lr_factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / (n_warm + 1)
        progress_ = (step - n_warm) / max(1, total - n_warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_factor)
    amp, amp_dtype = _autocast(dev, precision)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    max_scale = math.log(100.0)

    def embed_split(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model.eval()
        imgs, txts = [], []
        with torch.no_grad():
            for s in range(0, len(idx), 2 * batch_size):
                b = torch.as_tensor(idx[s:s + 2 * batch_size])
                with _autocast(dev, precision)[0]:
                    im = enc.image_features(pixels.get(b).to(dev))
                    tx = enc.text_features({k: v[b].to(dev) for k, v in tokens.items()})
                imgs.append(torch.nn.functional.normalize(im.float(), dim=-1).cpu().numpy())
                txts.append(torch.nn.functional.normalize(tx.float(), dim=-1).cpu().numpy())
        return np.concatenate(imgs), np.concatenate(txts)

    def validate() -> dict[str, float] | None:
        if not n_val:
            return None
        im, tx = embed_split(val_idx)
        rec = retrieval_recall(im, tx, groups[val_idx].numpy())
        rec["mean_r1"] = (rec["i2t_r1"] + rec["t2i_r1"]) / 2
        return {k: round(v, 6) for k, v in rec.items()}

    def log_epoch(row: dict) -> None:
        if not progress:
            return
        v = row.get("val")
        if row["epoch"] == 0:
            console().print(f"{n_train} training pairs, {n_val} validation pairs; R@K = validation recall "
                            "image->text / text->image; T = temperature; epoch 0 = before training",
                            highlight=False)
        loss = "-" if row["train_loss"] is None else f"{row['train_loss']:.4f}"
        text = f"epoch {row['epoch']}/{epochs}  loss {loss}  T {row['logit_scale']:.1f}"
        if v:  # validation recall, image->text / text->image
            text += (f"  R@1 {v['i2t_r1']:.3f}/{v['t2i_r1']:.3f}  R@5 {v['i2t_r5']:.3f}/{v['t2i_r5']:.3f}")
        console().print(text, highlight=False)

    history: dict[str, Any] = {
        "encoder": enc.name, "out": str(out), "n_pairs": len(records), "n_train": int(n_train),
        "n_val": int(n_val), "skipped": skipped, "trainable_parameters": int(sum(
            p.numel() for p in model.parameters() if p.requires_grad)),
        "config": {"encoder": encoder, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                   "weight_decay": weight_decay, "warmup_steps": n_warm, "train": train,
                   "val_fraction": val_fraction, "device": dev, "precision": str(amp_dtype or "fp32").replace(
                       "torch.", ""), "random_state": random_state, "loss": "sigmoid" if sigmoid else "infonce",
                   "cached_in_memory": cache, "max_grad_norm": max_grad_norm},
        "epochs": [],
    }
    best_state, best_score, best_epoch = None, -1.0, 0
    with _seeded(random_state, dev):
        t = time.perf_counter()
        row0 = {"epoch": 0, "train_loss": None, "val": validate(),
                "logit_scale": float(model.logit_scale.detach().exp()), "lr": 0.0, "seconds": 0.0}
        row0["seconds"] = round(time.perf_counter() - t, 3)
        history["epochs"].append(row0)
        log_epoch(row0)
        gen = torch.Generator().manual_seed(int(random_state))
        with progress_bar(total, "finetune", enabled=progress, unit="step") as advance:
            for epoch in range(1, epochs + 1):
                t = time.perf_counter()
                model.train()
                order = torch.as_tensor(train_idx)[torch.randperm(n_train, generator=gen)]
                losses = []
                for s in range(per_epoch):
                    b = order[s * batch_size:(s + 1) * batch_size] if n_train >= batch_size else order
                    px = pixels.get(b).to(dev)
                    tok = {k: v[b].to(dev) for k, v in tokens.items()}
                    same = (groups[b][:, None] == groups[b][None, :]).to(dev)
                    with amp:
                        im = enc.image_features(px)
                        tx = enc.text_features(tok)
                    im = torch.nn.functional.normalize(im.float(), dim=-1)
                    tx = torch.nn.functional.normalize(tx.float(), dim=-1)
                    bias = model.logit_bias.float() if sigmoid else None
                    loss = _contrastive_loss(im, tx, model.logit_scale.float().exp(), same, bias)
                    optim.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(optim)
                    else:
                        loss.backward()
                    if max_grad_norm:
                        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                       max_grad_norm)
                    if scaler is not None:
                        scaler.step(optim)
                        scaler.update()
                    else:
                        optim.step()
                    sched.step()
                    if not sigmoid:
                        with torch.no_grad():
                            model.logit_scale.clamp_(0, max_scale)
                    losses.append(float(loss.detach()))
                    advance(1, loss=losses[-1])
                row = {"epoch": epoch, "train_loss": round(float(np.mean(losses)), 6), "val": validate(),
                       "logit_scale": round(float(model.logit_scale.detach().exp()), 4),
                       "lr": float(sched.get_last_lr()[0]), "seconds": round(time.perf_counter() - t, 3)}
                history["epochs"].append(row)
                log_epoch(row)
                score = row["val"]["mean_r1"] if row["val"] else float(epoch)
                if score > best_score:
                    best_score, best_epoch = score, epoch
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    history["best_epoch"] = best_epoch
    history["best"] = history["epochs"][best_epoch]["val"]
    history["trainable"] = trainable if len(trainable) <= 50 else trainable[:50] + ["..."]
    history["seconds"] = round(time.perf_counter() - t_start, 3)

    out.mkdir(parents=True, exist_ok=True)
    import transformers

    with _quiet_load(transformers):  # no "Writing model shards" bar on stderr
        model.save_pretrained(out)
        enc.processor.save_pretrained(out)
        enc.tokenizer.save_pretrained(out)
    atomic_write_text(out / "history.json", json.dumps(history, indent=2))
    return history
