"""Loading a transformers checkpoint offline-first: config, model, image processor, tokenizer.

Everything is loaded with the ordinary ``from_pretrained`` calls from a hub id or a local
directory, so preprocessing is always the checkpoint's own. The local cache / directory is tried
with ``local_files_only=True``; the hub is contacted only when ``HF_HUB_OFFLINE`` (or
``TRANSFORMERS_OFFLINE``) is not set and the endpoint answers, and any failure becomes one
:class:`ImgclustError` line.

The steps, in the order :func:`load_hf_parts` runs them:

1. :func:`_check_path` - a local path must be a directory.
2. :func:`_load` - config (with the per-type :data:`CONFIG_OVERRIDES`), then ``AutoModel`` with
   the per-type :data:`MODEL_KWARGS`, then the
   image processor (PIL backend); first from local files, then (when allowed) from the hub.
3. :func:`_load_tokenizer` - only for models with a text tower; a failure is kept as a reason.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import Any

from ..errors import ImgclustError, require

__all__ = ["HFParts", "MODEL_KWARGS", "CONFIG_OVERRIDES", "load_hf_parts"]

# model_type -> extra ``AutoModel.from_pretrained`` keyword arguments for that architecture.
MODEL_KWARGS: dict[str, dict[str, Any]] = {
    # The ViT pooler is unused (CLS token) and missing from DINO checkpoints: don't build it.
    "vit": {"add_pooling_layer": False},
}

# model_type -> config attributes set before the model is built (the checkpoint's value is for training).
CONFIG_OVERRIDES: dict[str, dict[str, Any]] = {
    # MAE pre-training hides 75% of the patches at random; an embedding sees all of them.
    "vit_mae": {"mask_ratio": 0.0},
}


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
    for name, value in CONFIG_OVERRIDES.get(config.model_type, {}).items():
        setattr(config, name, value)
    model_kw: dict[str, Any] = dict(kw)
    # transformers 5 loads in the checkpoint's dtype by default; embeddings are computed in fp32.
    model_kw["dtype" if _major(transformers.__version__) >= 5 else "torch_dtype"] = torch.float32
    model_kw.update(MODEL_KWARGS.get(config.model_type, {}))
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


def _check_path(weights: str, label: str) -> bool:
    """Whether ``weights`` is a local path (else a hub id); a path must be a directory."""
    is_path = _looks_like_path(weights)
    if is_path and not os.path.isdir(weights):
        problem = "is not a directory" if os.path.exists(weights) else "not found"
        raise ImgclustError(f"checkpoint directory for {label} {problem}: {weights} "
                            "(pass --encoder hf:<dir> with a saved transformers checkpoint)")
    return is_path


def _load_local_or_hub(transformers, weights: str, label: str, is_path: bool) -> tuple[Any, Any, Any, bool]:
    """Config, model and processor from local files, else from the hub when allowed; and whether local."""
    try:
        with _quiet_load(transformers):
            return (*_load(transformers, weights, local_only=True), True)
    except (OSError, ValueError) as exc:  # not cached / not a checkpoint dir / unknown type
        if is_path:
            raise ImgclustError(f"cannot load {label} from {weights}: {_first_line(exc)}") from exc
        if _offline() or not _hub_reachable():
            raise ImgclustError(
                f"weights for {label} ({weights}) are not available offline: run once with network "
                "access to cache them, or download the checkpoint and pass --encoder hf:/path/to/dir"
            ) from exc
        try:
            with _quiet_load(transformers, bars=True):  # download bars are worth seeing
                return (*_load(transformers, weights, local_only=False), False)
        except Exception as exc2:  # noqa: BLE001 - no network, unknown repo, gated... one line
            raise ImgclustError(
                f"weights for {label} ({weights}) could not be loaded ({_first_line(exc2)}): check the "
                "network, or download the checkpoint and pass --encoder hf:/path/to/dir"
            ) from exc2
    except RuntimeError as exc:  # found but unusable: size mismatch, conversion error...
        raise ImgclustError(f"cannot load {label} from {weights}: {_first_line(exc)}") from exc


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
    is_path = _check_path(weights, label)
    config, model, processor, local = _load_local_or_hub(transformers, weights, label, is_path)
    tokenizer, tok_error = None, ""
    if hasattr(model, "get_text_features"):
        tokenizer, tok_error = _load_tokenizer(transformers, weights, local_only=local)
    model = model.to(device).eval()
    return HFParts(config=config, model=model, processor=processor, tokenizer=tokenizer,
                   tokenizer_error=tok_error, local=local)
