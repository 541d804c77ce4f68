"""The interface every analysis provider implements, and how one is chosen by name.

A provider turns image bytes into validated `ImageAnalysis` objects (one per input, or an `AnalysisFailure`
with a reason) and embeds query text into the same space as its `text_embedding`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imgsearch_pipeline.analysis.types import ImageAnalysis


@dataclass(frozen=True)
class AnalysisFailure:
    """Why one image could not be analysed; `retryable` failures may succeed on a later attempt."""

    reason: str
    retryable: bool = False


class AnalysisProvider(ABC):
    """Image bytes in, vocabulary-validated analyses out."""

    name: str

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


def get_provider(name: str, **options) -> AnalysisProvider:
    """The provider registered under `name`; imported lazily so unused providers cost nothing."""
    if name == "builtin":
        from imgsearch_pipeline.analysis.builtin import BuiltinProvider

        return BuiltinProvider(**options)
    raise ValueError(f"unknown analysis provider {name!r} (available: builtin)")
