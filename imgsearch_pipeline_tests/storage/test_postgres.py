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

    dsn = new_database()

    def roundtrip(c) -> list[float]:
        return c.execute("SELECT %s::vector AS v", (np.array([1.0, 2.5], dtype=np.float32),)).fetchone()["v"].to_list()

    with pg.connect(dsn) as c:  # no extension yet: nothing to register
        c.execute("CREATE EXTENSION vector")
        c.commit()
    with pg.connect(dsn) as first, pg.connect(dsn) as second:
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
