"""PostgreSQL, the source of truth: migrations, inventory sync, analyses and products.

Plain psycopg 3; every write is an upsert keyed so that repeating it changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.adapt import AdaptersMap
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ConfigDict, Field

from imgsearch_pipeline.analysis.types import ImageAnalysis

_MIGRATION_LOCK = 7_214_001


# Per DSN: the vector type's oid and adapters registered for it. pgvector's register_vector makes new adapter
# classes and four catalogue queries on every call, which a process keeps (~23 KB a connection, for good);
# later connections copy these adapters instead.
_VECTOR_ADAPTERS: dict[str, tuple[int, AdaptersMap]] = {}


class VectorConnection(psycopg.Connection):
    """A connection with dict rows and the vector type registered (after migrations created the extension)."""

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs) -> VectorConnection:
        cached = _VECTOR_ADAPTERS.get(conninfo)
        kwargs |= {"row_factory": dict_row, "connect_timeout": 10}
        conn = super().connect(conninfo, context=cached[1] if cached else None, **kwargs)
        row = conn.execute("SELECT oid FROM pg_type WHERE typname = 'vector'").fetchone()
        if cached and not (row and row["oid"] == cached[0]):
            # the extension was dropped or made anew (a recreated database): register afresh
            del _VECTOR_ADAPTERS[conninfo]
            conn.close()
            conn, cached = super().connect(conninfo, **kwargs), None
        if row and not cached:
            register_vector(conn)
            _VECTOR_ADAPTERS[conninfo] = (row["oid"], conn.adapters)
        conn.rollback()  # the lookups' transaction: a connection starts idle (a pool takes no other)
        return conn


def connect(dsn: str) -> psycopg.Connection:
    return VectorConnection.connect(dsn)


def pool(dsn: str, max_size: int) -> ConnectionPool:
    """Connections kept open for searches: opening one costs ~3 ms, a third of a fast search. Each is checked
    as it is handed out, so a restarted server costs a reconnection, not a failed search."""
    return ConnectionPool(dsn, connection_class=VectorConnection, min_size=1, max_size=max_size, open=True,
                          check=ConnectionPool.check_connection)


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply the packaged migrations not yet applied, in order, under an advisory lock; returns their names."""
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")}
        files = sorted(
            (f for f in resources.files("imgsearch_pipeline.storage.migrations").iterdir()
             if f.name.endswith(".sql")),
            key=lambda f: f.name,
        )
        for f in files:
            version = int(f.name.split("_", 1)[0])
            if version in done:
                continue
            conn.execute(f.read_text(encoding="utf-8"))
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, f.name))
            applied.append(f.name)
    register_vector(conn)
    return applied


# Products ----------------------------------------------------------------------------------------------


class Product(BaseModel):
    """A catalogue product, as the feed, the key pattern or the merchant API describe it."""

    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f/]+$")
    name: str | None = Field(default=None, max_length=500)
    brand: str | None = Field(default=None, max_length=200)
    department: str | None = Field(default=None, max_length=50)
    shop_category: str | None = Field(default=None, max_length=200)
    source: str = "feed"


_PRODUCT_COLS = ("product_id", "name", "brand", "department", "shop_category", "source")
_PRODUCT = ", ".join((*_PRODUCT_COLS, "created_at", "updated_at"))  # what a product is (not its search columns)


def upsert_products(conn: psycopg.Connection, products: Iterable[Product], *, overwrite: bool = True) -> int:
    """Insert or update products. With overwrite=False an existing product keeps its data (key-pattern
    discovery must not erase what a feed or the merchant said)."""
    rows = [tuple(getattr(p, c) for c in _PRODUCT_COLS) for p in products]
    if not rows:
        return 0
    conflict = (
        "DO UPDATE SET name = EXCLUDED.name, brand = EXCLUDED.brand, department = EXCLUDED.department, "
        "shop_category = EXCLUDED.shop_category, source = EXCLUDED.source, updated_at = now() "
        "WHERE (products.name, products.brand, products.department, products.shop_category) IS DISTINCT FROM "
        "(EXCLUDED.name, EXCLUDED.brand, EXCLUDED.department, EXCLUDED.shop_category)"
        if overwrite
        else "DO NOTHING"
    )
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO products ({', '.join(_PRODUCT_COLS)}) VALUES (%s, %s, %s, %s, %s, %s) "
            f"ON CONFLICT (product_id) {conflict}",
            rows,
        )
    return len(rows)


def get_product(conn: psycopg.Connection, product_id: str) -> dict | None:
    row = conn.execute(f"SELECT {_PRODUCT} FROM products WHERE product_id = %s", (product_id,)).fetchone()
    if row is None:
        return None
    row["images"] = conn.execute(
        "SELECT image_id, s3_key, status, error FROM product_images WHERE product_id = %s ORDER BY s3_key",
        (product_id,),
    ).fetchall()
    return row


def image_key(conn: psycopg.Connection, image_id: int) -> str | None:
    row = conn.execute("SELECT s3_key FROM product_images WHERE image_id = %s", (image_id,)).fetchone()
    return row["s3_key"] if row else None


def list_products(conn: psycopg.Connection, limit: int = 100, offset: int = 0) -> list[dict]:
    return conn.execute(
        f"SELECT {_PRODUCT} FROM products ORDER BY product_id LIMIT %s OFFSET %s", (limit, offset)
    ).fetchall()


def delete_product(conn: psycopg.Connection, product_id: str) -> list[int] | None:
    """Delete a product with its images and analyses; returns the deleted image ids (None if unknown)."""
    with conn.transaction():
        ids = [r["image_id"] for r in conn.execute(
            "SELECT image_id FROM product_images WHERE product_id = %s", (product_id,))]
        deleted = conn.execute("DELETE FROM products WHERE product_id = %s", (product_id,)).rowcount
    return ids if deleted else None


# Inventory ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListedObject:
    """One S3 object of a partition, as the inventory saw it.

    The inventory does not read objects, so it leaves `content_hash` None: the analysis step hashes the bytes it
    reads. A caller that already knows the bytes' hash (a synthetic catalogue) may give it.
    """

    key: str
    product_id: str
    etag: str
    size: int
    last_modified: datetime
    content_hash: str | None = None


class InventoryDiff(BaseModel):
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0


def known_objects(conn: psycopg.Connection, partition_key: str) -> dict[str, dict]:
    """key -> {etag, size_bytes, status} for the partition (to tell unchanged objects apart)."""
    rows = conn.execute(
        "SELECT s3_key, etag, size_bytes, status FROM product_images WHERE partition_key = %s",
        (partition_key,),
    )
    return {r["s3_key"]: r for r in rows}


def sync_inventory(
    conn: psycopg.Connection, partition_key: str, objects: Sequence[ListedObject]
) -> InventoryDiff:
    """Record a partition's listing: new objects and objects whose ETag or size changed become pending with the
    listing's content_hash (None: not read yet), vanished keys become deleted."""
    known = known_objects(conn, partition_key)
    diff = InventoryDiff()
    with conn.transaction(), conn.cursor() as cur:
        for obj in objects:
            prev = known.get(obj.key)
            if prev is None:
                diff.new += 1
            elif (prev["etag"], prev["size_bytes"]) != (obj.etag, obj.size) or prev["status"] == "deleted":
                diff.changed += 1
            else:
                diff.unchanged += 1
                continue
            cur.execute(
                "INSERT INTO product_images (s3_key, product_id, partition_key, content_hash, etag, size_bytes,"
                " last_modified, status) VALUES (%s, %s, %s, %s, %s, %s, %s, 'pending') "
                "ON CONFLICT (s3_key) DO UPDATE SET product_id = EXCLUDED.product_id, "
                "partition_key = EXCLUDED.partition_key, content_hash = EXCLUDED.content_hash, "
                "etag = EXCLUDED.etag, size_bytes = EXCLUDED.size_bytes, last_modified = EXCLUDED.last_modified,"
                " status = 'pending', error = NULL, attempts = 0, updated_at = now()",
                (obj.key, obj.product_id, partition_key, obj.content_hash, obj.etag, obj.size, obj.last_modified),
            )
        listed = {o.key for o in objects}
        gone = [k for k, r in known.items() if k not in listed and r["status"] != "deleted"]
        if gone:
            cur.execute(
                "UPDATE product_images SET status = 'deleted', updated_at = now() WHERE s3_key = ANY(%s)",
                (gone,),
            )
            diff.deleted = len(gone)
    return diff


# Analysis ----------------------------------------------------------------------------------------------


def images_to_analyse(conn: psycopg.Connection, partition_key: str, model_version: str) -> list[dict]:
    """Live images of the partition with no analysis of their current bytes by this model version (bytes not
    read yet included), except those whose current bytes failed permanently (they wait for a replay or for
    new bytes).

    Each row also carries the image's `etag` (what `record_reads` checks the inventory against) and the hashes
    of the bytes this model version already analysed (`analysed_hash`) or failed on for good (`failed_hash`):
    bytes read that hash to either need no model call.
    """
    return conn.execute(
        "SELECT i.image_id, i.s3_key, i.content_hash, i.etag, a.content_hash AS analysed_hash, "
        "f.content_hash AS failed_hash FROM product_images i "
        "LEFT JOIN image_analysis a ON a.image_id = i.image_id AND a.model_version = %s "
        "LEFT JOIN analysis_failures f ON f.image_id = i.image_id AND f.model_version = %s AND NOT f.retryable "
        "WHERE i.partition_key = %s AND i.status <> 'deleted' "
        "AND (a.content_hash = i.content_hash) IS NOT TRUE AND (f.content_hash = i.content_hash) IS NOT TRUE "
        "ORDER BY i.image_id",
        (model_version, model_version, partition_key),
    ).fetchall()


class ReadBytes(BaseModel):
    """What the analysis step read of one image: the sha256 of the bytes, and the ETag the image had when it
    was picked (`images_to_analyse`)."""

    image_id: int
    etag: str | None
    content_hash: str


def record_reads(conn: psycopg.Connection, reads: Sequence[ReadBytes], model_version: str) -> int:
    """Store on each image the hash of the bytes read; returns how many images changed.

    An image whose ETag changed since it was picked keeps its row as the inventory left it (the next run reads
    it again). Bytes this model version already analysed, or failed on for good, settle the image here without
    a model call (the same bytes uploaded again: a new ETag, the same hash). Call it before `save_analyses`
    and `mark_failed`, which only touch images whose recorded hash is the one they describe.
    """
    if not reads:
        return 0
    with conn.transaction():
        return conn.execute(
            "UPDATE product_images i SET content_hash = r.content_hash, updated_at = now(), "
            "status = CASE WHEN a.image_id IS NOT NULL THEN 'analysed' WHEN f.image_id IS NOT NULL THEN 'failed' "
            " ELSE i.status END, "
            "error = CASE WHEN a.image_id IS NOT NULL THEN NULL WHEN f.image_id IS NOT NULL THEN f.error "
            " ELSE i.error END "
            "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS r (image_id, etag, content_hash) "
            "LEFT JOIN image_analysis a ON a.image_id = r.image_id AND a.model_version = %s "
            " AND a.content_hash = r.content_hash "
            "LEFT JOIN analysis_failures f ON f.image_id = r.image_id AND f.model_version = %s "
            " AND f.content_hash = r.content_hash AND NOT f.retryable "
            "WHERE i.image_id = r.image_id AND i.etag IS NOT DISTINCT FROM r.etag AND i.status <> 'deleted' "
            "AND (i.content_hash IS DISTINCT FROM r.content_hash OR a.image_id IS NOT NULL OR f.image_id IS NOT NULL)",
            ([r.image_id for r in reads], [r.etag for r in reads], [r.content_hash for r in reads],
             model_version, model_version),
        ).rowcount


_ANALYSIS_COLS = ("image_id, model_version, content_hash, category, category_confidence, colors, color_coverage, "
                  "pattern, has_print, attributes, description, image_embedding, text_embedding, vocab_version")
_ANALYSIS_TYPES = ["int8", "text", "text", "text", "float4", "text[]", "float4[]", "text", "bool", "jsonb", "text",
                   "vector", "vector", "text"]


def copy_analysis_rows(cur: psycopg.Cursor, table: str, results: Iterable[tuple[int, str, ImageAnalysis]],
                       vocab_version: str) -> None:
    """Binary COPY of (image_id, content_hash, analysis) rows into `table`, which has image_analysis' columns."""
    copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(sql.Identifier(table),
                                                                          sql.SQL(_ANALYSIS_COLS))
    with cur.copy(copy) as cp:
        cp.set_types(_ANALYSIS_TYPES)
        for image_id, content_hash, a in results:
            cp.write_row((
                image_id, a.model_version, content_hash, a.category, a.category_confidence, a.color_ids,
                [c.coverage for c in a.colors], a.pattern, a.has_print, Jsonb(a.attributes), a.description,
                np.asarray(a.image_embedding, dtype=np.float32) if a.image_embedding else None,
                np.asarray(a.text_embedding, dtype=np.float32) if a.text_embedding else None, vocab_version))


def upsert_analyses_from(stage: str) -> sql.Composed:
    """One statement moving a staged table's rows into image_analysis; repeating it changes nothing."""
    return sql.SQL(
        "INSERT INTO image_analysis ({cols}) SELECT {cols} FROM {stage} "
        "ON CONFLICT (image_id, model_version) DO UPDATE SET content_hash = EXCLUDED.content_hash, "
        "category = EXCLUDED.category, category_confidence = EXCLUDED.category_confidence, "
        "colors = EXCLUDED.colors, color_coverage = EXCLUDED.color_coverage, pattern = EXCLUDED.pattern, "
        "has_print = EXCLUDED.has_print, attributes = EXCLUDED.attributes, "
        "description = EXCLUDED.description, image_embedding = EXCLUDED.image_embedding, "
        "text_embedding = EXCLUDED.text_embedding, vocab_version = EXCLUDED.vocab_version, "
        "analysed_at = now()").format(cols=sql.SQL(_ANALYSIS_COLS), stage=sql.Identifier(stage))


def save_analyses(
    conn: psycopg.Connection, results: Sequence[tuple[int, str, ImageAnalysis]], vocab_version: str
) -> int:
    """Upsert (image_id, content_hash, analysis) rows and mark those images analysed.

    Binary COPY into a temporary table, then one set-based upsert and one statement each for the failures and
    the image status: a round trip per statement, not per row (the later of two rows for one image wins)."""
    latest = {(image_id, a.model_version): (image_id, content_hash, a) for image_id, content_hash, a in results}
    if not latest:
        return 0
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS analysis_stage (image_id bigint, model_version text, content_hash text,"
            " category text, category_confidence real, colors text[], color_coverage real[], pattern text,"
            " has_print boolean, attributes jsonb, description text, image_embedding vector, text_embedding vector,"
            " vocab_version text) ON COMMIT DELETE ROWS")
        cur.execute("TRUNCATE analysis_stage")  # an earlier call in the same transaction
        copy_analysis_rows(cur, "analysis_stage", latest.values(), vocab_version)
        cur.execute(upsert_analyses_from("analysis_stage"))
        cur.execute("DELETE FROM analysis_failures f USING analysis_stage s "
                    "WHERE f.image_id = s.image_id AND f.model_version = s.model_version")
        # Only images whose bytes are still the analysed ones: a concurrent inventory may have moved on.
        cur.execute(
            "UPDATE product_images i SET status = 'analysed', error = NULL, attempts = i.attempts + 1, "
            "updated_at = now() FROM analysis_stage s "
            "WHERE i.image_id = s.image_id AND i.content_hash = s.content_hash AND i.status <> 'deleted'")
    return len(latest)


class Failure(BaseModel):
    """One image that a model version could not analyse; `content_hash` is None when its bytes were never read."""

    image_id: int
    content_hash: str | None
    reason: str
    retryable: bool = False


def mark_failed(conn: psycopg.Connection, failures: Sequence[Failure], model_version: str) -> int:
    """Record failures on the image and in the dead-letter table (attempts counted); returns how many."""
    if not failures:
        return 0
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "UPDATE product_images SET status = 'failed', error = %s, attempts = attempts + 1, updated_at = now()"
            " WHERE image_id = %s AND content_hash IS NOT DISTINCT FROM %s AND status <> 'deleted'",
            [(f.reason[:2000], f.image_id, f.content_hash) for f in failures],
        )
        cur.executemany(
            "INSERT INTO analysis_failures (image_id, model_version, content_hash, error, retryable) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (image_id, model_version) DO UPDATE SET "
            "error = EXCLUDED.error, retryable = EXCLUDED.retryable, last_failed_at = now(), "
            "attempts = CASE WHEN analysis_failures.content_hash IS NOT DISTINCT FROM EXCLUDED.content_hash "
            "THEN analysis_failures.attempts + 1 ELSE 1 END, content_hash = EXCLUDED.content_hash",
            [(f.image_id, model_version, f.content_hash, f.reason[:2000], f.retryable) for f in failures],
        )
    return len(failures)


def list_failures(conn: psycopg.Connection, partition_key: str | None = None, limit: int = 1000) -> list[dict]:
    """The dead-letter table with each image's key and partition, newest failure first."""
    sql = ("SELECT f.image_id, i.s3_key, i.partition_key, f.model_version, f.error, f.retryable, f.attempts, "
           "f.first_failed_at, f.last_failed_at FROM analysis_failures f "
           "JOIN product_images i ON i.image_id = f.image_id AND i.content_hash IS NOT DISTINCT FROM f.content_hash "
           "AND i.status <> 'deleted'")  # a deleted object's failure is history, not work to do
    params: list = []
    if partition_key is not None:
        sql += " WHERE i.partition_key = %s"
        params.append(partition_key)
    return conn.execute(sql + " ORDER BY f.last_failed_at DESC LIMIT %s", [*params, limit]).fetchall()


def release_failures(conn: psycopg.Connection, partition_key: str | None = None) -> list[str]:
    """Make recorded permanent failures eligible again (a replay); returns the partitions to re-run.

    The rows stay, so attempts keep counting across replays; they are only marked retryable.
    """
    sql = ("UPDATE analysis_failures f SET retryable = true FROM product_images i "
           "WHERE i.image_id = f.image_id AND i.content_hash IS NOT DISTINCT FROM f.content_hash "
           "AND i.status = 'failed'")
    params: list = []
    if partition_key is not None:
        sql += " AND i.partition_key = %s"
        params.append(partition_key)
    with conn.transaction():
        parts = conn.execute(sql + " RETURNING i.partition_key", params).fetchall()
    return sorted({r["partition_key"] for r in parts})


def status_counts(conn: psycopg.Connection, partition_key: str | None = None) -> dict[str, int]:
    sql = "SELECT status, count(*) AS n FROM product_images"
    params: tuple = ()
    if partition_key is not None:
        sql += " WHERE partition_key = %s"
        params = (partition_key,)
    return {r["status"]: r["n"] for r in conn.execute(sql + " GROUP BY status", params)}


# The vectors in their text form, which is a JSON array: the index gets it as is (storage.opensearch.vector_json).
_DOC_SQL = (
    "SELECT i.image_id, i.s3_key, i.partition_key, i.product_id, p.name AS product_name, p.brand, "
    "p.department, p.shop_category, a.category, a.category_confidence, a.colors, a.color_coverage, a.pattern, "
    "a.has_print, a.attributes, a.description, a.image_embedding::text AS image_embedding, "
    "a.text_embedding::text AS text_embedding, a.model_version, "
    "a.analysed_at FROM image_analysis a JOIN product_images i ON i.image_id = a.image_id "
    "AND i.content_hash = a.content_hash JOIN products p ON p.product_id = i.product_id "
    "WHERE a.model_version = %s AND i.status = 'analysed'"
)


def iter_index_rows(
    conn: psycopg.Connection, model_version: str, partition_key: str | None = None,
    product_id: str | None = None, batch: int = 1000,
) -> Iterator[dict]:
    """Stream the analysed images (with product data) that belong in the search index, server-side."""
    sql, params = _DOC_SQL, [model_version]
    if partition_key is not None:
        sql += " AND i.partition_key = %s"
        params.append(partition_key)
    if product_id is not None:
        sql += " AND i.product_id = %s"
        params.append(product_id)
    with conn.cursor(name="index_rows") as cur:
        cur.itersize = batch
        cur.execute(sql + " ORDER BY i.image_id", params)
        yield from cur


def image_ids_not_live(conn: psycopg.Connection, partition_key: str) -> list[int]:
    """Images of the partition that must not be in the index (deleted or failed)."""
    return [r["image_id"] for r in conn.execute(
        "SELECT image_id FROM product_images WHERE partition_key = %s AND status IN ('deleted', 'failed')",
        (partition_key,),
    )]


def count_index_rows(conn: psycopg.Connection, model_version: str) -> int:
    return conn.execute(f"SELECT count(*) AS n FROM ({_DOC_SQL}) t", (model_version,)).fetchone()["n"]


def live_etags(conn: psycopg.Connection, prefix: str) -> dict[str, str | None]:
    """key -> ETag of every image under `prefix` that is not marked deleted (what the sensor compares S3 with)."""
    return {r["s3_key"]: r["etag"] for r in conn.execute(
        "SELECT s3_key, etag FROM product_images WHERE status <> 'deleted' AND starts_with(s3_key, %s)", (prefix,))}


def images_missing_version(conn: psycopg.Connection, model_version: str) -> int:
    """Live images the model version has neither analysed nor recorded as failed, for their current bytes.

    Zero means the version covers the whole catalogue: its index may take over the alias.
    """
    return conn.execute(
        "SELECT count(*) AS n FROM product_images i WHERE i.status <> 'deleted' "
        "AND NOT EXISTS (SELECT 1 FROM image_analysis a WHERE a.image_id = i.image_id "
        "AND a.model_version = %(v)s AND a.content_hash = i.content_hash) "
        "AND NOT EXISTS (SELECT 1 FROM analysis_failures f WHERE f.image_id = i.image_id "
        "AND f.model_version = %(v)s AND f.content_hash IS NOT DISTINCT FROM i.content_hash)",
        {"v": model_version},
    ).fetchone()["n"]


# Vector indexes (the PostgreSQL search backend) -------------------------------------------------------------

_VECTOR_INDEX_LOCK = 7_214_002
BUILD_MEMORY = "1GB"  # maintenance_work_mem for an HNSW build, at least (a larger server setting is kept)
_HNSW_TYPES = (("vector", 2000, "vector_cosine_ops"), ("halfvec", 4000, "halfvec_cosine_ops"))
VECTOR_COLUMNS = {"image": "image_embedding", "text": "text_embedding"}


def vector_type(dim: int) -> tuple[str, str] | None:
    """(type, opclass) that HNSW indexes a `dim`-long embedding as: vector up to 2000 dimensions, halfvec up to
    4000, None beyond (searched exactly). The search repeats this type in its query so the index matches."""
    for name, max_dim, opclass in _HNSW_TYPES:
        if 0 < dim <= max_dim:
            return name, opclass
    return None


def vector_expr(column: str, dim: int, table: str | None = None) -> sql.Composable:
    """The indexed expression `(column::vector(dim))` (or halfvec), optionally qualified by a table alias."""
    kind = vector_type(dim)
    if kind is None:
        raise ValueError(f"no HNSW index for {dim} dimensions")
    col = sql.Identifier(table, column) if table else sql.Identifier(column)
    return sql.SQL("({}::{}({}))").format(col, sql.SQL(kind[0]), sql.Literal(int(dim)))


def vector_index_name(model_version: str, column: str, dim: int) -> str:
    """A deterministic, short (< 63 bytes) name: model versions are long and may hold any character."""
    digest = hashlib.sha256(model_version.encode("utf-8")).hexdigest()[:16]
    return f"image_analysis_{column.removesuffix('_embedding')}_{int(dim)}_hnsw_{digest}"


def ensure_vector_indexes(conn: psycopg.Connection, model_version: str, image_dim: int, text_dim: int) -> list[str]:
    """HNSW (cosine) indexes on the image and text vectors of one model version; returns the names created.

    Partial expression indexes (`WHERE model_version = '<literal>'`): the column is untyped and holds every
    version's vectors, and a version's index must only hold its own. Idempotent and safe to call from
    concurrent runs (an advisory lock serialises them). Building over rows already loaded is far cheaper than
    adding rows to a graph one by one (100k analyses: ~1 min against ~6 min, bench/writes.py), so the pipeline
    calls this once a version's analyses cover the catalogue; later rows are added incrementally. The build
    locks out writes to image_analysis while it runs. Dimensions above 4000 get no index: exact scans.
    """
    created: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_VECTOR_INDEX_LOCK,))
        # The graph should fit in maintenance_work_mem, or the build slows down several times.
        conn.execute("SELECT set_config('maintenance_work_mem', %s, true) "
                     "WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes(%s)",
                     (BUILD_MEMORY, BUILD_MEMORY))
        for column, dim in ((VECTOR_COLUMNS["image"], image_dim), (VECTOR_COLUMNS["text"], text_dim)):
            kind = vector_type(dim)
            if kind is None:
                continue
            name = vector_index_name(model_version, column, dim)
            if conn.execute("SELECT to_regclass(%s) AS r", (name,)).fetchone()["r"] is not None:
                continue
            conn.execute(sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON image_analysis USING hnsw ({} {}) "
                "WITH (m = 16, ef_construction = 128) WHERE model_version = {}"
            ).format(sql.Identifier(name), vector_expr(column, dim), sql.SQL(kind[1]), sql.Literal(model_version)))
            created.append(name)
    return created
