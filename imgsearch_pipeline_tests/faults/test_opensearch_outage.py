"""OpenSearch is really stopped while a partition is being indexed.

The run fails, naming OpenSearch; Postgres (written before the index) stays complete; once the node is back,
the next run of the partition, and separately the rebuild job, leave an index equal to Postgres' rows.
The node is this module's own (other tests keep theirs); a proxy in front of it stops it at the moment the
first bulk request of a partition arrives, so the stop lands inside the indexing step every time; a second
partition then runs while the node is down. One restart (same data folder, same port) serves both repairs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dagster import instance_for_test

from imgsearch_pipeline import config
from imgsearch_pipeline.stack.opensearch import OpenSearchNode, ensure_installed
from imgsearch_pipeline.stack.process import free_port
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline_tests.faults.proxy import FaultProxy, Request
from imgsearch_pipeline_tests.faults.support import (
    analyses_per_image,
    assert_partition_complete,
    images_of,
    index_documents,
    postgres_documents,
    step_failures,
)
from imgsearch_pipeline_tests.harness import Pipeline

FIRST, SECOND, THIRD = "catalog/men/t-shirt/", "catalog/women/dress/", "catalog/women/skirt/"


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[OpenSearchNode]:
    node = OpenSearchNode(home=ensure_installed(config.cache_dir()), state_dir=tmp_path_factory.mktemp("faults-os"),
                          port=free_port())  # a fixed port: the restarted node answers where the old one did
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def proxy(node) -> Iterator[FaultProxy]:
    proxy = FaultProxy(node.url).start()
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def pipeline(new_settings, proxy) -> Iterator[Pipeline]:
    with instance_for_test() as instance:
        p = Pipeline(new_settings().model_copy(update={"opensearch_url": proxy.url}), instance, n_products=10, seed=3)
        p.run([FIRST])
        yield p


def _failed_step_error(p: Pipeline, partition: str):
    """Run the partition, which must fail in the indexing step alone; returns that step's exception."""
    result = p.defs.resolve_job_def("ingest_partition").execute_in_process(
        partition_key=partition, instance=p.instance, raise_on_error=False)
    assert not result.success
    failures = step_failures(result)
    assert list(failures) == ["search_index"]
    return failures["search_index"]


@pytest.fixture(scope="module")
def outage(pipeline, node, proxy) -> dict:
    """The node is stopped by the first bulk request of SECOND; THIRD is then run while it is down; then the
    node is started again (same data folder, same port). Returns what the tests look at."""
    served_before = index_documents(pipeline)

    def stop_on_bulk(request: Request):
        if "_bulk" in request.path and node.is_running():
            node.stop()
        return None  # forwarded: to a node that is gone, so the request dies like every later one

    proxy.fault = stop_on_bulk
    try:
        errors = {SECOND: _failed_step_error(pipeline, SECOND)}
        assert not node.is_running(), "no bulk request of SECOND reached the node: the stop never happened"
        errors[THIRD] = _failed_step_error(pipeline, THIRD)
    finally:
        proxy.fault = lambda _request: None
    node.start()
    return {"errors": errors, "served_before": served_before}


def test_the_run_fails_naming_opensearch_and_postgres_stays_complete(pipeline, proxy, outage):
    for partition, error in outage["errors"].items():
        assert error.cls_name == "SearchIndexUnavailable"
        assert f"OpenSearch at {proxy.url} could not be reached while indexing {partition}" in error.message
        assert "rerun the partition or `imgsearch rebuild-index`" in error.message
        n = images_of(pipeline, partition)
        with pipeline.db() as conn:  # the outage cost the index, nothing else
            assert pg.status_counts(conn, partition) == {"analysed": n}
        assert set(analyses_per_image(pipeline, partition).values()) == {1}
    # The restarted node kept what it had (FIRST) and nothing of the failed partitions.
    assert index_documents(pipeline) == outage["served_before"]


def test_after_the_restart_the_next_run_restores_the_partition(pipeline, outage):
    pipeline.run([SECOND])
    assert_partition_complete(pipeline, SECOND, images_of(pipeline, SECOND))


def test_after_the_restart_the_rebuild_job_restores_the_index_from_postgres(pipeline, outage):
    assert index_documents(pipeline, THIRD) == {}  # no partition run has indexed THIRD since the outage
    result = pipeline.defs.resolve_job_def("rebuild_index_job").execute_in_process(instance=pipeline.instance)
    assert result.success
    assert index_documents(pipeline) == postgres_documents(pipeline)
    assert set(postgres_documents(pipeline, THIRD)) == {str(i) for i in analyses_per_image(pipeline, THIRD)}
