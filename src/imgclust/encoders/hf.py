"""Encoders backed by a transformers checkpoint: CLIP, SigLIP, ViT, DINO, DINOv2 and any ``hf:``.

The model, its image processor and (for CLIP/SigLIP) its tokenizer are loaded with the
ordinary ``from_pretrained`` calls from a hub id or a local directory, so preprocessing is
always the checkpoint's own. Loading is offline-first: the local cache / directory is tried
with ``local_files_only=True``; the hub is contacted only when ``HF_HUB_OFFLINE`` (or
``TRANSFORMERS_OFFLINE``) is not set, and any failure becomes one :class:`ImgclustError` line.

How the image vector is formed depends on ``config.model_type``:

* ``clip`` -> ``get_image_features``: the projected embedding, the space the text tower shares.
* ``siglip`` -> ``get_image_features``: the attention-pooled vision output (SigLIP's joint space).
* ``vit`` (ViT-in21k and DINO v1 are both ``ViTModel`` checkpoints) and ``dinov2`` -> the CLS
  token of ``last_hidden_state`` (after the final layer norm). That is the representation the
  ViT seed builds on and the one DINO's and DINOv2's k-NN / linear evaluations use; the ViT
  pooler is a tanh layer trained only for in21k classification (absent from DINO checkpoints).
* any other type -> ``get_image_features`` when the model has it, else ``pooler_output`` when
  the forward returns one, else the CLS token.

Vectors are L2-normalised float32. The text tower (CLIP/SigLIP) is used with the checkpoint's
tokenizer: CLIP pads to the longest text and pools at the end token; SigLIP pads to its
``max_length`` without an attention mask and pools the last position, as it was trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import ImgclustError, require
from .base import Encoder, EncoderSpec, l2_normalize, resolve_device

__all__ = ["HFEncoder", "HFParts", "load_hf_parts", "POOLING"]

# model_type -> how the image vector is formed ("projection": get_image_features,
# "pooler": pooler_output, "cls": last_hidden_state[:, 0]).
POOLING: dict[str, str] = {
    "clip": "projection",
    "siglip": "projection",
    "siglip2": "projection",
    "vit": "cls",
    "dinov2": "cls",
    "dinov2_with_registers": "cls",
}

# Registry family -> checkpoint model types it may load (guards a mistyped weights id).
_FAMILY_TYPES: dict[str, set[str]] = {
    "clip": {"clip"},
    "siglip": {"siglip", "siglip2"},
    "vit": {"vit"},
    "dino": {"vit"},
    "dinov2": {"dinov2", "dinov2_with_registers"},
}

# Models that pad text to a fixed length and use no attention mask (as trained).
_MAX_LENGTH_PADDING = {"siglip", "siglip2"}
_TEXT_BATCH = 256


@dataclass
class HFParts:
    """What :func:`load_hf_parts` returns.

    Attributes:
        config: The checkpoint's ``PretrainedConfig``.
        model: ``AutoModel`` in eval mode, float32, on the requested device.
        processor: The checkpoint's image processor (PIL backend, no torchvision needed).
        tokenizer: The checkpoint's tokenizer, or None (no text tower, or it failed to load).
        tokenizer_error: Why a model with a text tower has no tokenizer ("" otherwise).
        local: Whether everything came from local files (no network used).
    """

    config: Any
    model: Any
    processor: Any
    tokenizer: Any = None
    tokenizer_error: str = ""
    local: bool = True


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _offline() -> bool:
    """Whether the user asked for no network (env read now, so tests can monkeypatch it)."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return False


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the hub endpoint, so a machine without network fails in seconds.

    huggingface_hub retries connection errors with back-off (~25 s). With a proxy configured
    a direct connection says nothing, so the check is skipped.
    """
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        from huggingface_hub import constants

        endpoint = urlparse(constants.ENDPOINT)
    except ImportError:  # pragma: no cover
        return True
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _looks_like_path(weights: str) -> bool:
    """A local path rather than a hub id (``org/name`` or ``name``)."""
    return (os.path.isabs(weights) or weights.startswith(("./", "../", "~", ".\\")) or "\\" in weights
            or weights.count("/") > 1 or os.path.exists(weights))


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:  # pragma: no cover
        return 0


@contextlib.contextmanager
def _quiet_load(transformers, bars: bool = False):
    """Hide transformers' load reports (and progress bars unless ``bars``); restore the settings.

    The load report's "unexpected keys" (e.g. a classifier head, the unused ViT pooler) are
    expected here; missing keys are reported by :func:`_load` as one warning instead.
    """
    logging = transformers.utils.logging
    bars_on = logging.is_progress_bar_enabled() and not bars
    verbosity = logging.get_verbosity()
    if bars_on:
        logging.disable_progress_bar()
    logging.set_verbosity(max(verbosity, logging.ERROR))
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars_on:
            logging.enable_progress_bar()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _load(transformers, weights: str, local_only: bool) -> tuple[Any, Any, Any]:
    """Config, model and image processor, all from local files or all allowed to download."""
    import torch

    kw = {"local_files_only": local_only}
    config = transformers.AutoConfig.from_pretrained(weights, **kw)
    model_kw: dict[str, Any] = dict(kw)
    # transformers 5 loads in the checkpoint's dtype by default; embeddings are computed in fp32.
    model_kw["dtype" if _major(transformers.__version__) >= 5 else "torch_dtype"] = torch.float32
    if config.model_type == "vit":
        # The pooler is unused (CLS token) and missing from DINO checkpoints: don't build it.
        model_kw["add_pooling_layer"] = False
    model, info = transformers.AutoModel.from_pretrained(weights, config=config, output_loading_info=True,
                                                         **model_kw)
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith("pooler.")]
    if missing:
        warnings.warn(f"{len(missing)} weights of {weights} are not in the checkpoint and were randomly "
                      f"initialised (e.g. {', '.join(sorted(missing)[:3])}): its embeddings may be poor",
                      stacklevel=4)
    # The PIL backend: no torchvision, and the same numbers whether or not torchvision is installed.
    proc_kw = {"backend": "pil"} if _major(transformers.__version__) >= 5 else {"use_fast": False}
    processor = transformers.AutoImageProcessor.from_pretrained(weights, **kw, **proc_kw)
    return config, model, processor


def _load_tokenizer(transformers, weights: str, local_only: bool) -> tuple[Any, str]:
    try:
        return transformers.AutoTokenizer.from_pretrained(weights, local_files_only=local_only), ""
    except Exception as exc:  # noqa: BLE001 - e.g. sentencepiece missing: images still work
        return None, _first_line(exc)


def load_hf_parts(weights: str, device: str = "cpu", *, label: str | None = None) -> HFParts:
    """Load a transformers checkpoint's model, image processor and tokenizer, offline first.

    Args:
        weights: Hub id (``openai/clip-vit-base-patch32``) or local checkpoint directory.
        device: Torch device the model is moved to (already resolved, e.g. ``cpu``).
        label: Encoder name used in error messages (defaults to ``weights``).

    Returns:
        The loaded :class:`HFParts`.

    Raises:
        ImgclustError: The checkpoint is not available (offline and not cached, missing
            directory, unknown hub id) or cannot be loaded by transformers.
    """
    transformers = require("transformers", extra="hf")
    label = label or weights
    weights = os.path.expanduser(weights)
    is_path = _looks_like_path(weights)
    if is_path and not os.path.isdir(weights):
        problem = "is not a directory" if os.path.exists(weights) else "not found"
        raise ImgclustError(f"checkpoint directory for {label} {problem}: {weights} "
                            "(pass --encoder hf:<dir> with a saved transformers checkpoint)")
    local = True
    try:
        with _quiet_load(transformers):
            config, model, processor = _load(transformers, weights, local_only=True)
    except (OSError, ValueError) as exc:  # not cached / not a checkpoint dir / unknown type
        if is_path:
            raise ImgclustError(f"cannot load {label} from {weights}: {_first_line(exc)}") from exc
        if _offline() or not _hub_reachable():
            raise ImgclustError(
                f"weights for {label} ({weights}) are not available offline: run once with network "
                "access to cache them, or download the checkpoint and pass --encoder hf:/path/to/dir"
            ) from exc
        local = False
        try:
            with _quiet_load(transformers, bars=True):  # download bars are worth seeing
                config, model, processor = _load(transformers, weights, local_only=False)
        except Exception as exc2:  # noqa: BLE001 - no network, unknown repo, gated... one line
            raise ImgclustError(
                f"weights for {label} ({weights}) could not be loaded ({_first_line(exc2)}): check the "
                "network, or download the checkpoint and pass --encoder hf:/path/to/dir"
            ) from exc2
    except RuntimeError as exc:  # found but unusable: size mismatch, conversion error...
        raise ImgclustError(f"cannot load {label} from {weights}: {_first_line(exc)}") from exc
    tokenizer, tok_error = None, ""
    if hasattr(model, "get_text_features"):
        tokenizer, tok_error = _load_tokenizer(transformers, weights, local_only=local)
    model = model.to(device).eval()
    return HFParts(config=config, model=model, processor=processor, tokenizer=tokenizer,
                   tokenizer_error=tok_error, local=local)


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
        pooling: ``projection``, ``pooler`` or ``cls`` (see the module docstring).
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
        return batch["pixel_values"].to(self.device)

    def image_features(self, pixel_values):
        """Unnormalised image vectors (N, D) as a torch tensor; gradients flow when enabled.

        Args:
            pixel_values: Output of :meth:`preprocess`.
        """
        if self.pooling == "projection":
            out = self.model.get_image_features(pixel_values=pixel_values)
            return _as_tensor(out, "image_embeds", "pooler_output")
        out = self.model(pixel_values=pixel_values)
        if self.pooling == "pooler":
            return _as_tensor(out, "pooler_output")
        return out.last_hidden_state[:, 0]

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
