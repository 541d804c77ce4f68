"""The worker is SIGKILLed mid-partition, once while analysing and once while indexing; a rerun finishes the
partition with exactly one analysis and one index document per image.

There is no "processing" state: an image is pending, analysed, failed or deleted, and analyses reach Postgres
only when the whole partition has been analysed (`image_analysis`, one transaction). A dead worker therefore
leaves its images pending, which is what the next run takes: no claim to expire, no stale-claim timeout.
The run goes in a child process (`child_run.py`) behind a proxy that freezes it at the chosen point.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import instance_for_test

from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline_tests.faults.child_run import SETTINGS_ENV
from imgsearch_pipeline_tests.faults.proxy import Hold, Request, proxy_to
from imgsearch_pipeline_tests.faults.support import (
    analyses_per_image,
    assert_partition_complete,
    images_of,
    index_documents,
)
from imgsearch_pipeline_tests.harness import Pipeline

ROOT = Path(__file__).resolve().parents[2]
ANALYSING = "catalog/men/t-shirt/"  # 5 images: read and analysed 2 at a time by the child
INDEXING = "catalog/women/dress/"  # 4 images


@pytest.fixture(scope="module")
def pipeline(new_settings):
    with instance_for_test() as instance:
        p = Pipeline(new_settings(), instance, n_products=10, seed=3)
        yield p


def _kill_at(hold: Hold, settings, partition: str, workdir: Path) -> None:
    """Run the partition in a child process, SIGKILL it once it reached `hold`, then let the request go."""
    env = {**os.environ, SETTINGS_ENV: settings.model_dump_json()}
    log = workdir / "child.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "imgsearch_pipeline_tests.faults.child_run", partition, str(workdir)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not hold.reached.wait(0.2):
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the child run ended (exit {child.returncode}) before the fault point:\n"
                            + log.read_text(errors="replace")[-4000:])
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        hold.released.set()


def test_killed_while_analysing_leaves_images_pending_and_the_rerun_finishes(pipeline, tmp_path):
    n = images_of(pipeline, ANALYSING)
    hold = Hold()
    reads: list[str] = []

    def fault(request: Request):
        # The inventory reads no object: every GET of an image is the analysis'.
        if request.method == "GET" and f"/{ANALYSING}" in request.path and "list-type" not in request.path:
            reads.append(request.path)
            if len(reads) == 5:  # the third batch: the first one has been through the model
                return hold()
        return None

    with proxy_to(pipeline.settings.s3_endpoint_url, fault) as proxy:
        _kill_at(hold, pipeline.settings.model_copy(update={"s3_endpoint_url": proxy.url}), ANALYSING,
                 tmp_path)

    model_version = pipeline.res["analysis"].get().model_version
    with pipeline.db() as conn:
        # The inventory committed; no analysis did, and nothing is in a state that the next run would skip.
        assert pg.status_counts(conn, ANALYSING) == {"pending": n}
        assert len(pg.images_to_analyse(conn, ANALYSING, model_version)) == n
    assert set(analyses_per_image(pipeline, ANALYSING).values()) == {0}
    assert index_documents(pipeline, ANALYSING) == {}

    pipeline.run([ANALYSING])
    assert_partition_complete(pipeline, ANALYSING, n)


def test_killed_while_indexing_keeps_postgres_and_the_rerun_completes_the_index(pipeline, tmp_path):
    n = images_of(pipeline, INDEXING)
    hold = Hold()

    def fault(request: Request):
        return hold() if request.method in ("POST", "PUT") and "_bulk" in request.path else None

    with proxy_to(pipeline.settings.opensearch_url, fault) as proxy:
        _kill_at(hold, pipeline.settings.model_copy(update={"opensearch_url": proxy.url}), INDEXING,
                 tmp_path)

    with pipeline.db() as conn:  # Postgres was written before the index: it is complete
        assert pg.status_counts(conn, INDEXING) == {"analysed": n}
    assert set(analyses_per_image(pipeline, INDEXING).values()) == {1}
    assert index_documents(pipeline, INDEXING) == {}  # the bulk request died with the worker

    before = pipeline.snapshot()["analyses"]
    pipeline.run([INDEXING])
    assert_partition_complete(pipeline, INDEXING, n)
    assert pipeline.snapshot()["analyses"] == before  # nothing analysed twice: the rerun only indexed
