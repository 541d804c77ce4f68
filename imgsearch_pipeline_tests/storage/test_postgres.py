"""The Postgres repository on a real PostgreSQL 18 + pgvector server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from imgsearch_pipeline.analysis.types import ImageAnalysis
from imgsearch_pipeline.storage import postgres as pg

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def conn(new_database):
    c = pg.connect(new_database())
    pg.migrate(c)
    yield c
    c.close()


def _listed(key: str, digest: str, product: str = "p1") -> pg.ListedObject:
    return pg.ListedObject(key, product, etag=digest, size=10, last_modified=NOW, content_hash=digest)


def _unread(key: str, etag: str, size: int = 10) -> pg.ListedObject:
    """An object as the S3 inventory lists it: no content hash until the analysis step reads it."""
    return pg.ListedObject(key, "p1", etag=etag, size=size, last_modified=NOW)


def test_migrations_apply_once(conn):
    assert pg.migrate(conn) == []
    names = {r["name"] for r in conn.execute("SELECT name FROM schema_migrations")}
    assert "0001_initial.sql" in names
    ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert tuple(int(x) for x in ext["extversion"].split(".")[:2]) >= (0, 8)


def test_inventory_diff_new_changed_unchanged_deleted(conn):
    pg.upsert_products(conn, [pg.Product(product_id="p1")])
    part = "catalog/men/shirt/"
    d = pg.sync_inventory(conn, part, [_listed("a.jpg", "h1"), _listed("b.jpg", "h2")])
    assert (d.new, d.changed, d.unchanged, d.deleted) == (2, 0, 0, 0)
    d = pg.sync_inventory(conn, part, [_listed("a.jpg", "h1"), _listed("b.jpg", "h2")])
    assert (d.new, d.changed, d.unchanged, d.deleted) == (0, 0, 2, 0)
    d = pg.sync_inventory(conn, part, [_listed("a.jpg", "h1-new")])
    assert (d.new, d.changed, d.unchanged, d.deleted) == (0, 1, 0, 1)
    assert pg.status_counts(conn, part) == {"pending": 2 - 1, "deleted": 1}
    # The deleted key coming back is a change, not a duplicate row.
    d = pg.sync_inventory(conn, part, [_listed("a.jpg", "h1-new"), _listed("b.jpg", "h2")])
    assert (d.changed, d.unchanged) == (1, 1)
    assert conn.execute("SELECT count(*) AS n FROM product_images").fetchone()["n"] == 2


def test_analysis_upsert_is_idempotent_and_tracks_bytes(conn):
    pg.upsert_products(conn, [pg.Product(product_id="p1")])
    part = "catalog/men/shirt/"
    pg.sync_inventory(conn, part, [_listed("a.jpg", "h1")])
    todo = pg.images_to_analyse(conn, part, "m1")
    assert [r["s3_key"] for r in todo] == ["a.jpg"]
    a = ImageAnalysis(category="tee", colors=[{"color": "navy", "coverage": 0.9}], pattern="solid",
                      description="navy t-shirt", image_embedding=[0.1] * 4, text_embedding=[0.2] * 3,
                      model_version="m1")
    for _ in range(2):
        pg.save_analyses(conn, [(todo[0]["image_id"], "h1", a)], "v1")
    rows = conn.execute("SELECT * FROM image_analysis").fetchall()
    assert len(rows) == 1 and rows[0]["category"] == "t-shirt" and rows[0]["has_print"] is False
    assert pg.images_to_analyse(conn, part, "m1") == []
    assert len(pg.images_to_analyse(conn, part, "m2")) == 1  # a new model version sees it as stale
    pg.sync_inventory(conn, part, [_listed("a.jpg", "h2")])  # new bytes: stale again
    assert len(pg.images_to_analyse(conn, part, "m1")) == 1
    assert list(pg.iter_index_rows(conn, "m1")) == []  # the old analysis no longer describes the image


def test_permanent_failures_wait_for_a_replay_retryable_ones_do_not(conn):
    pg.upsert_products(conn, [pg.Product(product_id="p1")])
    pg.sync_inventory(conn, "x/", [_listed("bad.jpg", "h1"), _listed("slow.jpg", "h2")])
    bad, slow = (r["image_id"] for r in pg.images_to_analyse(conn, "x/", "m1"))
    pg.mark_failed(conn, [pg.Failure(image_id=bad, content_hash="h1", reason="not an image (unrecognised format)"),
                          pg.Failure(image_id=slow, content_hash="h2", reason="gave up after 6 attempts",
                                     retryable=True)], "m1")
    assert pg.status_counts(conn, "x/") == {"failed": 2}
    assert [r["image_id"] for r in pg.images_to_analyse(conn, "x/", "m1")] == [slow]  # bad waits
    assert len(pg.images_to_analyse(conn, "x/", "m2")) == 2  # another model version may well read it
    dead = {r["image_id"]: r for r in pg.list_failures(conn, "x/")}
    assert dead[bad]["error"].startswith("not an image") and not dead[bad]["retryable"] and dead[bad]["attempts"] == 1

    assert pg.release_failures(conn, "x/") == ["x/"]
    assert {r["image_id"] for r in pg.images_to_analyse(conn, "x/", "m1")} == {bad, slow}
    pg.mark_failed(conn, [pg.Failure(image_id=bad, content_hash="h1", reason="not an image")], "m1")
    assert {r["image_id"]: r for r in pg.list_failures(conn)}[bad]["attempts"] == 2

    pg.sync_inventory(conn, "x/", [_listed("bad.jpg", "h1-fixed"), _listed("slow.jpg", "h2")])
    assert bad in {r["image_id"] for r in pg.images_to_analyse(conn, "x/", "m1")}  # new bytes: tried again


def _analysis(model_version: str = "m1") -> ImageAnalysis:
    return ImageAnalysis(category="tee", colors=[{"color": "navy", "coverage": 0.9}], pattern="solid",
                         description="navy t-shirt", image_embedding=[0.1] * 4, text_embedding=[0.2] * 3,
                         model_version=model_version)


def _row(conn, key: str) -> dict:
    return conn.execute("SELECT * FROM product_images WHERE s3_key = %s", (key,)).fetchone()


def test_the_inventory_tells_changes_by_etag_and_size_and_leaves_the_hash_to_the_read(conn):
    pg.upsert_products(conn, [pg.Product(product_id="p1")])
    listed = _unread("a.jpg", "e1")
    assert pg.sync_inventory(conn, "x/", [listed]).new == 1
    assert (_row(conn, "a.jpg")["status"], _row(conn, "a.jpg")["content_hash"]) == ("pending", None)
    [todo] = pg.images_to_analyse(conn, "x/", "m1")
    assert (todo["etag"], todo["content_hash"], todo["analysed_hash"], todo["failed_hash"]) == ("e1", None, None, None)

    assert pg.record_reads(conn, [pg.ReadBytes(image_id=todo["image_id"], etag="e1", content_hash="h1")], "m1") == 1
    pg.save_analyses(conn, [(todo["image_id"], "h1", _analysis())], "v1")
    assert pg.sync_inventory(conn, "x/", [listed]).unchanged == 1
    assert pg.images_to_analyse(conn, "x/", "m1") == []
    d = pg.sync_inventory(conn, "x/", [_unread("a.jpg", "e1", size=11)])
    assert d.changed == 1 and _row(conn, "a.jpg")["content_hash"] is None  # another size: read again


def test_bytes_read_again_under_a_new_etag_settle_the_image_without_a_model_call(conn):
    pg.upsert_products(conn, [pg.Product(product_id="p1")])
    pg.sync_inventory(conn, "x/", [_unread("a.jpg", "e1"), _unread("bad.jpg", "e2")])
    a, bad = (_row(conn, k)["image_id"] for k in ("a.jpg", "bad.jpg"))
    pg.record_reads(conn, [pg.ReadBytes(image_id=a, etag="e1", content_hash="h1"),
                           pg.ReadBytes(image_id=bad, etag="e2", content_hash="h2")], "m1")
    pg.save_analyses(conn, [(a, "h1", _analysis())], "v1")
    pg.mark_failed(conn, [pg.Failure(image_id=bad, content_hash="h2", reason="not an image")], "m1")
    analysed_at = conn.execute("SELECT analysed_at FROM image_analysis").fetchone()["analysed_at"]

    # The same bytes uploaded again (multipart: new ETags), then read by the analysis step.
    pg.sync_inventory(conn, "x/", [_unread("a.jpg", "e1-multipart"), _unread("bad.jpg", "e2-multipart")])
    todo = {r["image_id"]: r for r in pg.images_to_analyse(conn, "x/", "m1")}
    assert {i: (r["content_hash"], r["analysed_hash"], r["failed_hash"]) for i, r in todo.items()} == {
        a: (None, "h1", None), bad: (None, None, "h2")}
    assert pg.record_reads(conn, [pg.ReadBytes(image_id=a, etag="e1-multipart", content_hash="h1"),
                                  pg.ReadBytes(image_id=bad, etag="e2-multipart", content_hash="h2")], "m1") == 2
    assert (_row(conn, "a.jpg")["status"], _row(conn, "bad.jpg")["status"]) == ("analysed", "failed")
    assert _row(conn, "bad.jpg")["error"] == "not an image"
    assert pg.images_to_analyse(conn, "x/", "m1") == []
    assert [r["analysed_at"] for r in pg.iter_index_rows(conn, "m1")] == [analysed_at]  # the same analysis
    assert pg.list_failures(conn, "x/")[0]["attempts"] == 1


def test_a_read_of_bytes_the_inventory_has_moved_on_from_is_not_recorded(conn):
    pg.upsert_products(conn, [pg.Product(product_id="p1")])
    pg.sync_inventory(conn, "x/", [_unread("a.jpg", "e1")])
    [todo] = pg.images_to_analyse(conn, "x/", "m1")
    pg.sync_inventory(conn, "x/", [_unread("a.jpg", "e2")])  # a concurrent inventory saw newer bytes
    read = pg.ReadBytes(image_id=todo["image_id"], etag=todo["etag"], content_hash="h-of-e1")
    assert pg.record_reads(conn, [read], "m1") == 0
    pg.save_analyses(conn, [(todo["image_id"], "h-of-e1", _analysis())], "v1")
    row = _row(conn, "a.jpg")
    assert (row["etag"], row["content_hash"], row["status"]) == ("e2", None, "pending")  # read again next run
    assert len(pg.images_to_analyse(conn, "x/", "m1")) == 1


def test_an_image_that_could_not_be_read_fails_without_a_hash(conn):
    pg.upsert_products(conn, [pg.Product(product_id="p1")])
    pg.sync_inventory(conn, "x/", [_unread("gone.jpg", "e1")])
    [todo] = pg.images_to_analyse(conn, "x/", "m1")
    for _ in range(2):
        pg.mark_failed(conn, [pg.Failure(image_id=todo["image_id"], content_hash=None,
                                         reason="could not read from S3: NoSuchKey", retryable=True)], "m1")
    assert (_row(conn, "gone.jpg")["status"], _row(conn, "gone.jpg")["content_hash"]) == ("failed", None)
    [failure] = pg.list_failures(conn, "x/")
    assert failure["retryable"] and failure["attempts"] == 2
    assert pg.images_missing_version(conn, "m1") == 0  # dealt with for now, like any recorded failure
    assert len(pg.images_to_analyse(conn, "x/", "m1")) == 1  # and retried by the next run
    assert pg.sync_inventory(conn, "x/", []).deleted == 1
    assert pg.list_failures(conn, "x/") == []


def test_product_crud_and_cascade(conn):
    pg.upsert_products(conn, [pg.Product(product_id="p1", name="Tee", brand="Acme")])
    pg.upsert_products(conn, [pg.Product(product_id="p1", source="key_pattern")], overwrite=False)
    assert pg.get_product(conn, "p1")["name"] == "Tee"  # key-pattern discovery never erases feed data
    pg.sync_inventory(conn, "x/", [_listed("a.jpg", "h1")])
    ids = pg.delete_product(conn, "p1")
    assert len(ids) == 1
    assert conn.execute("SELECT count(*) AS n FROM product_images").fetchone()["n"] == 0
    assert pg.delete_product(conn, "p1") is None


def test_connections_share_the_vector_adapters_and_notice_a_new_extension(new_database):
    import numpy as np
    from psycopg.adapt import PyFormat
    from psycopg.pq import TransactionStatus

    dsn = new_database()

    def roundtrip(c) -> list[float]:
        return c.execute("SELECT %s::vector AS v", (np.array([1.0, 2.5], dtype=np.float32),)).fetchone()["v"].to_list()

    with pg.connect(dsn) as c:  # no extension yet: nothing to register
        c.execute("CREATE EXTENSION vector")
        c.commit()
    with pg.connect(dsn) as first, pg.connect(dsn) as second:
        # Idle, as a pool takes them (it rolls back and warns otherwise).
        assert first.info.transaction_status == second.info.transaction_status == TransactionStatus.IDLE
        # The same adapter classes, not new ones per connection (those stay in memory for good).
        dumper = first.adapters.get_dumper(np.ndarray, PyFormat.AUTO)
        assert second.adapters.get_dumper(np.ndarray, PyFormat.AUTO) is dumper
        assert roundtrip(first) == roundtrip(second) == [1.0, 2.5]
    with pg.connect(dsn) as c:  # the extension made anew has another oid
        c.execute("DROP EXTENSION vector")
        c.execute("CREATE EXTENSION vector")
        c.commit()
    with pg.connect(dsn) as c:
        assert roundtrip(c) == [1.0, 2.5]
        assert c.adapters.get_dumper(np.ndarray, PyFormat.AUTO) is not dumper
