"""CLIP-style image-text models (Hugging Face `transformers` folders) on onnxruntime, without torch.

A folder holds `config.json` (model_type "clip"), `model.safetensors` and `tokenizer.json`. The two towers are
written as ONNX graphs with `onnx.helper` from the safetensors weights, each ending in its projection and L2
normalisation, so one session call returns vectors of the shared image-text space. The graphs follow
`transformers`' CLIPModel (`get_image_features` / `get_text_features`), including its two rules for where the
text is pooled. Models are read from a local folder or the Hugging Face cache; nothing is ever downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from imgsearch_pipeline.analysis.models import cached_onnx, cpu_session, file_sha256

# Bump whenever a graph changes: the cached .onnx files are keyed by it.
BUILDER_VERSION = 1
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
# OpenAI CLIP's normalisation, transformers' default when a folder has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# The position transformers' CLIPTextTransformer pools from argmax(input_ids) when eos_token_id is 2: configs
# written before its fix carry that value, and the real end token is the highest id of the vocabulary.
LEGACY_EOS_TOKEN_ID = 2


# --- finding a model ---------------------------------------------------------------------------------


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _snapshot(repo_dir: Path) -> Path | None:
    """The snapshot refs/main points to, else the newest complete one (a cache filled at a pinned revision)."""
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        pinned = snapshots / ref.read_text().strip()
        if pinned.is_dir():
            return pinned
    candidates = [p for p in snapshots.iterdir() if p.is_dir()] if snapshots.is_dir() else []
    complete = [p for p in candidates if all((p / f).exists() for f in REQUIRED_FILES)]
    return max(complete or candidates, key=lambda p: p.stat().st_mtime, default=None)


def _check_folder(directory: Path, what: str) -> Path:
    missing = [f for f in REQUIRED_FILES if not (directory / f).exists()]
    if missing:
        raise FileNotFoundError(f"{what} {directory} lacks {', '.join(missing)} (a CLIP model needs {REQUIRED_FILES})")
    return directory


def resolve_model_dir(name_or_path: str) -> Path:
    """A local model folder, or the cached snapshot of a Hugging Face repo id ("org/name"); never downloads."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _check_folder(path, "model folder")
    cache = hub_cache_dir()
    parts = name_or_path.strip("/").split("/")
    is_repo_id = 1 <= len(parts) <= 2 and all(parts) and not name_or_path.startswith((".", "/", "~"))
    repo_dir = cache / ("models--" + "--".join(parts))
    snapshot = _snapshot(repo_dir) if is_repo_id else None
    if snapshot is not None:
        return _check_folder(snapshot, f"cached snapshot of {name_or_path!r}:")
    looked = f"no folder {path.resolve()}"
    if is_repo_id:
        looked += f", no snapshot under {repo_dir}"
    raise FileNotFoundError(
        f"CLIP model {name_or_path!r} not found ({looked}; Hugging Face cache: {cache}, set by HF_HUB_CACHE or "
        "HF_HOME). Models are never downloaded here: fetch one with `hf download <repo id>` first."
    )


def load_config(directory: Path) -> dict[str, Any]:
    """config.json with the legacy `*_config_dict` entries applied over `*_config`, as transformers does."""
    cfg = json.loads((directory / "config.json").read_text())
    if cfg.get("model_type") != "clip":
        raise ValueError(f"{directory / 'config.json'}: model_type is {cfg.get('model_type')!r}, not 'clip'")
    for tower in ("text", "vision"):
        cfg[f"{tower}_config"] = {**(cfg.get(f"{tower}_config") or {}), **(cfg.get(f"{tower}_config_dict") or {})}
    return cfg


# transformers' CLIPTextConfig / CLIPVisionConfig defaults for what a config.json may leave out.
_TEXT_DEFAULTS = {"num_hidden_layers": 12, "num_attention_heads": 8, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
                  "max_position_embeddings": 77, "eos_token_id": 49407}
_VISION_DEFAULTS = {"num_hidden_layers": 12, "num_attention_heads": 12, "hidden_act": "quick_gelu",
                    "layer_norm_eps": 1e-5, "image_size": 224, "patch_size": 32}


def tower_config(cfg: dict[str, Any], tower: str) -> dict[str, Any]:
    return {**(_TEXT_DEFAULTS if tower == "text" else _VISION_DEFAULTS), **cfg[f"{tower}_config"]}


# --- ONNX graphs -------------------------------------------------------------------------------------


class _GraphBuilder:
    """One CLIP tower: pre-norm transformer layers, then pooling, projection and L2 norm."""

    def __init__(self, weights: dict[str, np.ndarray], cfg: dict[str, Any], prefix: str) -> None:
        self.w = weights
        self.cfg = cfg
        self.prefix = prefix
        self.hidden = weights[f"{prefix}.encoder.layers.0.layer_norm1.weight"].shape[0]
        self.heads = cfg["num_attention_heads"]
        if self.hidden % self.heads:
            raise ValueError(f"hidden size {self.hidden} is not a multiple of {self.heads} heads")
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.names: set[str] = set()

    def const(self, name: str, value: np.ndarray | float | list[int]) -> str:
        """An initializer, added on first use (shared constants are named once, unused ones never exist)."""
        if name in self.names:
            return name
        self.names.add(name)
        array = np.array(value, np.int64 if isinstance(value, list) else None, order="C")  # keeps 0-d as 0-d
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], name: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def linear(self, x: str, key: str, name: str, scale: float = 1.0) -> str:
        """x @ W.T (+ b), the torch (out, in) weight stored transposed for MatMul."""
        y = self.op("MatMul", [x, self.const(f"{name}.w", self.w[f"{key}.weight"].T * scale)], f"{name}.mm")
        if f"{key}.bias" not in self.w:
            return y
        return self.op("Add", [y, self.const(f"{name}.b", self.w[f"{key}.bias"] * scale)], name)

    def layer_norm(self, x: str, key: str, name: str) -> str:
        gamma = self.const(f"{name}.gamma", self.w[f"{key}.weight"])
        beta = self.const(f"{name}.beta", self.w[f"{key}.bias"])
        return self.op("LayerNormalization", [x, gamma, beta], name, axis=-1, epsilon=self.cfg["layer_norm_eps"])

    def activation(self, x: str, n: str) -> str:
        act, c = self.cfg["hidden_act"], self.const
        if act == "quick_gelu":  # x * sigmoid(1.702 x), OpenAI's approximation
            scaled = self.op("Mul", [x, c("c1702", 1.702)], f"{n}.s")
            return self.op("Mul", [x, self.op("Sigmoid", [scaled], f"{n}.sig")], n)
        if act == "gelu":  # exact (erf) GELU: x/2 * (1 + erf(x / sqrt 2))
            t = self.op("Erf", [self.op("Div", [x, c("sqrt2", math.sqrt(2))], f"{n}.div")], f"{n}.erf")
        elif act in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):  # x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            cube = self.op("Mul", [self.op("Pow", [x, c("three", 3.0)], f"{n}.cube"), c("c044715", 0.044715)],
                           f"{n}.cube.s")
            inner = self.op("Mul", [self.op("Add", [x, cube], f"{n}.in"), c("sqrt_2_pi", math.sqrt(2 / math.pi))],
                            f"{n}.in.s")
            t = self.op("Tanh", [inner], f"{n}.tanh")
        else:
            raise ValueError(f"unsupported hidden_act {act!r}")
        half_x = self.op("Mul", [x, c("half", 0.5)], f"{n}.half")
        return self.op("Mul", [half_x, self.op("Add", [t, c("one", 1.0)], f"{n}.1p")], n)

    def attention(self, x: str, bias: str | None, p: str, n: str) -> str:
        head_dim = self.hidden // self.heads

        def heads(name: str, scale: float, perm: list[int]) -> str:
            y = self.linear(x, f"{p}.self_attn.{name}", f"{n}.{name}", scale)
            return self.op("Transpose", [self.op("Reshape", [y, "heads_shape"], f"{y}.split")], f"{y}.t", perm=perm)

        q = heads("q_proj", head_dim**-0.5, [0, 2, 1, 3])  # the softmax scale folded into the projection
        k = heads("k_proj", 1.0, [0, 2, 3, 1])  # already transposed for q @ k
        v = heads("v_proj", 1.0, [0, 2, 1, 3])
        scores = self.op("MatMul", [q, k], f"{n}.qk")
        if bias is not None:
            scores = self.op("Add", [scores, bias], f"{n}.scores")
        probs = self.op("Softmax", [scores], f"{n}.probs", axis=-1)
        ctx = self.op("Transpose", [self.op("MatMul", [probs, v], f"{n}.ctx")], f"{n}.ctx.t", perm=[0, 2, 1, 3])
        ctx = self.op("Reshape", [ctx, "merged_shape"], f"{n}.ctx.merged")
        return self.linear(ctx, f"{p}.self_attn.out_proj", f"{n}.out")

    def encoder(self, x: str, bias: str | None) -> str:
        for i in range(self.cfg["num_hidden_layers"]):
            p, n = f"{self.prefix}.encoder.layers.{i}", f"l{i}"
            h = self.attention(self.layer_norm(x, f"{p}.layer_norm1", f"{n}.ln1"), bias, p, n)
            x = self.op("Add", [x, h], f"{n}.res1")
            h = self.linear(self.layer_norm(x, f"{p}.layer_norm2", f"{n}.ln2"), f"{p}.mlp.fc1", f"{n}.fc1")
            h = self.linear(self.activation(h, f"{n}.act"), f"{p}.mlp.fc2", f"{n}.fc2")
            x = self.op("Add", [x, h], f"{n}.res2")
        if f"{self.prefix}.encoder.layers.{self.cfg['num_hidden_layers']}.layer_norm1.weight" in self.w:
            raise ValueError(f"the weights have more {self.prefix} layers than config.json says")
        return x

    def constants(self) -> None:
        self.const("heads_shape", [0, 0, self.heads, self.hidden // self.heads])
        self.const("merged_shape", [0, 0, self.hidden])

    def project_and_normalise(self, pooled: str, projection: str) -> str:
        y = self.linear(pooled, projection, "proj")
        norm = self.op("ReduceL2", [y, self.const("last_axis", [-1])], "norm", keepdims=1)
        return self.op("Div", [y, self.op("Max", [norm, self.const("min_norm", 1e-12)], "norm.clamped")], "embedding")

    def finish(self, name: str, inputs: list[onnx.ValueInfoProto], dim: int) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name, inputs, [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
            self.initializers,
        )
        # Opset 18 / IR 8: loadable by onnxruntime >= 1.18, like the other runners.
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
        onnx.checker.check_model(model)
        return model

    def build_vision(self) -> onnx.ModelProto:
        """pixel_values (batch, 3, size, size), normalised -> unit image embedding."""
        self.constants()
        e = f"{self.prefix}.embeddings"
        patch_w = self.w[f"{e}.patch_embedding.weight"]
        patch, size = patch_w.shape[-1], self.cfg["image_size"]
        positions = self.w[f"{e}.position_embedding.weight"]
        if positions.shape[0] != (size // patch) ** 2 + 1:
            raise ValueError(f"{positions.shape[0]} vision positions do not fit {size}px images in {patch}px patches")
        x = self.op("Conv", ["pixel_values", self.const("patch.w", patch_w)], "patches",
                    kernel_shape=[patch, patch], strides=[patch, patch])
        x = self.op("Reshape", [x, self.const("flat_shape", [0, self.hidden, -1])], "patches.flat")
        x = self.op("Transpose", [x], "patches.t", perm=[0, 2, 1])
        x = self.op("Add", [x, self.const("patch.pos", positions[1:][None])], "patches.pos")
        # The class token (with its position) is the same for every image: broadcast it to the batch.
        batch = self.op("Shape", ["pixel_values"], "batch", start=0, end=1)
        cls_shape = self.op("Concat", [batch, self.const("cls_tail", [1, self.hidden])], "cls.shape", axis=0)
        cls = self.const("cls", (self.w[f"{e}.class_embedding"] + positions[0])[None, None])
        x = self.op("Concat", [self.op("Expand", [cls, cls_shape], "cls.batch"), x], "tokens", axis=1)
        x = self.layer_norm(x, f"{self.prefix}.pre_layrnorm", "pre_ln")  # transformers' spelling
        x = self.encoder(x, None)
        pooled = self.op("Gather", [x, self.const("zero", np.array(0, np.int64))], "cls.out", axis=1)
        pooled = self.layer_norm(pooled, f"{self.prefix}.post_layernorm", "post_ln")
        self.project_and_normalise(pooled, "visual_projection")
        pixels = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, size, size])
        return self.finish("clip_vision", [pixels], self.w["visual_projection.weight"].shape[0])

    def build_text(self) -> onnx.ModelProto:
        """input_ids, attention_mask (batch, seq) -> unit text embedding, pooled where transformers pools."""
        self.constants()
        e = f"{self.prefix}.embeddings"
        positions = self.w[f"{e}.position_embedding.weight"]
        seq_len = self.op("Shape", ["input_ids"], "seq_len", start=1, end=2)
        zero, axis0 = self.const("zero1", [0]), self.const("axis0", [0])
        pos = self.op("Slice", [self.const("positions", positions), zero, seq_len, axis0], "pos")
        tok = self.op("Gather", [self.const("tokens", self.w[f"{e}.token_embedding.weight"]), "input_ids"], "tok")
        x = self.op("Add", [tok, pos], "emb")

        # Key j is visible from query i when j <= i (causal) and j is a real token; else the most negative float.
        n = positions.shape[0]
        causal = self.const("causal", np.tril(np.ones((n, n), bool)))
        causal = self.op("Slice", [causal, self.const("zero2", [0, 0]), self.op("Concat", [seq_len, seq_len],
                         "seq_len2", axis=0), self.const("axes01", [0, 1])], "causal.s")
        real = self.op("Cast", ["attention_mask"], "mask.bool", to=TensorProto.BOOL)
        real = self.op("Unsqueeze", [real, self.const("axes12", [1, 2])], "mask.keys")
        allowed = self.op("And", [causal, real], "allowed")
        bias = self.op("Where", [allowed, self.const("open", 0.0),
                                 self.const("closed", float(np.finfo(np.float32).min))], "mask.bias")
        x = self.encoder(x, bias)

        # transformers pools at the first eos_token_id, or at argmax(input_ids) for legacy configs (eos 2).
        ids = self.op("Cast", ["input_ids"], "ids.i32", to=TensorProto.INT32)
        if self.cfg["eos_token_id"] == LEGACY_EOS_TOKEN_ID:
            mask32 = self.op("Cast", ["attention_mask"], "mask.i32", to=TensorProto.INT32)
            key = self.op("Mul", [ids, mask32], "pool.key")  # padding never wins, whatever its id
        else:
            eos = self.const("eos", np.array(self.cfg["eos_token_id"], np.int32))
            key = self.op("Cast", [self.op("Equal", [ids, eos], "is_eos")], "pool.key", to=TensorProto.INT32)
        where = self.op("ArgMax", [key], "pool.at", axis=1, keepdims=1)  # first maximum: (batch, 1)
        pooled = self.op("GatherND", [x, where], "pooled", batch_dims=1)
        pooled = self.layer_norm(pooled, f"{self.prefix}.final_layer_norm", "final_ln")
        self.project_and_normalise(pooled, "text_projection")
        inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
                  for name in ("input_ids", "attention_mask")]
        return self.finish("clip_text", inputs, self.w["text_projection.weight"].shape[0])


def _load_weights(directory: Path) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float32) for k, v in load_file(directory / "model.safetensors").items()}


def build_vision_model(directory: Path, weights: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """The image tower: pixel_values (batch, 3, size, size) -> unit embedding (batch, projection_dim)."""
    cfg = tower_config(load_config(directory), "vision")
    return _GraphBuilder(weights or _load_weights(directory), cfg, "vision_model").build_vision()


def build_text_model(directory: Path, weights: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """The text tower: input_ids, attention_mask (batch, seq) -> unit embedding (batch, projection_dim)."""
    cfg = tower_config(load_config(directory), "text")
    return _GraphBuilder(weights or _load_weights(directory), cfg, "text_model").build_text()


# --- preprocessing -----------------------------------------------------------------------------------


def _side(value: Any, key: str) -> int:
    """A size from preprocessor_config.json: an int, or a dict with `key` (or height == width)."""
    if isinstance(value, int):
        return value
    if key in value:
        return int(value[key])
    if value.get("height") != value.get("width"):
        raise ValueError(f"only square crops are supported, got {value}")
    return int(value["height"])


class ImagePreprocessor:
    """transformers' CLIPImageProcessor (PIL backend): shortest side to `size` (bicubic), centre crop,
    rescale, normalise, channels first."""

    def __init__(self, directory: Path, image_size: int) -> None:
        path = directory / "preprocessor_config.json"
        cfg = json.loads(path.read_text()) if path.exists() else {}
        self.resize = cfg.get("do_resize", True)
        self.size = _side(cfg.get("size", image_size), "shortest_edge")
        self.resample = Image.Resampling(cfg.get("resample", Image.Resampling.BICUBIC))
        self.crop = cfg.get("do_center_crop", True)
        self.crop_size = _side(cfg.get("crop_size", image_size), "height")
        self.scale = cfg.get("rescale_factor", 1 / 255) if cfg.get("do_rescale", True) else 1.0
        normalise = cfg.get("do_normalize", True)
        self.mean = np.asarray(cfg.get("image_mean", CLIP_MEAN) if normalise else 0.0, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(cfg.get("image_std", CLIP_STD) if normalise else 1.0, np.float32).reshape(-1, 1, 1)
        if (self.crop_size if self.crop else self.size) != image_size:
            raise ValueError(f"the preprocessor makes {self.crop_size}px images, the model takes {image_size}px")

    def __call__(self, image: Image.Image) -> np.ndarray:
        image = image.convert("RGB")
        if self.resize:
            w, h = image.size
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.size, int(self.size * long / short)
            image = image.resize((new_short, new_long) if w <= h else (new_long, new_short), self.resample)
        if self.crop:
            w, h = image.size
            top, left = (h - self.crop_size) // 2, (w - self.crop_size) // 2
            image = image.crop((left, top, left + self.crop_size, top + self.crop_size))  # pads black if small
        pixels = np.asarray(image, np.float32).transpose(2, 0, 1) * np.float32(self.scale)
        return (pixels - self.mean) / self.std


# --- runner ------------------------------------------------------------------------------------------


def _display_name(directory: Path) -> str:
    """"org/name" for a Hugging Face cache snapshot, else the folder name."""
    repo = directory.parent.parent.name
    if directory.parent.name == "snapshots" and repo.startswith("models--"):
        return repo.removeprefix("models--").replace("--", "/")
    return directory.resolve().name


class ClipModel:
    """Unit vectors of images and texts in one CLIP space, from a transformers CLIP folder."""

    def __init__(
        self, directory: Path, cache_dir: Path | None = None, threads: int | None = None, batch_size: int = 16
    ) -> None:
        self.directory = directory
        cfg = load_config(directory)
        self.text_cfg, self.vision_cfg = tower_config(cfg, "text"), tower_config(cfg, "vision")
        weights_file = directory / "model.safetensors"
        digest = file_sha256(weights_file)
        self.model_id = f"clip:{_display_name(directory)}@{digest[:8]}"
        self.batch_size = batch_size
        with safe_open(weights_file, framework="numpy") as f:
            self.logit_scale = float(np.exp(f.get_tensor("logit_scale").astype(np.float64).reshape(-1)[0]))
            self.projection_dim = int(f.get_slice("visual_projection.weight").get_shape()[0])
        self.image_size = int(self.vision_cfg["image_size"])
        self.preprocess = ImagePreprocessor(directory, self.image_size)

        self.max_length = int(self.text_cfg["max_position_embeddings"])
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()  # batches are padded here, to their longest text
        self.tokenizer.enable_truncation(self.max_length)

        # config.json shapes the graphs too (activation, pooling rule): it is part of the cache key.
        key = hashlib.sha256(digest.encode() + (directory / "config.json").read_bytes()).hexdigest()[:16]
        weights = functools.cache(lambda: _load_weights(directory))  # read once even when both graphs are built
        self.vision_path = cached_onnx(cache_dir, f"clip-vision-{key}-b{BUILDER_VERSION}",
                                       lambda: build_vision_model(directory, weights()))
        self.text_path = cached_onnx(cache_dir, f"clip-text-{key}-b{BUILDER_VERSION}",
                                     lambda: build_text_model(directory, weights()))
        self.vision = cpu_session(self.vision_path, threads)
        self.text = cpu_session(self.text_path, threads)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, projection_dim) float32 unit vectors in the order of `images`."""
        out = [np.zeros((0, self.projection_dim), np.float32)]
        for start in range(0, len(images), self.batch_size):
            batch = np.stack([self.preprocess(im) for im in images[start : start + self.batch_size]])
            out.append(self.vision.run(["embedding"], {"pixel_values": batch})[0])
        return np.concatenate(out)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with the tokenizer's start and end tokens, cut to the model's max_position_embeddings."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(N, projection_dim) float32 unit vectors in the order of `texts`."""
        ids = self.tokenize(texts)
        out = np.zeros((len(ids), self.projection_dim), np.float32)
        # Length-sorted batches waste little compute on padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(ids[batch[-1]]), 1)
            input_ids = np.zeros((len(batch), width), np.int64)
            mask = np.zeros((len(batch), width), np.int64)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            (out[batch],) = self.text.run(["embedding"], {"input_ids": input_ids, "attention_mask": mask})
        return out
