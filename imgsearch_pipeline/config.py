"""Where imgsearch finds its services: environment variables first, else the local stack's state file.

Production deployments set `IMGSEARCH_POSTGRES_DSN`, `IMGSEARCH_S3_ENDPOINT_URL` (empty for AWS),
`IMGSEARCH_OPENSEARCH_URL` and friends; `imgsearch stack up` writes the same settings for the embedded stack
into `<state dir>/stack.json`, so every process (CLI, Dagster, API) finds the same servers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

STACK_FILE = "stack.json"


def state_dir() -> Path:
    """`IMGSEARCH_STATE_DIR`, else `.state` in the current directory: one folder for all local state."""
    return Path(os.environ.get("IMGSEARCH_STATE_DIR", ".state")).resolve()


def cache_dir() -> Path:
    """Downloads and built model graphs, shared by every checkout: `IMGSEARCH_CACHE` or ~/.cache/imgsearch."""
    return Path(os.environ.get("IMGSEARCH_CACHE", Path.home() / ".cache" / "imgsearch")).resolve()


class Settings(BaseModel):
    """Connection settings for the three servers and the search index naming."""

    model_config = ConfigDict(extra="forbid")

    postgres_dsn: str | None = None
    s3_endpoint_url: str | None = Field(default=None, description="None means AWS S3 itself")
    s3_bucket: str = "imgsearch-catalog"
    s3_region: str = "us-east-1"
    opensearch_url: str | None = None
    opensearch_user: str | None = None
    opensearch_password: SecretStr | None = None
    opensearch_verify_certs: bool = True
    index_prefix: str = "imgsearch"
    provider: str = "builtin"
    provider_options: dict[str, Any] = Field(default_factory=dict, description="the provider's own options")
    max_in_flight: int = Field(default=1, ge=1, le=64, description="provider calls at once")
    max_images_per_second: float | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=50, description="tries per provider call on transient errors")
    retry_base_delay_s: float = Field(default=1.0, ge=0.0, description="first backoff; doubles per attempt")
    retry_max_delay_s: float = Field(default=60.0, ge=0.0, description="longest wait between two attempts")
    search_backend: Literal["opensearch", "postgres"] = "opensearch"
    query_parser: Literal["rules", "llm"] = "rules"
    sqs_queue_url: str | None = Field(default=None, description="S3 event notification queue: enables s3_event_sensor")
    sqs_endpoint_url: str | None = Field(default=None, description="None: s3_endpoint_url (moto serves SQS too)")

    def require(self, name: str) -> str:
        value = getattr(self, name)
        if not value:
            raise RuntimeError(
                f"{name} is not configured: set IMGSEARCH_{name.upper()} or start the local stack "
                "with `imgsearch stack up`"
            )
        return value


_ENV = {
    "postgres_dsn": "IMGSEARCH_POSTGRES_DSN",
    "s3_endpoint_url": "IMGSEARCH_S3_ENDPOINT_URL",
    "s3_bucket": "IMGSEARCH_S3_BUCKET",
    "s3_region": "IMGSEARCH_S3_REGION",
    "opensearch_url": "IMGSEARCH_OPENSEARCH_URL",
    "opensearch_user": "IMGSEARCH_OPENSEARCH_USER",
    "opensearch_password": "IMGSEARCH_OPENSEARCH_PASSWORD",
    "opensearch_verify_certs": "IMGSEARCH_OPENSEARCH_VERIFY_CERTS",
    "index_prefix": "IMGSEARCH_INDEX_PREFIX",
    "provider": "IMGSEARCH_PROVIDER",
    "provider_options": "IMGSEARCH_PROVIDER_OPTIONS",
    "max_in_flight": "IMGSEARCH_MAX_IN_FLIGHT",
    "max_images_per_second": "IMGSEARCH_MAX_IMAGES_PER_SECOND",
    "max_attempts": "IMGSEARCH_MAX_ATTEMPTS",
    "retry_base_delay_s": "IMGSEARCH_RETRY_BASE_DELAY_S",
    "retry_max_delay_s": "IMGSEARCH_RETRY_MAX_DELAY_S",
    "search_backend": "IMGSEARCH_SEARCH_BACKEND",
    "query_parser": "IMGSEARCH_QUERY_PARSER",
    "sqs_queue_url": "IMGSEARCH_SQS_QUEUE_URL",
    "sqs_endpoint_url": "IMGSEARCH_SQS_ENDPOINT_URL",
}
_JSON = {"provider_options"}


def load_settings(state: Path | None = None) -> Settings:
    """Merge the local stack's file (if any) under the environment."""
    values: dict = {}
    stack_file = (state or state_dir()) / STACK_FILE
    if stack_file.exists():
        values.update(json.loads(stack_file.read_text())["settings"])
    for key, env in _ENV.items():
        if env in os.environ:
            raw = os.environ[env]
            try:
                values[key] = json.loads(raw) if key in _JSON and raw else raw or None
            except json.JSONDecodeError as e:
                raise ValueError(f"{env} is not valid JSON: {e.msg} at {e.pos}") from e
    return Settings.model_validate(values)
