"""What every vision-LLM provider shares: the prompt built from the vocabulary, the image as sent, the answer checks.

A subclass only says how to ask its API (`ask`) and how to embed (`embed`); the vocabulary in the prompt, the
JSON schema, the validation of the answer and the failure reasons are the same for Bedrock and for any
OpenAI-compatible server, so both store exactly the same kind of rows.
"""

from __future__ import annotations

import hashlib
import io
import json
from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from imgsearch_pipeline.analysis.images import BadImage, decode_image
from imgsearch_pipeline.analysis.model_output import answer_schema, parse_answer
from imgsearch_pipeline.analysis.provider import AnalysisFailure, AnalysisProvider
from imgsearch_pipeline.analysis.types import ImageAnalysis
from imgsearch_pipeline.vocab import Vocabulary, get_vocabulary

MAX_SIDE = 1024  # vision APIs downscale anyway; sending less saves upload time and tokens
JPEG_QUALITY = 90


class PermanentProviderError(RuntimeError):
    """The API refused this image for good (content filter, invalid request): recorded, never retried."""


def build_prompt(vocab: Vocabulary) -> str:
    """Instructions listing every allowed id, so the model answers in the vocabulary rather than in prose."""
    lines = [
        "You label product photos for an e-commerce catalogue. Look only at the product the photo is about",
        "(ignore the model's skin, hair, background and other garments). Answer with one JSON object that",
        "matches the given JSON schema and nothing else. Use only the ids listed here; use null when unsure.",
        "",
        "category ids: " + ", ".join(f"{c.id} ({c.label})" for c in vocab.categories),
        "colour ids (largest area first, coverage = share of the product's area): " + ", ".join(vocab.color_ids),
        "pattern ids: " + ", ".join(f"{p.id}{' (printed)' if p.has_print else ''}" for p in vocab.patterns),
        "has_print: true if the product carries any print, graphic, logo artwork or text; false if plain.",
        "attributes (only those visible; name: allowed values):",
    ]
    for name, attribute in vocab.attributes.items():
        lines.append(f"  {name}: {', '.join(v.id for v in attribute.values)}")
    lines += ["description: one or two plain sentences a shopper would use to find this product."]
    return "\n".join(lines)


def prompt_version(prompt: str, schema: dict) -> str:
    """Changes whenever the prompt or the answer schema changes: part of every LLM provider's model_version."""
    return hashlib.sha256((prompt + json.dumps(schema, sort_keys=True)).encode()).hexdigest()[:8]


def prepare_image(data: bytes, max_side: int = MAX_SIDE) -> bytes:
    """Decode (rejecting bad images with the reason), fix orientation, downscale and re-encode as JPEG."""
    img = decode_image(data)
    img.thumbnail((max_side, max_side))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


class VisionLLMProvider(AnalysisProvider):
    """One request per image: the pipeline keeps `max_in_flight` of them running and retries transient errors."""

    call_size: ClassVar[int | None] = 1

    def __init__(self, vocab: Vocabulary | None = None) -> None:
        self.vocab = vocab or get_vocabulary()
        self.prompt = build_prompt(self.vocab)
        self.schema = answer_schema()
        self.prompt_version = prompt_version(self.prompt, self.schema)

    @abstractmethod
    def ask(self, jpeg: bytes) -> str:
        """The model's text answer for one image. Raise `TransientProviderError` for throttling, timeouts and
        5xx; `PermanentProviderError` for a refusal that will not change."""

    @abstractmethod
    def embed(self, jpeg: bytes, analysis: ImageAnalysis) -> tuple[np.ndarray, np.ndarray]:
        """(image vector, text vector) for an analysed image."""

    def analyse(self, images: Sequence[bytes]) -> list[ImageAnalysis | AnalysisFailure]:
        return [self._analyse_one(data) for data in images]

    def _analyse_one(self, data: bytes) -> ImageAnalysis | AnalysisFailure:
        try:
            jpeg = prepare_image(data)
        except BadImage as e:
            return AnalysisFailure(str(e))
        try:
            answer = self.ask(jpeg)
            analysis, _ = parse_answer(answer, self.model_version)
            if isinstance(analysis, AnalysisFailure):
                return analysis
            image_vec, text_vec = self.embed(jpeg, analysis)
        except PermanentProviderError as e:
            return AnalysisFailure(f"refused by {self.name}: {e}")
        return analysis.model_copy(update={"image_embedding": [float(x) for x in image_vec],
                                           "text_embedding": [float(x) for x in text_vec]})
