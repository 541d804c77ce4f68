"""What the fault tests share: swapping a resource (a proxy's endpoint, a smaller retry budget), and the
assertions made after every fault: Postgres holds one analysis per live image, the index holds exactly
Postgres' documents, nothing sits in a state that the next run would skip."""

from __future__ import annotations

from collections import Counter

from dagster import DagsterEventType, Definitions
from dagster_aws.s3 import S3Resource
from opensearchpy import helpers

from imgsearch_pipeline.resources import ImageStoreResource
from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline_tests.harness import Pipeline

# The document fields a search filters or ranks on; vectors are compared by presence (floats round-trip).
KEY_FIELDS = ("image_id", "product_id", "s3_key", "partition", "category", "colors", "pattern", "has_print",
              "description", "model_version")


def replace_resources(defs: Definitions, **resources) -> Definitions:
    """The definitions with some resources replaced. Built anew: run config given for a configured resource
    puts its other fields back to their defaults (Dagster 1.13), e.g. the analysis provider to builtin."""
    return Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                       resources={**defs.resources, **resources})


def with_resources(p: Pipeline, **resources) -> None:
    """Run the pipeline with some resources replaced (a proxy's endpoint, a smaller retry budget)."""
    p.defs = replace_resources(p.defs, **resources)
    p.res = p.defs.resources


def read_s3_through(p: Pipeline, url: str, **s3_config) -> None:
    """Every run of `p` reaches S3 at `url` (a FaultProxy in front of the test's S3 server)."""
    with_resources(p, images=ImageStoreResource(bucket=p.settings.s3_bucket, s3=S3Resource(
        endpoint_url=url, region_name=p.settings.s3_region, aws_access_key_id="imgsearch",
        aws_secret_access_key="imgsearch", **s3_config)))


def images_of(p: Pipeline, partition: str) -> int:
    """How many of the generated catalogue's images the partition holds."""
    return sum(1 for product in p.products for image in product.images
               if p.res["images"].partition_of(image.key) == partition)


def step_failures(result) -> dict:
    """step key -> the exception that failed the step (Dagster's wrapper removed), for a run's result."""
    return {e.step_key: e.step_failure_data.error.cause for e in result.all_events
            if e.event_type == DagsterEventType.STEP_FAILURE}


def model_version(p: Pipeline) -> str:
    return p.res["analysis"].get().model_version


def postgres_documents(p: Pipeline, partition: str | None = None) -> dict[str, dict]:
    """The documents Postgres says the index must hold, keyed by image id, reduced to KEY_FIELDS."""
    with p.db() as conn:
        return {doc["image_id"]: {f: doc[f] for f in KEY_FIELDS} for doc in map(
            osx.to_document, pg.iter_index_rows(conn, model_version(p), partition))}


def index_documents(p: Pipeline, partition: str | None = None) -> dict[str, dict]:
    """What the alias serves (all of it, or one partition), keyed by _id, reduced to KEY_FIELDS."""
    client, alias = p.res["opensearch"].client(), p.res["opensearch"].alias
    if not client.indices.exists_alias(name=alias):
        return {}
    client.indices.refresh(index=alias)
    query = {"query": {"term": {"partition": partition}} if partition else {"match_all": {}}}
    docs = {}
    for hit in helpers.scan(client, index=alias, query=query, size=500):
        source = hit["_source"]
        assert source.get("image_vector") and source.get("text_vector"), hit["_id"]
        docs[hit["_id"]] = {f: source.get(f) for f in KEY_FIELDS}
    return docs


def analyses_per_image(p: Pipeline, partition: str) -> Counter:
    """image_id -> number of analysis rows of the current model version, for every live image of the partition."""
    with p.db() as conn:
        rows = conn.execute(
            "SELECT i.image_id, count(a.image_id) AS n FROM product_images i LEFT JOIN image_analysis a "
            "ON a.image_id = i.image_id AND a.model_version = %s WHERE i.partition_key = %s "
            "AND i.status <> 'deleted' GROUP BY i.image_id", (model_version(p), partition)).fetchall()
    return Counter({r["image_id"]: r["n"] for r in rows})


def assert_partition_complete(p: Pipeline, partition: str, images: int) -> None:
    """Every image analysed exactly once, indexed exactly once, and the index equal to Postgres."""
    with p.db() as conn:
        assert pg.status_counts(conn, partition) == {"analysed": images}
    per_image = analyses_per_image(p, partition)
    assert len(per_image) == images and set(per_image.values()) == {1}, per_image
    expected = postgres_documents(p, partition)
    assert set(expected) == {str(i) for i in per_image}
    assert index_documents(p, partition) == expected
