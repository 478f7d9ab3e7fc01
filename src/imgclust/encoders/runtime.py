"""Inference runtimes behind an encoder: eager torch, ONNX Runtime or OpenVINO.

A CNN encoder's feature extractor is exported once to ONNX (dynamic batch axis) into
``<cache>/models/<fingerprint>/features.onnx`` and run by ONNX Runtime or OpenVINO on CPU.
The exported graph computes exactly what the torch module does, so vectors agree with
torch to float32 rounding (tested: max abs diff of L2-normalised vectors < 1e-3) and the
store fingerprint does not depend on the runtime.

``auto`` picks torch on CUDA/MPS and on CPU the fastest installed runtime, in the order
measured on a 2-core AVX-512 machine by ``benchmarks/throughput.py`` (ONNX Runtime, then
OpenVINO, then torch; the two exported runtimes were within 6% of each other, both 3-8x torch).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .._io import default_cache_dir, tmp_name
from ..errors import ImgclustError, MissingDependencyError

__all__ = ["RUNTIMES", "CPU_PREFERENCE", "resolve_runtime", "runtime_available", "onnx_path",
           "export_onnx", "load_runtime", "intra_op_threads"]

RUNTIMES = ("auto", "torch", "onnx", "openvino")
# Fastest first on CPU, as measured by benchmarks/throughput.py (see README "Performance").
CPU_PREFERENCE = ("onnx", "openvino")
_MODULE = {"onnx": "onnxruntime", "openvino": "openvino"}
_INSTALL = {"onnx": "pip install 'imgclust[onnx]'  (onnxruntime + onnx)",
            "openvino": "pip install 'imgclust[openvino]'  (openvino + onnx)"}


def runtime_available(runtime: str) -> bool:
    """Whether ``runtime``'s package (and the ONNX exporter's) is importable here."""
    if runtime == "torch":
        return True
    return importlib.util.find_spec(_MODULE[runtime]) is not None and importlib.util.find_spec("onnx") is not None


def resolve_runtime(runtime: str | None, device: str) -> str:
    """Map ``auto`` to a concrete runtime for ``device``; validate an explicit choice.

    Raises:
        ImgclustError: unknown runtime, or an exported runtime asked for on a GPU.
        MissingDependencyError: the runtime's package is not installed (names the pip install).
    """
    runtime = (runtime or "auto").lower()
    if runtime not in RUNTIMES:
        raise ImgclustError(f"unknown runtime {runtime!r}: use {', '.join(RUNTIMES)}")
    if runtime == "auto":
        if device != "cpu":
            return "torch"
        return next((r for r in CPU_PREFERENCE if runtime_available(r)), "torch")
    if runtime != "torch" and device != "cpu":
        raise ImgclustError(f"--runtime {runtime} runs on CPU only; use --runtime torch (or auto) on {device}")
    if not runtime_available(runtime):
        raise MissingDependencyError(f"--runtime {runtime} needs {_MODULE[runtime]}: {_INSTALL[runtime]}")
    return runtime


def intra_op_threads() -> int:
    """Threads for the runtime's own parallelism: ``$IMGCLUST_THREADS``, else the cores this process may use.

    The Ray engine sets ``IMGCLUST_THREADS`` in each actor so that actors x threads = cores.
    """
    env = os.environ.get("IMGCLUST_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def onnx_path(cache_dir: str | os.PathLike | None, fingerprint: str, name: str = "features") -> Path:
    """Where the ONNX export of an encoder with ``fingerprint`` lives under the cache root."""
    return Path(cache_dir or default_cache_dir()) / "models" / fingerprint / f"{name}.onnx"


def export_onnx(build: Callable[[], object], path: Path, image_size: int) -> Path:
    """Export ``build()`` (a module NCHW float32 -> (N, D)) to ``path`` once, atomically, dynamic batch axis.

    A concurrent or killed export never leaves a partial file at ``path``: the graph is written
    to a temp name beside it and renamed into place.
    """
    if path.exists():
        return path
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path).with_suffix(".onnx")
    dummy = torch.zeros(2, 3, image_size, image_size)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
            torch.onnx.export(build(), (dummy,), str(tmp), input_names=["pixels"], output_names=["features"],
                              dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                              opset_version=17, dynamo=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _onnxruntime(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Idle threads sleep instead of spinning: the decode workers need those cycles between passes.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _openvino(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    os.environ.setdefault("OV_TELEMETRY_DISABLE", "1")
    import openvino as ov

    core = ov.Core()
    # f32 keeps parity with torch: OpenVINO's default on AVX-512-BF16 CPUs is bf16 (L2 diff ~7e-3).
    # One stream using every thread on the whole batch (the embed loop sends one batch at a time;
    # THROUGHPUT's extra streams would only hold more buffers).
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                     "PERFORMANCE_HINT": "LATENCY",
                                                     "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return lambda x: np.array(request.infer({0: x})[0], copy=True)


def load_runtime(runtime: str, path: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A callable running the ONNX graph at ``path`` with ``runtime`` (``onnx`` or ``openvino``)."""
    threads = threads or intra_op_threads()
    try:
        return {"onnx": _onnxruntime, "openvino": _openvino}[runtime](path, threads)
    except ImportError as exc:  # pragma: no cover - resolve_runtime checked first
        raise MissingDependencyError(f"--runtime {runtime} needs {_MODULE[runtime]}: {_INSTALL[runtime]}") from exc
