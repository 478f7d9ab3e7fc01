"""Contrastive fine-tuning of a CLIP-family model on image-caption pairs.

The recipe is CLIP's own; each step lives in its own module, in the order a run takes them:

1. :mod:`.settings` - the options, checked before anything is loaded.
2. :mod:`.data` - pairs read (``path,caption`` CSV/Parquet or ROCOv2), images decoded once
   (unreadable ones and empty captions skipped and reported), captions tokenised, and a
   seeded train / validation split.
3. :mod:`.model` - the CLIP/SigLIP encoder, what trains (``all``, ``last:N`` or ``proj``),
   AdamW (no weight decay on biases, norms, embeddings, temperature) with linear warm-up and
   cosine decay, and autocast (bf16/fp16) on CUDA only.
4. :mod:`.train` - one epoch: symmetric InfoNCE with identical captions as shared positives
   (SigLIP: its sigmoid loss), gradient-norm clipping, CLIP's temperature clamped to 100.
5. :mod:`.evaluate` - after every epoch (and once before training) the held-out pairs are
   embedded and retrieval recall@1/@5 is measured both ways.
6. :mod:`.checkpoint` - the best epoch (highest mean recall@1, ties to the earlier epoch) is
   restored and saved with ``save_pretrained`` plus ``history.json`` (:mod:`.history`), so
   ``--encoder hf:DIR`` loads it like any checkpoint.

**Determinism**: the split and the batch order come from local generators seeded with
``random_state``. Dropout (absent from CLIP/SigLIP configs, present in some others) draws from
torch's global generator, so training runs inside ``torch.random.fork_rng`` seeded with
``random_state``: reproducible, and the caller's global RNG state is restored after.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from ...errors import ImgclustError
from ...pipeline.sources import ImageRecord
from .checkpoint import BestEpoch, save_checkpoint
from .data import PairData, prepare_pairs, read_pairs
from .evaluate import retrieval_recall, validate
from .history import finish_history, log_epoch, new_history
from .model import Optimisation, load_clip, make_optimisation, select_trainable
from .settings import FinetuneSettings
from .train import seeded, train_epoch

__all__ = ["finetune_clip", "retrieval_recall", "select_trainable", "read_pairs"]


def _out_dir(out: str | os.PathLike) -> Path:
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ImgclustError(f"--out {out} exists and is not a directory")
    return out


def _run_epochs(enc, data: PairData, opt: Optimisation, cfg: FinetuneSettings, sigmoid: bool,
                history: dict[str, Any]) -> BestEpoch:
    """Epoch 0 (validation before training), then the training epochs; the best one kept."""
    import torch

    from ...progress import progress_bar

    model, best = enc.model, BestEpoch()
    t = time.perf_counter()
    row0 = {"epoch": 0, "train_loss": None, "val": validate(enc, data, cfg.batch_size, cfg.precision),
            "logit_scale": float(model.logit_scale.detach().exp()), "lr": 0.0, "seconds": 0.0}
    row0["seconds"] = round(time.perf_counter() - t, 3)
    log_epoch(history, row0, cfg.progress)
    gen = torch.Generator().manual_seed(int(cfg.random_state))
    with progress_bar(opt.total, "finetune", enabled=cfg.progress, unit="step") as advance:
        for epoch in range(1, cfg.epochs + 1):
            t = time.perf_counter()
            loss = train_epoch(enc, data, opt, gen, cfg, sigmoid, advance)
            row = {"epoch": epoch, "train_loss": loss, "val": validate(enc, data, cfg.batch_size, cfg.precision),
                   "logit_scale": round(float(model.logit_scale.detach().exp()), 4),
                   "lr": float(opt.sched.get_last_lr()[0]), "seconds": round(time.perf_counter() - t, 3)}
            log_epoch(history, row, cfg.progress)
            best.update(model, row)
    return best


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
    t_start = time.perf_counter()
    cfg = FinetuneSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
                           train=train, val_fraction=val_fraction, precision=precision, random_state=random_state,
                           cache_mb=cache_mb, max_grad_norm=max_grad_norm, progress=progress)
    cfg.check()
    out = _out_dir(out)
    records, skipped = read_pairs(pairs)
    enc = load_clip(encoder, device)
    data = prepare_pairs(enc, records, skipped, cfg)
    trainable = select_trainable(enc.model, cfg.train)
    opt = make_optimisation(enc.model, len(data.train_idx), enc.device, cfg)
    sigmoid = getattr(enc.model, "logit_bias", None) is not None  # SigLIP
    history = new_history(enc, encoder, out, data, cfg, opt, sigmoid)
    with seeded(cfg.random_state, enc.device):
        best = _run_epochs(enc, data, opt, cfg, sigmoid, history)
    best.restore(enc.model)
    finish_history(history, best.epoch, trainable, t_start)
    save_checkpoint(enc, out, history)
    return history
