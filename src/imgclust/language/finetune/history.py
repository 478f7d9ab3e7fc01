"""The training history: the run's record (also ``history.json``) and the line per epoch on stderr."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .data import PairData
from .model import Optimisation
from .settings import FinetuneSettings

__all__ = ["new_history", "log_epoch", "finish_history"]


def new_history(enc, encoder: str, out: Path, data: PairData, cfg: FinetuneSettings, opt: Optimisation,
                sigmoid: bool) -> dict[str, Any]:
    """The record before training: data sizes, skipped pairs, trainable size and the config."""
    model = enc.model
    return {
        "encoder": enc.name, "out": str(out), "n_pairs": len(data.records), "n_train": int(len(data.train_idx)),
        "n_val": int(len(data.val_idx)), "skipped": data.skipped, "trainable_parameters": int(sum(
            p.numel() for p in model.parameters() if p.requires_grad)),
        "config": {"encoder": encoder, "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr,
                   "weight_decay": cfg.weight_decay, "warmup_steps": opt.n_warm, "train": cfg.train,
                   "val_fraction": cfg.val_fraction, "device": enc.device,
                   "precision": str(opt.amp_dtype or "fp32").replace("torch.", ""),
                   "random_state": cfg.random_state, "loss": "sigmoid" if sigmoid else "infonce",
                   "cached_in_memory": data.cached, "max_grad_norm": cfg.max_grad_norm},
        "epochs": [],
    }


def log_epoch(history: dict[str, Any], row: dict, progress: bool) -> None:
    """Append an epoch's row to the history and print it (with a legend before epoch 0)."""
    history["epochs"].append(row)
    if not progress:
        return
    from ...progress import console

    v = row.get("val")
    if row["epoch"] == 0:
        console().print(f"{history['n_train']} training pairs, {history['n_val']} validation pairs; R@K = "
                        "validation recall image->text / text->image; T = temperature; epoch 0 = before training",
                        highlight=False)
    loss = "-" if row["train_loss"] is None else f"{row['train_loss']:.4f}"
    text = f"epoch {row['epoch']}/{history['config']['epochs']}  loss {loss}  T {row['logit_scale']:.1f}"
    if v:  # validation recall, image->text / text->image
        text += (f"  R@1 {v['i2t_r1']:.3f}/{v['t2i_r1']:.3f}  R@5 {v['i2t_r5']:.3f}/{v['t2i_r5']:.3f}")
    console().print(text, highlight=False)


def finish_history(history: dict[str, Any], best_epoch: int, trainable: list[str], t_start: float) -> None:
    """Record the kept epoch, its recalls, the trainable names (first 50) and the wall time."""
    history["best_epoch"] = best_epoch
    history["best"] = history["epochs"][best_epoch]["val"]
    history["trainable"] = trainable if len(trainable) <= 50 else trainable[:50] + ["..."]
    history["seconds"] = round(time.perf_counter() - t_start, 3)
