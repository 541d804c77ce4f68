"""The CLIP provider: one image-text model gives the image vector and, zero-shot, the category, pattern and
open attributes; colours come from pixels exactly as in the builtin provider (CLIP confuses shades).

Every vocabulary value becomes a small prompt ensemble (templates over its label and synonyms) embedded once
per provider; an image takes the value whose prompts it matches best, and only when the softmax over the
values is confident enough: below the floor the field stays empty rather than guessed. Image and text live in
one space, so `text_embedding` is the image vector itself and query text is embedded by the text tower.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cached_property
from itertools import pairwise

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from imgsearch_pipeline.analysis.colors import dominant_colors, foreground_mask
from imgsearch_pipeline.analysis.describe import describe
from imgsearch_pipeline.analysis.images import decode_image
from imgsearch_pipeline.analysis.models.clip import ClipModel, resolve_model_dir
from imgsearch_pipeline.analysis.provider import AnalysisFailure, AnalysisProvider, decode_batch
from imgsearch_pipeline.analysis.types import ImageAnalysis
from imgsearch_pipeline.vocab import Vocabulary, get_vocabulary, normalize_term

# Bump when the provider's logic changes in a way that changes its output: it is part of model_version.
LOGIC_VERSION = "1"
PIXEL_SIDE = 256  # colour works on a downscaled copy, as in the builtin provider
# Prompt templates per kind of value; "{term}" is a label or synonym, "{label}" the attribute's name.
CATEGORY_TEMPLATES = (
    "a photo of a {term}.",
    "a product photo of a {term}.",
    "a catalogue photo of a {term}.",
    "a close-up photo of a {term}.",
)
PATTERN_TEMPLATES = (
    "a photo of a {term} product.",
    "a product with a {term} pattern.",
    "{term} fabric.",
)
ATTRIBUTE_TEMPLATES = (
    "a product photo, {label}: {term}.",
    "a photo of a {term} product.",
    "a close-up photo showing {term}.",
)


class ClipOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="a transformers CLIP folder, or a Hugging Face repo id already in the HF cache")
    batch_size: int = Field(default=16, ge=1, le=512, description="images or texts per ONNX inference call")
    threads: int | None = Field(default=None, ge=1, description="CPU threads per session (default: all)")
    min_category_score: float = Field(default=0.3, ge=0.0, le=1.0, description="softmax floor for a category")
    min_pattern_score: float = Field(default=0.4, ge=0.0, le=1.0, description="softmax floor for a pattern")
    min_attribute_score: float = Field(default=0.5, ge=0.0, le=1.0, description="softmax floor for an attribute")
    max_terms: int = Field(default=4, ge=1, le=32, description="label and synonyms per value in its prompts")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def value_terms(entry_id: str, label: str, synonyms: Sequence[str], max_terms: int) -> list[str]:
    """The label (or the id in words) and then synonyms, lower case, without repeats, at most `max_terms`."""
    terms: dict[str, str] = {}
    for term in (label or entry_id.replace("-", " "), *synonyms):
        terms.setdefault(normalize_term(term), term.lower())
    return list(terms.values())[:max_terms]


class ZeroShotClasses:
    """The values of one vocabulary field and their class vectors (mean of the unit prompt vectors, renormalised)."""

    def __init__(self, ids: Sequence[str], prompts: Sequence[Sequence[str]]) -> None:
        self.ids = tuple(ids)
        self.prompts = tuple(tuple(p) for p in prompts)
        self.matrix = np.zeros((len(self.ids), 0), np.float32)

    def set_vectors(self, vectors: np.ndarray) -> None:
        """`vectors`: one row per prompt, in the order of `prompts` flattened."""
        bounds = np.cumsum([0, *map(len, self.prompts)])
        self.matrix = _normalise(np.stack([vectors[a:b].mean(axis=0) for a, b in pairwise(bounds)]))

    def best(self, image_vector: np.ndarray, logit_scale: float) -> tuple[str, float]:
        """The most likely value and its softmax probability over this field's values."""
        probs = _softmax(logit_scale * (self.matrix @ image_vector))
        i = int(np.argmax(probs))
        return self.ids[i], float(probs[i])


class ClipProvider(AnalysisProvider):
    name = "clip"
    Options = ClipOptions

    def __init__(self, options: ClipOptions, vocab: Vocabulary | None = None) -> None:
        self.options = options
        self.vocab = vocab or get_vocabulary()
        self.model_dir = resolve_model_dir(options.model)  # a wrong name fails here, at start-up

    # The model loads on first use; the prompts are embedded once, on the first analysis.
    @cached_property
    def model(self) -> ClipModel:
        return ClipModel(self.model_dir, threads=self.options.threads, batch_size=self.options.batch_size)

    @cached_property
    def classes(self) -> dict[str, ZeroShotClasses]:
        """"category", "pattern" and "attr:<name>" -> their values with class vectors."""
        n, v = self.options.max_terms, self.vocab

        def prompts(templates: Sequence[str], terms: list[str], label: str = "") -> list[str]:
            return [t.format(term=term, label=label) for term in terms for t in templates]

        fields = {
            "category": ZeroShotClasses(v.category_ids, [
                prompts(CATEGORY_TEMPLATES, value_terms(c.id, c.label, c.synonyms, n)) for c in v.categories]),
            "pattern": ZeroShotClasses(v.pattern_ids, [
                prompts(PATTERN_TEMPLATES, value_terms(p.id, p.label, p.synonyms, n)) for p in v.patterns]),
        }
        for name, attr in v.attributes.items():
            fields[f"attr:{name}"] = ZeroShotClasses([a.id for a in attr.values], [
                prompts(ATTRIBUTE_TEMPLATES, value_terms(a.id, a.label, a.synonyms, n), attr.label.lower())
                for a in attr.values])
        everything = [p for f in fields.values() for group in f.prompts for p in group]
        vectors = self.model.embed_texts(everything)  # one pass: length-sorted batches across all fields
        start = 0
        for f in fields.values():
            count = sum(map(len, f.prompts))
            f.set_vectors(vectors[start : start + count])
            start += count
        return fields

    @cached_property
    def prompt_version(self) -> str:
        """Changes with the templates, the terms used and the confidence floors: they all shape the output."""
        o = self.options
        setup = [CATEGORY_TEMPLATES, PATTERN_TEMPLATES, ATTRIBUTE_TEMPLATES, o.max_terms, o.min_category_score,
                 o.min_pattern_score, o.min_attribute_score]
        return hashlib.sha256(json.dumps(setup).encode()).hexdigest()[:8]

    @cached_property
    def model_version(self) -> str:
        return f"clip-{LOGIC_VERSION}+{self.model.model_id}+prompts.{self.prompt_version}+vocab.{self.vocab.version}"

    @property
    def image_dim(self) -> int:
        return self.model.projection_dim

    @property
    def text_dim(self) -> int:
        return self.model.projection_dim

    def analyse(self, images: Sequence[bytes]) -> list[ImageAnalysis | AnalysisFailure]:
        results, decoded = decode_batch(images)
        if decoded:
            vectors = self.model.embed_images([img for _, img in decoded])
            for (i, img), vector in zip(decoded, vectors, strict=True):
                try:
                    fields, desc = self._attributes(img, vector)
                    results[i] = ImageAnalysis(**fields, description=desc, image_embedding=vector.tolist(),
                                               text_embedding=vector.tolist(), model_version=self.model_version)
                except ValueError as e:  # a vocabulary violation is this provider's bug: record, don't crash
                    results[i] = AnalysisFailure(f"invalid analysis: {e}")
        assert all(r is not None for r in results), "every input gets an analysis or a failure"
        return results  # type: ignore[return-value]

    def _attributes(self, img: Image.Image, vector: np.ndarray) -> tuple[dict, str]:
        small = img.copy()
        small.thumbnail((PIXEL_SIDE, PIXEL_SIDE))
        rgb = np.asarray(small)
        colors = dominant_colors(rgb, foreground_mask(rgb), self.vocab)

        o, scale, classes = self.options, self.model.logit_scale, self.classes
        category, category_score = classes["category"].best(vector, scale)
        category = category if category_score >= o.min_category_score else None
        pattern, pattern_score = classes["pattern"].best(vector, scale)
        pattern = pattern if pattern_score >= o.min_pattern_score else None
        attributes = {}
        if category is not None:  # an attribute is only asked of the groups it applies to
            group = self.vocab.category(category).group
            for name, attr in self.vocab.attributes.items():
                if group in attr.applies_to:
                    value, score = classes[f"attr:{name}"].best(vector, scale)
                    if score >= o.min_attribute_score:
                        attributes[name] = value
        fields = {
            "category": category,
            "category_confidence": round(float(min(1.0, category_score)), 4),
            "colors": colors,
            "pattern": pattern,
            "attributes": attributes,
        }
        return fields, describe(self.vocab, category, [c.color for c in colors], pattern, attributes)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.embed_texts(list(texts))

    def embed_image(self, data: bytes) -> np.ndarray:
        return self.model.embed_images([decode_image(data)])[0]
