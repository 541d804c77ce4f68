"""The Dagster instance of the local stack: $DAGSTER_HOME in the state folder, storage in the stack's Postgres."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

REPO_ROOT = Path(__file__).resolve().parents[2]


def dagster_env(state: Path, postgres_dsn: str) -> dict[str, str]:
    """Environment variables for any process that uses the instance (CLI runs, `dagster dev`)."""
    home = state / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    url = urlparse(postgres_dsn)
    return {
        "DAGSTER_HOME": str(home),
        "IMGSEARCH_STATE_DIR": str(state),
        "IMGSEARCH_DAGSTER_PG_USER": url.username or "postgres",
        # The embedded server trusts local connections; the variable must still be set.
        "IMGSEARCH_DAGSTER_PG_PASSWORD": url.password or "imgsearch",
        "IMGSEARCH_DAGSTER_PG_HOST": url.hostname or "127.0.0.1",
        "IMGSEARCH_DAGSTER_PG_PORT": str(url.port or 5432),
        "IMGSEARCH_DAGSTER_PG_DB": "dagster",
    }


def apply(env: dict[str, str]) -> None:
    os.environ.update(env)
