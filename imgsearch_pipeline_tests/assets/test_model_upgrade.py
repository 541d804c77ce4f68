"""A model upgrade, lineage-driven: exactly the analysed partitions go stale and are reprocessed by the
automation condition; old and new analyses coexist; the alias moves only when the new version is complete."""

from __future__ import annotations

import pytest
from dagster import AssetKey, evaluate_automation_conditions, instance_for_test

from imgsearch_pipeline.analysis import builtin
from imgsearch_pipeline.definitions import build_definitions
from imgsearch_pipeline.resources import analysis as analysis_resource
from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline_tests.harness import Pipeline

MODEL_ASSETS = {"image_attributes", "image_embeddings", "image_analysis", "search_index"}


def _requested(result) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in result.results:
        if r.true_subset.size:
            out[r.key.to_user_string()] = set(r.true_subset.expensively_compute_partition_keys())
    return out


@pytest.fixture
def upgrade(new_settings, monkeypatch):
    """A catalogue ingested with the current model, one partition left never materialized, and the instance."""
    with instance_for_test() as instance:
        pipeline = Pipeline(new_settings(), instance, n_products=6, seed=5)
        assert len(pipeline.partitions) >= 3
        done, untouched = pipeline.partitions[:-1], pipeline.partitions[-1]
        pipeline.run(done)

        def bump() -> Pipeline:
            monkeypatch.setattr(builtin, "LOGIC_VERSION", "2-test")
            analysis_resource._provider.cache_clear()
            pipeline.defs = build_definitions(pipeline.settings)
            pipeline.res = pipeline.defs.resources
            return pipeline

        yield pipeline, instance, done, untouched, bump
    analysis_resource._provider.cache_clear()


def test_a_model_upgrade_requests_exactly_the_stale_partitions(upgrade):
    pipeline, instance, done, untouched, bump = upgrade
    old_version = pipeline.res["analysis"].get().model_version
    asset_key = AssetKey("image_attributes")
    assert pipeline.defs.resolve_asset_graph().get(asset_key).code_version == old_version

    baseline = evaluate_automation_conditions(defs=pipeline.defs, instance=instance)
    assert _requested(baseline) == {}  # nothing changed since the runs: no request

    bump()
    new_version = pipeline.res["analysis"].get().model_version
    assert new_version != old_version
    assert pipeline.defs.resolve_asset_graph().get(asset_key).code_version == new_version
    upgraded = evaluate_automation_conditions(defs=pipeline.defs, instance=instance, cursor=baseline.cursor)
    requested = _requested(upgraded)
    assert set(requested) == MODEL_ASSETS  # the inventory does not depend on the model
    assert all(parts == set(done) for parts in requested.values())  # never the partition nobody materialized
    assert untouched not in set().union(*requested.values())


def test_old_and_new_versions_coexist_and_the_alias_moves_only_when_complete(upgrade):
    pipeline, instance, done, untouched, bump = upgrade
    pipeline.run([untouched])
    client = pipeline.res["opensearch"].client()
    alias = pipeline.res["opensearch"].alias
    old_index = osx.alias_target(client, alias)
    old_version = pipeline.res["analysis"].get().model_version

    bump()
    new_version = pipeline.res["analysis"].get().model_version
    new_index = osx.write_index(client, "unused-alias", pipeline.res["opensearch"].index_base(new_version), 1280, 384)
    for i, part in enumerate(pipeline.partitions):
        pipeline.run([part])
        with pipeline.db() as conn:
            missing = pg.images_missing_version(conn, new_version)
        if i < len(pipeline.partitions) - 1:
            assert missing > 0 and osx.alias_target(client, alias) == old_index  # half done: old version serves
            assert osx.count(client, alias) == pipeline.n_images
    assert missing == 0 and osx.alias_target(client, alias) == new_index
    assert osx.count(client, alias) == pipeline.n_images
    with pipeline.db() as conn:
        versions = {r["model_version"]: r["n"] for r in conn.execute(
            "SELECT model_version, count(*) AS n FROM image_analysis GROUP BY 1")}
    assert versions == {old_version: pipeline.n_images, new_version: pipeline.n_images}  # side by side
