"""The options of one fine-tuning run, checked once before anything is loaded."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import ImgclustError

__all__ = ["FinetuneSettings", "parse_train"]

_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def parse_train(train: str) -> tuple[str, int]:
    """``--train`` as ``(mode, N)``: ``("all", 0)``, ``("proj", 0)`` or ``("last", N)``."""
    train = (train or "all").strip().lower()
    if train in ("all", "proj"):
        return train, 0
    m = re.fullmatch(r"last:(\d+)", train)
    if m and int(m.group(1)) >= 1:
        return "last", int(m.group(1))
    raise ImgclustError(f"--train must be all, proj or last:N with N >= 1 (got {train!r})")


@dataclass(frozen=True)
class FinetuneSettings:
    """What :func:`imgclust.language.finetune.finetune_clip` was asked to do (see its arguments)."""

    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-5
    weight_decay: float = 0.1
    warmup: float = 0.1
    train: str = "all"
    val_fraction: float = 0.1
    precision: str = "auto"
    random_state: int = 0
    cache_mb: int = 2048
    max_grad_norm: float = 1.0
    progress: bool = True

    def check(self) -> None:
        """Raise :class:`ImgclustError` naming the first bad option."""
        if self.epochs < 1:
            raise ImgclustError(f"--epochs must be at least 1 (got {self.epochs})")
        if self.batch_size < 2:
            raise ImgclustError(f"--batch-size must be at least 2 for a contrastive loss (got {self.batch_size})")
        if not 0 <= self.val_fraction < 1:
            raise ImgclustError(f"--val-fraction must be in [0, 1) (got {self.val_fraction})")
        if self.lr <= 0:
            raise ImgclustError(f"--lr must be positive (got {self.lr})")
        if self.precision not in _PRECISIONS:
            raise ImgclustError(f"--precision must be auto, fp32, bf16 or fp16 (got {self.precision!r})")
        parse_train(self.train)
