"""PostgreSQL restarts in the middle of a partition run (a real fast shutdown of this module's own server,
started again on the same port with the same data).

Between analysis and write, the run does not notice: every step opens its own connection, nothing caches one.
During the write, the run fails cleanly: the write is one transaction, so nothing of it is left behind, the
images stay pending, and the rerun writes each analysis exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import instance_for_test

from imgsearch_pipeline.stack import postgres
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline_tests.faults.support import (
    analyses_per_image,
    assert_partition_complete,
    images_of,
    index_documents,
    step_failures,
)
from imgsearch_pipeline_tests.harness import Pipeline

BETWEEN_STEPS, DURING_WRITE = "catalog/men/t-shirt/", "catalog/women/dress/"


class Server:
    """This module's PostgreSQL: restart() is a fast shutdown (every session terminated) and a start on the
    same port, so DSNs held by resources stay valid."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.dsn = postgres.start(data)
        self.port = int(self.dsn.rsplit(":", 1)[1].split("/")[0])

    def restart(self) -> None:
        postgres.stop(self.data)
        assert not postgres.is_running(self.data)
        assert postgres.start(self.data, port=self.port) == self.dsn


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("faults-pg") / "data")
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE faults")
    yield server
    postgres.stop(server.data)


@pytest.fixture(scope="module")
def pipeline(new_settings, server) -> Iterator[Pipeline]:
    settings = new_settings().model_copy(update={"postgres_dsn": postgres.dsn(server.port, "faults")})
    with instance_for_test() as instance:
        p = Pipeline(settings, instance, n_products=10, seed=3)
        with p.db():  # migrated: the tables exist before any test locks one
            pass
        yield p


def test_restart_between_analysis_and_write_goes_unnoticed(pipeline, server, monkeypatch):
    provider = pipeline.res["analysis"].get()
    analyse = provider.analyse
    restarts: list[float] = []

    def analyse_after_a_restart(images):
        if not restarts:  # the inventory has committed; the write has not begun
            server.restart()
            restarts.append(time.monotonic())
        return analyse(images)

    monkeypatch.setattr(provider, "analyse", analyse_after_a_restart)
    pipeline.run([BETWEEN_STEPS])
    assert restarts
    assert_partition_complete(pipeline, BETWEEN_STEPS, images_of(pipeline, BETWEEN_STEPS))


def test_restart_during_the_write_fails_cleanly_and_the_rerun_writes_once(pipeline, server):
    n = images_of(pipeline, DURING_WRITE)
    db = pipeline.settings.postgres_dsn
    # Reads pass an EXCLUSIVE lock, writes queue behind it: the run analyses, then waits inside its write
    # transaction (analysis rows inserted, failure records not yet cleared) until the server goes down.
    blocker = psycopg.connect(db)
    blocker.execute("LOCK TABLE analysis_failures IN EXCLUSIVE MODE")
    watcher = psycopg.connect(db, autocommit=True)  # pg_stat_activity is a fresh snapshot per transaction
    outcome: dict = {}

    def run() -> None:
        outcome["result"] = pipeline.defs.resolve_job_def("ingest_partition").execute_in_process(
            partition_key=DURING_WRITE, instance=pipeline.instance, raise_on_error=False)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        deadline = time.monotonic() + 180
        waiting = None
        while waiting is None and runner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
            waiting = watcher.execute(
                "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> %s "
                "AND datname = current_database()", (blocker.info.backend_pid,)).fetchone()
        assert waiting, "the run never reached its write"
        server.restart()
    finally:
        runner.join(timeout=180)
        blocker.close()
        watcher.close()
    result = outcome["result"]
    assert not result.success
    failures = step_failures(result)
    assert list(failures) == ["image_analysis"]
    lost = failures["image_analysis"].cls_name  # psycopg's, for a lost connection
    assert issubclass(getattr(psycopg.errors, lost, None) or getattr(psycopg, lost), psycopg.OperationalError), lost

    # New connections work at once (nothing cached a dead one), and the write left nothing half done.
    with pipeline.db() as conn:
        assert pg.status_counts(conn, DURING_WRITE) == {"pending": n}
    assert set(analyses_per_image(pipeline, DURING_WRITE).values()) == {0}
    assert index_documents(pipeline, DURING_WRITE) == {}

    pipeline.run([DURING_WRITE])
    assert_partition_complete(pipeline, DURING_WRITE, n)
