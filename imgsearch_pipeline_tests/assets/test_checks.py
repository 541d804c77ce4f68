"""The asset checks, run through Dagster over real Postgres, S3 and OpenSearch: each passes on a clean ingest and
fails on a planted fault, which every test restores before it ends (the catalogue is ingested once per module).
"""

import psycopg
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    Definitions,
    define_asset_job,
    instance_for_test,
)
from psycopg import sql

from imgsearch_pipeline.assets.checks import ALL_CHECKS, PARTITION_CHECKS, catalogue_checks_job
from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline_tests.harness import Pipeline

partition_checks_job = define_asset_job("partition_checks", selection=AssetSelection.checks(*PARTITION_CHECKS))
PARTITION_CHECK_NAMES = {"analysis_coverage", "values_in_vocabulary", "embeddings_valid"}
CATALOGUE_CHECK_NAMES = {"index_matches_postgres", "no_orphans"}


def with_checks(defs: Definitions) -> Definitions:
    """The project's definitions plus the checks and check jobs (whether or not definitions.py registers them)."""
    present = {key for c in defs.asset_checks or [] for key in c.check_keys}
    jobs = {j.name for j in defs.jobs or []}
    return Definitions.merge(defs, Definitions(
        asset_checks=[c for c in ALL_CHECKS if not set(c.check_keys) <= present],
        jobs=[j for j in (catalogue_checks_job, partition_checks_job) if j.name not in jobs],
    ))


def evaluations(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def meta(evaluation, key: str):
    return evaluation.metadata[key].value


@pytest.fixture(scope="module")
def pipeline(new_settings):
    """A small catalogue ingested by the ingest job with every check included, as production runs it."""
    with instance_for_test() as instance:
        p = Pipeline(new_settings(), instance, n_products=8)
        p.defs = with_checks(p.defs)
        job = p.defs.resolve_job_def("ingest_partition")
        p.ingest_checks = {}
        for part in p.partitions:
            result = job.execute_in_process(partition_key=part, instance=instance)
            assert result.success
            p.ingest_checks[part] = evaluations(result)
        yield p


def run_partition_checks(pipeline, partition: str) -> dict:
    # A checks-only job has no partitions_def of its own, so execute_in_process(partition_key=...) refuses it;
    # the run's partition is given as the tag Dagster uses to mark a run's partition.
    result = pipeline.defs.resolve_job_def("partition_checks").execute_in_process(
        instance=pipeline.instance, tags={"dagster/partition": partition}, raise_on_error=False)
    found = evaluations(result)
    assert set(found) == PARTITION_CHECK_NAMES
    assert {e.partition for e in found.values()} == {partition}
    return found


def run_catalogue_checks(pipeline) -> dict:
    result = pipeline.defs.resolve_job_def("catalogue_checks").execute_in_process(
        instance=pipeline.instance, raise_on_error=False)
    assert result.success  # neither is blocking: a failed check is a result, not a failed run
    found = evaluations(result)
    assert set(found) == CATALOGUE_CHECK_NAMES
    return found


def model_version(pipeline) -> str:
    return pipeline.res["analysis"].get().model_version


def images_of(pipeline, partition: str) -> list[dict]:
    with pipeline.db() as conn:
        return conn.execute(
            "SELECT image_id, content_hash, product_id FROM product_images WHERE partition_key = %s "
            "AND status = 'analysed' ORDER BY image_id", (partition,)).fetchall()


def busiest_partition(pipeline) -> str:
    """The partition with the most images (a fault in one image must be found among others)."""
    return max(pipeline.partitions, key=lambda p: (len(images_of(pipeline, p)), p))


def assert_all_pass(pipeline, partition: str) -> None:
    found = run_partition_checks(pipeline, partition) | run_catalogue_checks(pipeline)
    assert {n: e.passed for n, e in found.items()} == dict.fromkeys(PARTITION_CHECK_NAMES | CATALOGUE_CHECK_NAMES,
                                                                    True)


# Clean pipeline ----------------------------------------------------------------------------------------


def test_every_check_is_registered_on_its_asset(pipeline):
    graph = pipeline.defs.resolve_asset_graph()
    keys = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert keys >= {("image_analysis", n) for n in PARTITION_CHECK_NAMES} | {
        ("search_index", "index_matches_postgres"), ("image_inventory", "no_orphans")}


def test_ingest_runs_the_partition_checks_and_all_pass(pipeline):
    for part, found in pipeline.ingest_checks.items():
        # Whole-catalogue checks would race with concurrent partition runs: they have their own job and schedule.
        assert set(found) == PARTITION_CHECK_NAMES, part
        assert all(e.passed for e in found.values()), {n: e.description for n, e in found.items()}
        for name in PARTITION_CHECK_NAMES:
            assert found[name].partition == part  # recorded per partition
            assert meta(found[name], "model_version") == model_version(pipeline)


def test_clean_pipeline_passes_when_checks_run_alone(pipeline):
    part = busiest_partition(pipeline)
    found = run_partition_checks(pipeline, part)
    assert all(e.passed for e in found.values())
    n = len(images_of(pipeline, part))
    cov = found["analysis_coverage"]
    assert (meta(cov, "analysed"), meta(cov, "failed"), meta(cov, "pending"), meta(cov, "live")) == (n, 0, 0, n)
    assert meta(found["values_in_vocabulary"], "rows") == n
    emb = found["embeddings_valid"]
    assert meta(emb, "rows") == n and (meta(emb, "image_dim"), meta(emb, "text_dim")) == (1280, 384)
    assert abs(meta(emb, "min_norm") - 1) < 1e-3 and abs(meta(emb, "max_norm") - 1) < 1e-3

    whole = run_catalogue_checks(pipeline)
    assert all(e.passed for e in whole.values())
    consistency = whole["index_matches_postgres"]
    assert meta(consistency, "postgres_count") == meta(consistency, "index_count") == pipeline.n_images
    assert meta(consistency, "sampled") == 2 * pipeline.n_images  # a catalogue this small is compared in full


def test_partitioned_checks_need_a_partition(pipeline):
    """Dagster 1.13 fails a partitioned check on a partitioned asset in a run without a partition key."""
    result = pipeline.defs.resolve_job_def("partition_checks").execute_in_process(
        instance=pipeline.instance, raise_on_error=False)
    assert not result.success and not result.get_asset_check_evaluations()
    errors = [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    assert errors and all("non-partitioned run" in m for m in errors)


def test_a_backfill_run_checks_every_partition_of_its_range(pipeline):
    """A run over a range of partitions (BackfillPolicy) checks them all; 1.13 records one result, unpartitioned."""
    parts = pipeline.partitions[:3]
    victim = images_of(pipeline, parts[1])[0]
    backfill = pipeline.defs.resolve_job_def("backfill")
    tags = {"dagster/asset_partition_range_start": parts[0], "dagster/asset_partition_range_end": parts[-1]}

    result = backfill.execute_in_process(instance=pipeline.instance, tags=tags)
    found = evaluations(result)
    assert set(found) == PARTITION_CHECK_NAMES  # catalogue checks run from their own job
    assert all(e.passed for e in found.values())
    for name in PARTITION_CHECK_NAMES:
        assert found[name].partition is None and meta(found[name], "partitions") == ", ".join(parts)
    assert meta(found["analysis_coverage"], "analysed") == sum(len(images_of(pipeline, p)) for p in parts)

    with pipeline.db() as conn:
        category = conn.execute("SELECT category FROM image_analysis WHERE image_id = %s",
                                (victim["image_id"],)).fetchone()["category"]
    try:
        with pipeline.db() as conn:
            conn.execute("UPDATE image_analysis SET category = 'spaceship' WHERE image_id = %s", (victim["image_id"],))
        result = backfill.execute_in_process(instance=pipeline.instance, tags=tags, raise_on_error=False)
        assert not result.success  # one partition's fault blocks the index for the whole range
        vocab = evaluations(result)["values_in_vocabulary"]
        assert not vocab.passed and [o["image_id"] for o in meta(vocab, "offenders")] == [victim["image_id"]]
        assert AssetKey("search_index") not in {e.asset_key for e in result.get_asset_materialization_events()}
    finally:
        with pipeline.db() as conn:
            conn.execute("UPDATE image_analysis SET category = %s WHERE image_id = %s", (category, victim["image_id"]))
    assert_all_pass(pipeline, parts[1])


# 1. Coverage -------------------------------------------------------------------------------------------


def test_coverage_warns_on_a_failed_image_and_errors_when_most_fail(pipeline):
    part = busiest_partition(pipeline)
    images = images_of(pipeline, part)
    assert len(images) >= 2
    mv = model_version(pipeline)

    def fail(rows):
        with pipeline.db() as conn:
            pg.mark_failed(conn, [pg.Failure(image_id=r["image_id"], content_hash=r["content_hash"],
                                             reason="planted: not an image") for r in rows], mv)

    try:
        fail(images[:1])
        cov = run_partition_checks(pipeline, part)["analysis_coverage"]
        assert not cov.passed and cov.severity == AssetCheckSeverity.WARN
        assert (meta(cov, "failed"), meta(cov, "pending"), meta(cov, "analysed")) == (1, 0, len(images) - 1)
        assert [r["image_id"] for r in meta(cov, "failed_images")] == [images[0]["image_id"]]

        fail(images)
        cov = run_partition_checks(pipeline, part)["analysis_coverage"]
        assert not cov.passed and cov.severity == AssetCheckSeverity.ERROR
        assert meta(cov, "failed") == len(images)
    finally:
        with pipeline.db() as conn:
            ids = [r["image_id"] for r in images]
            conn.execute("DELETE FROM analysis_failures WHERE image_id = ANY(%s)", (ids,))
            conn.execute("UPDATE product_images SET status = 'analysed', error = NULL WHERE image_id = ANY(%s)",
                         (ids,))
    assert_all_pass(pipeline, part)


def test_coverage_errors_on_an_image_left_pending(pipeline):
    part = busiest_partition(pipeline)
    victim = images_of(pipeline, part)[0]
    try:
        with pipeline.db() as conn:  # what the inventory records for new bytes under a known key (not read yet)
            conn.execute("UPDATE product_images SET status = 'pending', content_hash = NULL WHERE image_id = %s",
                         (victim["image_id"],))
        found = run_partition_checks(pipeline, part)
        cov = found["analysis_coverage"]
        assert not cov.passed and cov.severity == AssetCheckSeverity.ERROR
        assert meta(cov, "pending") == 1
        assert [r["image_id"] for r in meta(cov, "pending_images")] == [victim["image_id"]]
        others = [p for p in pipeline.partitions if p != part]
        assert run_partition_checks(pipeline, others[0])["analysis_coverage"].passed  # only its own partition
    finally:
        with pipeline.db() as conn:
            conn.execute("UPDATE product_images SET status = 'analysed', content_hash = %s WHERE image_id = %s",
                         (victim["content_hash"], victim["image_id"]))
    assert_all_pass(pipeline, part)


# 2. Vocabulary -----------------------------------------------------------------------------------------


def test_vocabulary_violation_fails_and_blocks_the_index(pipeline):
    part = busiest_partition(pipeline)
    first, second = images_of(pipeline, part)[:2]
    with pipeline.db() as conn:
        saved = {r["image_id"]: r for r in conn.execute(
            "SELECT image_id, category, colors, attributes FROM image_analysis WHERE image_id = ANY(%s)",
            ([first["image_id"], second["image_id"]],))}
    client, alias = pipeline.res["opensearch"].client(), pipeline.res["opensearch"].alias
    try:
        with pipeline.db() as conn:
            conn.execute("UPDATE image_analysis SET category = 'spaceship' WHERE image_id = %s", (first["image_id"],))
            conn.execute("UPDATE image_analysis SET colors = array_append(colors, 'ultraviolet'), "
                         "attributes = attributes || '{\"sleeve_length\": \"tentacle\"}' WHERE image_id = %s",
                         (second["image_id"],))
        vocab = run_partition_checks(pipeline, part)["values_in_vocabulary"]
        assert not vocab.passed and vocab.severity == AssetCheckSeverity.ERROR
        assert (meta(vocab, "violations"), meta(vocab, "offending_images")) == (3, 2)
        assert sorted((o["image_id"], o["field"], o["value"]) for o in meta(vocab, "offenders")) == sorted([
            (first["image_id"], "category", "spaceship"),
            (second["image_id"], "colors", "ultraviolet"),
            (second["image_id"], "attributes.sleeve_length", "tentacle"),
        ])

        # Blocking: the ingest run fails at the check and search_index is not materialized.
        result = pipeline.defs.resolve_job_def("ingest_partition").execute_in_process(
            partition_key=part, instance=pipeline.instance, raise_on_error=False)
        assert not result.success
        assert not evaluations(result)["values_in_vocabulary"].passed
        materialized = {e.asset_key for e in result.get_asset_materialization_events()}
        assert AssetKey("image_analysis") in materialized and AssetKey("search_index") not in materialized
        doc = client.get(index=alias, id=str(first["image_id"]))["_source"]
        assert doc["category"] == saved[first["image_id"]]["category"]  # the index never saw 'spaceship'
    finally:
        with pipeline.db() as conn:
            for r in saved.values():
                conn.execute("UPDATE image_analysis SET category = %s, colors = %s, attributes = %s "
                             "WHERE image_id = %s",
                             (r["category"], r["colors"], psycopg.types.json.Jsonb(r["attributes"]), r["image_id"]))
    assert_all_pass(pipeline, part)


# 3. Embeddings -----------------------------------------------------------------------------------------


def test_wrong_dimension_and_zero_vectors_fail(pipeline):
    part = busiest_partition(pipeline)
    first, second = images_of(pipeline, part)[:2]
    provider = pipeline.res["analysis"].get()
    indexes = [pg.vector_index_name(provider.model_version, col, dim) for col, dim in
               (("image_embedding", provider.image_dim), ("text_embedding", provider.text_dim))]
    with pipeline.db() as conn:
        saved = {r["image_id"]: r for r in conn.execute(
            "SELECT image_id, image_embedding, text_embedding FROM image_analysis WHERE image_id = ANY(%s)",
            ([first["image_id"], second["image_id"]],))}
    wrong_dim = "UPDATE image_analysis SET image_embedding = '[0.6, 0.8, 0]' WHERE image_id = %s"  # unit norm
    # While the model version has its HNSW indexes (on column::vector(dim)), Postgres refuses another dimension;
    # a version without them (over 4000 dimensions, or before they exist) relies on the check.
    with pipeline.db() as conn, pytest.raises(psycopg.errors.DataException, match="dimensions"):
        conn.execute(wrong_dim, (first["image_id"],))
    try:
        with pipeline.db() as conn:
            for name in indexes:
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            conn.execute(wrong_dim, (first["image_id"],))
            conn.execute("UPDATE image_analysis SET text_embedding = array_fill(0, ARRAY[384])::real[]::vector "
                         "WHERE image_id = %s", (second["image_id"],))
        emb = run_partition_checks(pipeline, part)["embeddings_valid"]
        assert not emb.passed and emb.severity == AssetCheckSeverity.ERROR
        assert meta(emb, "bad_rows") == 2 and meta(emb, "min_norm") == 0
        problems = {o["image_id"]: o["problems"] for o in meta(emb, "offenders")}
        assert problems == {first["image_id"]: ["image_embedding has 3 dimensions, not 1280"],
                            second["image_id"]: ["text_embedding norm 0"]}
    finally:
        with pipeline.db() as conn:
            for r in saved.values():
                conn.execute("UPDATE image_analysis SET image_embedding = %s, text_embedding = %s WHERE image_id = %s",
                             (r["image_embedding"], r["text_embedding"], r["image_id"]))
            assert sorted(pg.ensure_vector_indexes(conn, provider.model_version, provider.image_dim,
                                                   provider.text_dim)) == sorted(indexes)
    assert_all_pass(pipeline, part)


def test_nan_cannot_even_be_stored(pipeline):
    """The check's NaN clause is a backstop: pgvector refuses non-finite components on input."""
    victim = images_of(pipeline, busiest_partition(pipeline))[0]
    with pipeline.db() as conn, pytest.raises(psycopg.errors.DataException, match="NaN"):
        conn.execute("UPDATE image_analysis SET text_embedding = %s::vector WHERE image_id = %s",
                     ("[" + ",".join(["NaN"] + ["0"] * 383) + "]", victim["image_id"]))
    with pipeline.db() as conn, pytest.raises(psycopg.errors.DataException):
        conn.execute("UPDATE image_analysis SET text_embedding = '[Infinity, 0, 0]' WHERE image_id = %s",
                     (victim["image_id"],))


# 4. Postgres vs OpenSearch -----------------------------------------------------------------------------


def test_missing_and_stray_documents_fail_even_when_counts_agree(pipeline):
    client, alias = pipeline.res["opensearch"].client(), pipeline.res["opensearch"].alias
    index = osx.alias_target(client, alias)
    part = busiest_partition(pipeline)
    victim = images_of(pipeline, part)[0]["image_id"]
    saved = client.get(index=index, id=str(victim))["_source"]
    stray = dict(saved, image_id="99999999", s3_key=f"{part}ghost/1.jpg")
    try:
        client.delete(index=index, id=str(victim), refresh=True)
        check = run_catalogue_checks(pipeline)["index_matches_postgres"]
        assert not check.passed and check.severity == AssetCheckSeverity.ERROR
        assert meta(check, "index_count") == meta(check, "postgres_count") - 1
        assert meta(check, "missing_from_index") == [victim]
        assert meta(check, "partition_differences") == {part: {"postgres": len(images_of(pipeline, part)),
                                                               "index": len(images_of(pipeline, part)) - 1}}

        # A stray document in the same partition makes every count agree again: the samples still tell.
        client.index(index=index, id=stray["image_id"], body=stray, refresh=True)
        check = run_catalogue_checks(pipeline)["index_matches_postgres"]
        assert meta(check, "index_count") == meta(check, "postgres_count")
        assert meta(check, "partition_differences") == {}
        assert not check.passed
        assert meta(check, "missing_from_index") == [victim] and meta(check, "stray_in_index") == ["99999999"]
    finally:
        client.delete(index=index, id=stray["image_id"], refresh=True, ignore=[404])
        client.index(index=index, id=str(victim), body=saved, refresh=True)
    assert_all_pass(pipeline, part)


def test_document_with_other_values_fails(pipeline):
    client, alias = pipeline.res["opensearch"].client(), pipeline.res["opensearch"].alias
    index = osx.alias_target(client, alias)
    part = busiest_partition(pipeline)
    victim = images_of(pipeline, part)[0]["image_id"]
    saved = client.get(index=index, id=str(victim))["_source"]
    other = next(c for c in ("black", "white") if c not in saved["colors"])
    try:
        client.update(index=index, id=str(victim), body={"doc": {"colors": [other]}}, refresh=True)
        check = run_catalogue_checks(pipeline)["index_matches_postgres"]
        assert not check.passed
        assert meta(check, "mismatches") == [{"image_id": victim, "field": "colors", "postgres": saved["colors"],
                                              "index": [other]}]
        assert meta(check, "missing_from_index") == [] and meta(check, "stray_in_index") == []
    finally:
        client.index(index=index, id=str(victim), body=saved, refresh=True)
    assert_all_pass(pipeline, part)


# 5. Orphans --------------------------------------------------------------------------------------------


def test_orphaned_images_and_analyses_fail(pipeline):
    """Deletes that bypass the ON DELETE CASCADE, as a restore or replication apply with
    session_replication_role = replica does: a product without its images, an image without its analysis."""
    part = busiest_partition(pipeline)
    product_id = images_of(pipeline, part)[0]["product_id"]
    lone = next(r for p in pipeline.partitions for r in images_of(pipeline, p) if r["product_id"] != product_id)
    with pipeline.db() as conn:
        product = conn.execute("SELECT * FROM products WHERE product_id = %s", (product_id,)).fetchone()
        image = conn.execute("SELECT * FROM product_images WHERE image_id = %s", (lone["image_id"],)).fetchone()
        orphaned = [r["image_id"] for r in conn.execute(
            "SELECT image_id FROM product_images WHERE product_id = %s ORDER BY image_id", (product_id,))]
    try:
        with pipeline.db() as conn, conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("DELETE FROM products WHERE product_id = %s", (product_id,))
            conn.execute("DELETE FROM product_images WHERE image_id = %s", (lone["image_id"],))
        check = run_catalogue_checks(pipeline)["no_orphans"]
        assert not check.passed and check.severity == AssetCheckSeverity.ERROR
        assert meta(check, "images_without_product") == len(orphaned)
        assert [r["image_id"] for r in meta(check, "orphan_images")] == orphaned
        assert meta(check, "analyses_without_image") == 1
        assert meta(check, "orphan_analysis_image_ids") == [lone["image_id"]]
    finally:
        with pipeline.db() as conn:
            cols = [c for c in product if not c.endswith("_tsv")]  # generated columns: computed again
            conn.execute(f"INSERT INTO products ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
                         "ON CONFLICT DO NOTHING", [product[c] for c in cols])
            cols = list(image)
            conn.execute(f"INSERT INTO product_images ({', '.join(cols)}) OVERRIDING SYSTEM VALUE "
                         f"VALUES ({', '.join(['%s'] * len(cols))}) ON CONFLICT DO NOTHING", [image[c] for c in cols])
    assert_all_pass(pipeline, part)
