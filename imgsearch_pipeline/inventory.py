"""The image inventory of one S3 prefix: list, hash what is new or changed, attribute images to products."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg
from pydantic import ValidationError

from imgsearch_pipeline.catalog import Catalog, KeyPattern
from imgsearch_pipeline.partitions import CONTROL, MAX_KEY_BYTES
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline.storage.s3 import get_bytes, list_objects


@dataclass
class InventoryResult:
    diff: pg.InventoryDiff
    listed: int
    unattributed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # key -> why it was not taken in


def key_problem(key: str) -> str | None:
    """Why an object key is not taken into the catalogue (None when it is): control characters (PostgreSQL text
    cannot hold NUL, logs and the UI garble the rest), a '.' or '..' segment (clients and proxies that normalise
    paths would read another object), or more bytes than S3 allows."""
    if CONTROL.search(key):
        return "the key contains control characters"
    if any(s in (".", "..") for s in key.split("/")):
        return "the key has a '.' or '..' path segment"
    if len(key.encode("utf-8", "replace")) > MAX_KEY_BYTES:
        return f"the key is longer than {MAX_KEY_BYTES} bytes"
    return None


def _product_problem(product_id: str) -> str | None:
    try:
        pg.Product(product_id=product_id)
    except ValidationError as e:
        return f"product id {product_id[:80]!r} from the key is invalid: {e.errors()[0]['msg']}"
    return None


def take_inventory(
    conn: psycopg.Connection,
    s3,
    bucket: str,
    partition_key: str,
    catalog: Catalog,
    key_pattern: KeyPattern,
    hash_workers: int = 8,
) -> InventoryResult:
    """Sync the partition's listing into product_images; keys that cannot be taken in are `rejected` with why.

    Objects whose ETag and size match what Postgres holds are not re-read; the others are downloaded and
    hashed (sha256) in parallel, so idempotency rests on the bytes, not on S3 metadata.
    """
    known = pg.known_objects(conn, partition_key)
    objects = list(list_objects(s3, bucket, partition_key))
    unattributed: list[str] = []
    rejected: dict[str, str] = {}
    owners: dict[str, str] = {}
    for obj in objects:
        if problem := key_problem(obj.key):
            rejected[obj.key] = problem
            continue
        pid = catalog.key_to_product.get(obj.key) or key_pattern.product_id(obj.key)
        if pid is None:
            unattributed.append(obj.key)
        elif problem := _product_problem(pid):
            rejected[obj.key] = problem
        else:
            owners[obj.key] = pid

    def content_hash(obj) -> str | None:
        prev = known.get(obj.key)
        if prev and prev["etag"] == obj.etag and prev["size_bytes"] == obj.size:
            return prev["content_hash"]
        try:
            return hashlib.sha256(get_bytes(s3, bucket, obj.key)).hexdigest()
        except s3.exceptions.NoSuchKey:
            return None  # deleted since the listing: as if not listed (a known key is marked deleted)

    owned = [o for o in objects if o.key in owners]
    with ThreadPoolExecutor(max_workers=hash_workers) as pool:
        hashed = [(o, h) for o, h in zip(owned, pool.map(content_hash, owned), strict=True) if h is not None]
    attributed, hashes = [o for o, _ in hashed], [h for _, h in hashed]

    # Feed products carry catalogue data; products known only from a key pattern get a bare row.
    needed = {owners[o.key] for o in attributed}
    from_feed = [catalog.products[p] for p in needed if p in catalog.products]
    bare = [pg.Product(product_id=p, source="key_pattern") for p in needed if p not in catalog.products]
    pg.upsert_products(conn, from_feed)
    pg.upsert_products(conn, bare, overwrite=False)
    conn.commit()
    listed = [
        pg.ListedObject(o.key, owners[o.key], o.etag, o.size, o.last_modified, h)
        for o, h in zip(attributed, hashes, strict=True)
    ]
    diff = pg.sync_inventory(conn, partition_key, listed)
    return InventoryResult(diff=diff, listed=len(objects), unattributed=unattributed, rejected=rejected)
