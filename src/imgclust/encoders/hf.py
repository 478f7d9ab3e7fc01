"""Encoders backed by a transformers checkpoint: CLIP, SigLIP, ViT, DINO(v2), ConvNeXt, ResNet, MAE, MSN, any ``hf:``.

The model, its image processor and (for CLIP/SigLIP) its tokenizer are loaded offline-first by
:func:`imgclust.encoders._hf_load.load_hf_parts` with the ordinary ``from_pretrained`` calls, so
preprocessing is always the checkpoint's own.

How the image vector is formed depends on ``config.model_type``:

* ``clip`` -> ``get_image_features``: the projected embedding, the space the text tower shares.
* ``siglip`` -> ``get_image_features``: the attention-pooled vision output (SigLIP's joint space).
* ``vit`` (ViT-in21k and DINO v1 are both ``ViTModel`` checkpoints) and ``dinov2`` -> the CLS
  token of ``last_hidden_state`` (after the final layer norm). That is the representation the
  ViT seed builds on and the one DINO's and DINOv2's k-NN / linear evaluations use; the ViT
  pooler is a tanh layer trained only for in21k classification (absent from DINO checkpoints).
* ``convnext`` and ``resnet`` (TEMI's ConvNeXt and ResNet-50) -> ``pooler_output``: the global
  average pool of the last stage (layer-normed for ConvNeXt), flattened from ResNet's (N, C, 1, 1).
* ``vit_mae`` -> the mean of the patch tokens of ``last_hidden_state``, with ``mask_ratio`` 0
  (:data:`~imgclust.encoders._hf_load.CONFIG_OVERRIDES`) and the patches kept in order (the
  forward's ``noise`` is their index), so every patch is seen and nothing is random.
* ``vit_msn`` -> the CLS token, as MSN's own linear evaluation uses.
* any other type -> ``get_image_features`` when the model has it, else ``pooler_output`` when
  the forward returns one, else the CLS token.

Adding an architecture: a row in :data:`POOLING` (how its image vector is formed), a row in
``_FAMILY_TYPES`` if a registry family should accept it, and a row in
:data:`imgclust.encoders._hf_load.MODEL_KWARGS` if ``AutoModel`` needs extra arguments for it.

Vectors are L2-normalised float32. The text tower (CLIP/SigLIP) is used with the checkpoint's
tokenizer: CLIP pads to the longest text and pools at the end token; SigLIP pads to its
``max_length`` without an attention mask and pools the last position, as it was trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import ImgclustError
from ._hf_load import MODEL_KWARGS, HFParts, load_hf_parts
from .base import Encoder, EncoderSpec, l2_normalize, resolve_device, to_device

__all__ = ["HFEncoder", "HFParts", "load_hf_parts", "MODEL_KWARGS", "POOLING"]

# model_type -> how the image vector is formed ("projection": get_image_features,
# "pooler": pooler_output, "cls": last_hidden_state[:, 0], "mean": mean of the patch tokens).
POOLING: dict[str, str] = {
    "clip": "projection",
    "siglip": "projection",
    "siglip2": "projection",
    "vit": "cls",
    "dinov2": "cls",
    "dinov2_with_registers": "cls",
    "convnext": "pooler",
    "resnet": "pooler",
    "vit_mae": "mean",
    "vit_msn": "cls",
}

# Registry family -> checkpoint model types it may load (guards a mistyped weights id).
_FAMILY_TYPES: dict[str, set[str]] = {
    "clip": {"clip"},
    "siglip": {"siglip", "siglip2"},
    "vit": {"vit"},
    "dino": {"vit"},
    "dinov2": {"dinov2", "dinov2_with_registers"},
    "convnext": {"convnext"},
    "resnet": {"resnet"},
    "mae": {"vit_mae"},
    "msn": {"vit_msn"},
}

# Models that pad text to a fixed length and use no attention mask (as trained).
_MAX_LENGTH_PADDING = {"siglip", "siglip2"}
_TEXT_BATCH = 256


def _as_tensor(out: Any, *names: str):
    """``get_*_features`` returns a tensor in transformers 4.x and a ModelOutput in 5.x."""
    import torch

    if torch.is_tensor(out):
        return out
    for name in names:
        value = getattr(out, name, None)
        if value is not None:
            return value
    if isinstance(out, tuple) and len(out) > 1 and torch.is_tensor(out[1]):
        return out[1]  # return_dict=False: (last_hidden_state, pooler_output, ...)
    raise ImgclustError(f"unexpected model output {type(out).__name__}: no {' / '.join(names)}")


class HFEncoder(Encoder):
    """A transformers vision (or vision-language) checkpoint as an :class:`Encoder`.

    Attributes:
        model: The ``AutoModel`` (eval mode, float32) on :attr:`device`.
        processor: The checkpoint's own image processor.
        tokenizer: Its tokenizer when the model has a text tower, else None.
        config: The checkpoint's config; ``config.model_type`` picks the pooling.
        model_type: ``config.model_type``.
        pooling: ``projection``, ``pooler``, ``cls`` or ``mean`` (see the module docstring).
    """

    def __init__(self, spec: EncoderSpec, device: str = "auto"):
        self._base_spec = spec
        self.device = resolve_device(device)
        parts = load_hf_parts(spec.weights, self.device, label=spec.name)
        self.config = parts.config
        self.model = parts.model
        self.processor = parts.processor
        self.tokenizer = parts.tokenizer
        self._tokenizer_error = parts.tokenizer_error
        self.model_type: str = getattr(self.config, "model_type", "") or ""

        allowed = _FAMILY_TYPES.get(spec.family)
        if allowed is not None and self.model_type not in allowed:
            raise ImgclustError(
                f"encoder {spec.name} expects a {'/'.join(sorted(allowed))} checkpoint but {spec.weights} "
                f"is {self.model_type or 'of unknown type'}; use --encoder hf:{spec.weights}")
        self.pooling = POOLING.get(self.model_type) or self._auto_pooling()
        # Probe once: checks the processor + model end to end and gives the real output dims.
        pixel_values = self.preprocess([Image.new("RGB", (224, 224), (128, 128, 128))])
        with self._inference():
            dim = int(self.image_features(pixel_values).shape[-1])
        has_text = self.tokenizer is not None
        if has_text:
            with self._inference():
                text_dim = int(self.text_features(self._tokenize(["a photo"])).shape[-1])
            if text_dim != dim:  # not a joint space: text vectors would be meaningless
                has_text = False
                self.tokenizer = None
                self._tokenizer_error = f"text dim {text_dim} differs from image dim {dim}"
        self.spec = dataclasses.replace(
            spec, dim=dim, has_text=has_text, image_size=int(pixel_values.shape[-1]),
            mean=tuple(float(m) for m in self._processor_stat("image_mean", spec.mean)),
            std=tuple(float(s) for s in self._processor_stat("image_std", spec.std)),
            pooling=self.pooling,
        )

    def fingerprint(self) -> str:
        """The store key: from the spec as requested, so it is stable before and after loading."""
        return self._base_spec.fingerprint()

    def _auto_pooling(self) -> str:
        if hasattr(self.model, "get_image_features"):
            return "projection"
        import torch

        pixel_values = self.preprocess([Image.new("RGB", (224, 224), (128, 128, 128))])
        with torch.inference_mode():
            out = self.model(pixel_values=pixel_values)
        return "pooler" if getattr(out, "pooler_output", None) is not None else "cls"

    def _processor_stat(self, name: str, default):
        value = getattr(self.processor, name, None)
        if value is None:
            return default
        if np.isscalar(value):
            return (float(value),) * 3
        return tuple(value)[:3]

    def _inference(self):
        """inference_mode plus fp16 autocast on CUDA (CPU and MPS stay fp32)."""
        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.device.startswith("cuda"):
            stack.enter_context(torch.autocast("cuda", dtype=torch.float16))
        return stack

    def preprocess(self, images: Sequence[Image.Image]):
        """RGB PIL images -> ``pixel_values`` (N, 3, H, W) float32 on :attr:`device`.

        Uses the checkpoint's own image processor (resize, crop, rescale, normalise).
        """
        images = [img if img.mode == "RGB" else img.convert("RGB") for img in images]
        batch = self.processor(images=images, return_tensors="pt")
        return to_device(batch["pixel_values"], self.device)  # pinned + async on CUDA

    def image_features(self, pixel_values):
        """Unnormalised image vectors (N, D) as a torch tensor; gradients flow when enabled.

        Args:
            pixel_values: Output of :meth:`preprocess`.
        """
        if self.pooling == "projection":
            out = self.model.get_image_features(pixel_values=pixel_values)
            return _as_tensor(out, "image_embeds", "pooler_output")
        out = self.model(pixel_values=pixel_values, **self._forward_kwargs(pixel_values))
        if self.pooling == "pooler":
            return _as_tensor(out, "pooler_output").flatten(1)  # ResNet pools to (N, C, 1, 1)
        if self.pooling == "mean":
            return out.last_hidden_state[:, 1:].mean(1)  # the patch tokens; CLS comes first
        return out.last_hidden_state[:, 0]

    def _forward_kwargs(self, pixel_values) -> dict:
        """Extra forward arguments: MAE's ``noise`` as the patch index keeps every patch in place."""
        if self.model_type != "vit_mae":
            return {}
        import torch

        p = self.config.patch_size
        n = (pixel_values.shape[-2] // p) * (pixel_values.shape[-1] // p)
        return {"noise": torch.arange(n, device=pixel_values.device, dtype=torch.float32).expand(len(pixel_values), n)}

    def _tokenize(self, texts: Sequence[str]) -> dict:
        if self.tokenizer is None:
            reason = f" ({self._tokenizer_error})" if self._tokenizer_error else ""
            raise ImgclustError(f"encoder {self.name!r} has no usable text tower{reason}; "
                                "use a CLIP or SigLIP encoder")
        text_config = getattr(self.config, "text_config", self.config)
        max_len = int(getattr(text_config, "max_position_embeddings", 0) or 0)
        tok_max = int(getattr(self.tokenizer, "model_max_length", 0) or 0)
        if 0 < tok_max < 100_000:  # unset model_max_length is a huge sentinel
            max_len = min(max_len, tok_max) if max_len else tok_max
        max_len = max_len or 77
        if self.model_type in _MAX_LENGTH_PADDING:
            batch = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_len,
                                   return_tensors="pt")
            return {"input_ids": batch["input_ids"].to(self.device)}
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len,
                               return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}

    def text_features(self, inputs: dict):
        """Unnormalised text vectors (N, D) from tokenised inputs; gradients flow when enabled."""
        out = self.model.get_text_features(**inputs)
        return _as_tensor(out, "text_embeds", "pooler_output")

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB PIL images -> L2-normalised float32 (N, D)."""
        if not images:
            return np.zeros((0, self.spec.dim), np.float32)
        with self._inference():
            feats = self.image_features(self.preprocess(images))
        return l2_normalize(feats.float().cpu().numpy())

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> L2-normalised float32 (N, D) in the image space (CLIP / SigLIP only)."""
        if not self.spec.has_text:
            if self._tokenizer_error:  # a text tower whose tokenizer did not load: say why
                raise ImgclustError(f"encoder {self.name!r} has no usable text tower "
                                    f"({self._tokenizer_error}); use a CLIP or SigLIP encoder")
            return super().encode_text(texts)
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.spec.dim), np.float32)
        chunks = []
        for start in range(0, len(texts), _TEXT_BATCH):
            with self._inference():
                feats = self.text_features(self._tokenize(texts[start:start + _TEXT_BATCH]))
            chunks.append(feats.float().cpu().numpy())
        return l2_normalize(np.concatenate(chunks))
