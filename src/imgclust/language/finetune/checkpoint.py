"""The best epoch kept in memory, restored at the end, and saved as a loadable checkpoint.

The best epoch is the one with the highest mean validation recall@1 (ties go to the earlier
epoch); without validation pairs it is the last. It is saved with ``save_pretrained`` (model,
image processor, tokenizer) plus ``history.json``, so ``--encoder hf:DIR`` loads it like any
checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["BestEpoch", "save_checkpoint"]


class BestEpoch:
    """A CPU copy of the model's weights at the best epoch seen so far."""

    def __init__(self):
        self.state: dict | None = None
        self.score = -1.0
        self.epoch = 0

    def update(self, model, row: dict) -> None:
        """Keep the weights if ``row`` (an epoch's history row) beats the best so far."""
        score = row["val"]["mean_r1"] if row["val"] else float(row["epoch"])
        if score > self.score:
            self.score, self.epoch = score, row["epoch"]
            self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def restore(self, model) -> None:
        """Load the best weights back; eval mode, every parameter trainable again (as loaded)."""
        if self.state is not None:
            model.load_state_dict(self.state)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(True)


def save_checkpoint(enc, out: Path, history: dict[str, Any]) -> None:
    """``save_pretrained`` of the model, image processor and tokenizer, then ``history.json``."""
    import transformers

    from ..._io import atomic_write_text
    from ...encoders._hf_load import _quiet_load

    out.mkdir(parents=True, exist_ok=True)
    with _quiet_load(transformers):  # no "Writing model shards" bar on stderr
        enc.model.save_pretrained(out)
        enc.processor.save_pretrained(out)
        enc.tokenizer.save_pretrained(out)
    atomic_write_text(out / "history.json", json.dumps(history, indent=2))
