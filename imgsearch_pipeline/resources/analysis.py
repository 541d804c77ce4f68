"""The image-analysis provider, chosen by name in configuration (builtin, and later cloud providers)."""

from __future__ import annotations

from functools import cache

from dagster import ConfigurableResource
from pydantic import Field

from imgsearch_pipeline.analysis.pacing import Pacer
from imgsearch_pipeline.analysis.provider import AnalysisProvider, get_provider
from imgsearch_pipeline.analysis.retry import RetryPolicy


@cache
def _provider(name: str, batch_size: int) -> AnalysisProvider:
    # One instance per process: model sessions are expensive to build.
    return get_provider(name, batch_size=batch_size)


class AnalysisProviderResource(ConfigurableResource):
    provider: str = Field(default="builtin", description="builtin")
    batch_size: int = Field(default=32, ge=1, le=512)
    max_attempts: int = Field(default=6, ge=1, le=50, description="tries per call on transient errors")
    base_delay_s: float = Field(default=1.0, ge=0.0, description="first backoff; doubles per attempt")
    max_delay_s: float = Field(default=60.0, ge=0.0, description="longest wait between two attempts")
    max_images_per_second: float | None = Field(default=None, gt=0, description="provider quota; None: no limit")

    def get(self) -> AnalysisProvider:
        return _provider(self.provider, self.batch_size)

    def pacer(self) -> Pacer:
        return Pacer(self.max_images_per_second)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.max_attempts, base_delay_s=self.base_delay_s,
                           max_delay_s=self.max_delay_s)
