"""The image-analysis provider, chosen by name in configuration (builtin, and later cloud providers)."""

from __future__ import annotations

from functools import cache

from dagster import ConfigurableResource
from pydantic import Field

from imgsearch_pipeline.analysis.provider import AnalysisProvider, get_provider


@cache
def _provider(name: str, batch_size: int) -> AnalysisProvider:
    # One instance per process: model sessions are expensive to build.
    return get_provider(name, batch_size=batch_size)


class AnalysisProviderResource(ConfigurableResource):
    provider: str = Field(default="builtin", description="builtin")
    batch_size: int = Field(default=32, ge=1, le=512)

    def get(self) -> AnalysisProvider:
        return _provider(self.provider, self.batch_size)
