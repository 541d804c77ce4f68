"""The interface every analysis provider implements, and how one is chosen by name.

A provider turns image bytes into validated `ImageAnalysis` objects (one per input, or an `AnalysisFailure`
with a reason) and embeds query text into the same space as its `text_embedding`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from imgsearch_pipeline.analysis.images import BadImage, decode_image
from imgsearch_pipeline.analysis.types import ImageAnalysis


@dataclass(frozen=True)
class AnalysisFailure:
    """Why one image could not be analysed; `retryable` failures may succeed on a later attempt."""

    reason: str
    retryable: bool = False


class ProviderConfigurationError(RuntimeError):
    """The provider rejects every request (bad key, unknown model, wrong URL or region): the run stops, since no
    retry can fix it and recording it against every image would only hide the cause."""


class BatchTooSmall(ValueError):
    """A provider's batch path refuses this few images (a job minimum): analyse them with ordinary calls."""


class AnalysisProvider(ABC):
    """Image bytes in, vocabulary-validated analyses out.

    Each provider declares an `Options` pydantic model (extra fields forbidden): configuration is validated at
    the boundary, so a typo in a provider option fails at start-up, not mid-backfill.
    """

    name: str
    Options: ClassVar[type[BaseModel]]
    # Images per `analyse` call: a local model batches; a remote API takes one image per request and the
    # pipeline keeps several requests in flight instead.
    call_size: ClassVar[int | None] = None

    @property
    @abstractmethod
    def model_version(self) -> str:
        """Identifies everything that shapes the output (model ids, prompts, vocabulary version)."""

    @property
    @abstractmethod
    def image_dim(self) -> int: ...

    @property
    @abstractmethod
    def text_dim(self) -> int: ...

    @abstractmethod
    def analyse(self, images: Sequence[bytes]) -> list[ImageAnalysis | AnalysisFailure]:
        """Analyse a batch; the result has one entry per input, in order."""

    @abstractmethod
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Query text -> vectors comparable with `ImageAnalysis.text_embedding` (L2-normalised)."""

    @abstractmethod
    def embed_image(self, data: bytes) -> np.ndarray:
        """An uploaded photo -> a vector comparable with `ImageAnalysis.image_embedding`."""


def decode_batch(images: Sequence[bytes]) -> tuple[list[ImageAnalysis | AnalysisFailure | None], list[tuple[int, Any]]]:
    """For local-model providers: one result slot per image (bad images already failed with their reason) and
    the decoded RGB images with their positions, ready for one batched model call."""
    results: list[ImageAnalysis | AnalysisFailure | None] = [None] * len(images)
    decoded = []
    for i, data in enumerate(images):
        try:
            decoded.append((i, decode_image(data)))
        except BadImage as e:
            results[i] = AnalysisFailure(str(e))
    return results, decoded


# name -> "module:Class"; imported lazily so an unused provider's dependencies cost nothing.
PROVIDERS = {
    "builtin": "imgsearch_pipeline.analysis.builtin:BuiltinProvider",
    "clip": "imgsearch_pipeline.analysis.clip:ClipProvider",
    "openai": "imgsearch_pipeline.analysis.openai_compat:OpenAICompatibleProvider",
    "bedrock": "imgsearch_pipeline.analysis.bedrock:BedrockProvider",
}


def get_provider(name: str, options: Mapping[str, Any] | None = None) -> AnalysisProvider:
    """The provider registered under `name`, built from its own validated options model."""
    if name not in PROVIDERS:
        raise ValueError(f"unknown analysis provider {name!r} (available: {', '.join(PROVIDERS)})")
    module, cls = PROVIDERS[name].split(":")
    provider_cls = getattr(importlib.import_module(module), cls)
    return provider_cls(provider_cls.Options.model_validate(dict(options or {})))
