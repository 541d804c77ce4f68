"""The one-time backfill: one run over a range of prefix partitions, stored per partition, idempotent after."""

from __future__ import annotations

from dagster import AssetKey, instance_for_test

from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline_tests.harness import Pipeline


def test_a_backfill_run_covers_a_range_of_partitions_and_later_runs_see_them_done(new_settings):
    with instance_for_test() as instance:
        pipeline = Pipeline(new_settings(), instance, n_products=8, seed=21)
        graph = pipeline.defs.resolve_asset_graph()
        policies = {graph.get(AssetKey(k)).backfill_policy for k in
                    ("image_inventory", "image_attributes", "image_analysis", "search_index")}
        assert len(policies) == 1 and next(iter(policies)).max_partitions_per_run == 8  # grouped alike

        parts = pipeline.partitions
        assert len(parts) >= 3
        job = pipeline.defs.resolve_job_def("backfill")
        result = job.execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": parts[0], "dagster/asset_partition_range_end": parts[-1]})
        assert result.success
        meta = [m for m in result.asset_materializations_for_node("image_attributes_and_embeddings")
                if m.asset_key == AssetKey("image_attributes")]
        assert {m.partition for m in meta} == set(parts)
        assert {m.metadata["partitions"].value for m in meta} == {len(parts)}  # one model pass for the range

        snap = pipeline.snapshot()
        assert len(snap["analyses"]) == pipeline.n_images == snap["docs"]
        with pipeline.db() as conn:
            assert pg.status_counts(conn) == {"analysed": pipeline.n_images}
        # Each partition's frames were stored on their own: an ordinary run of one partition reads them back
        # and, everything being analysed already, changes nothing.
        pipeline.run([parts[1]])
        assert pipeline.snapshot() == snap
        stored = pipeline.defs.load_asset_value("image_attributes", partition_key=parts[1], instance=instance)
        assert set(stored["partition_key"]) <= {parts[1]}
