"""Real servers for the tests: PostgreSQL (embedded), S3 (moto server) and OpenSearch, started once per run.

A server that cannot start fails the run: nothing here skips.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from imgsearch_pipeline import config
from imgsearch_pipeline.config import Settings
from imgsearch_pipeline.stack import postgres, s3
from imgsearch_pipeline.stack.opensearch import OpenSearchNode, ensure_installed


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("imgsearch-state")


@pytest.fixture(scope="session")
def postgres_server(state_dir: Path) -> Iterator[str]:
    dsn = postgres.start(state_dir / "postgres")
    yield dsn
    postgres.stop(state_dir / "postgres")


@pytest.fixture(scope="session")
def s3_server(state_dir: Path) -> Iterator[str]:
    url = s3.start(state_dir)
    yield url
    s3.stop(state_dir)


@pytest.fixture(scope="session")
def opensearch_node(state_dir: Path) -> Iterator[OpenSearchNode]:
    node = OpenSearchNode(home=ensure_installed(config.cache_dir()), state_dir=state_dir / "opensearch")
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def opensearch_server(opensearch_node: OpenSearchNode) -> str:
    return opensearch_node.url


@pytest.fixture(scope="session")
def new_database(postgres_server: str) -> Callable[[], str]:
    """Makes a new, empty database on the session's server and returns its DSN (tests never share rows)."""
    port = int(postgres_server.rsplit(":", 1)[1].split("/")[0])

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return postgres.dsn(port, name)

    return make


@pytest.fixture(scope="session")
def new_settings(new_database, s3_server: str, opensearch_server: str) -> Callable[[], Settings]:
    """Settings with their own database, bucket and index alias on the shared servers."""
    def make() -> Settings:
        suffix = uuid.uuid4().hex[:10]
        return Settings(postgres_dsn=new_database(), s3_endpoint_url=s3_server, s3_bucket=f"test-{suffix}",
                        opensearch_url=opensearch_server, index_prefix=f"test-{suffix}")

    return make


@pytest.fixture
def settings(new_settings) -> Settings:
    return new_settings()
