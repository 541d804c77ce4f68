"""The image-analysis provider, chosen by name in configuration; its own options are validated by the provider."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from imgsearch_pipeline.analysis.pacing import Pacer
from imgsearch_pipeline.analysis.provider import PROVIDERS, AnalysisProvider, get_provider
from imgsearch_pipeline.analysis.retry import RetryPolicy


@cache
def _provider(name: str, options_json: str) -> AnalysisProvider:
    # One instance per process and configuration: model sessions and API clients are expensive to build.
    return get_provider(name, json.loads(options_json))


class AnalysisProviderResource(ConfigurableResource):
    provider: str = Field(default="builtin", description=f"one of: {', '.join(PROVIDERS)}")
    options: dict[str, Any] = Field(default_factory=dict, description="the provider's own options")
    batch_size: int = Field(default=32, ge=1, le=512, description="images read from S3 per batch")
    max_in_flight: int = Field(default=1, ge=1, le=64, description="provider calls running at once (quota)")
    max_attempts: int = Field(default=6, ge=1, le=50, description="tries per call on transient errors")
    base_delay_s: float = Field(default=1.0, ge=0.0, description="first backoff; doubles per attempt")
    max_delay_s: float = Field(default=60.0, ge=0.0, description="longest wait between two attempts")
    max_images_per_second: float | None = Field(default=None, gt=0, description="provider quota; None: no limit")

    def get(self) -> AnalysisProvider:
        return _provider(self.provider, json.dumps(self.options, sort_keys=True))

    def pacer(self) -> Pacer:
        return Pacer(self.max_images_per_second)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.max_attempts, base_delay_s=self.base_delay_s,
                           max_delay_s=self.max_delay_s)
