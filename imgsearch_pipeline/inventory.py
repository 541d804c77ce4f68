"""The image inventory of one S3 prefix: list, hash what is new or changed, attribute images to products."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg

from imgsearch_pipeline.catalog import Catalog, KeyPattern
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline.storage.s3 import get_bytes, list_objects


@dataclass
class InventoryResult:
    diff: pg.InventoryDiff
    listed: int
    unattributed: list[str] = field(default_factory=list)


def take_inventory(
    conn: psycopg.Connection,
    s3,
    bucket: str,
    partition_key: str,
    catalog: Catalog,
    key_pattern: KeyPattern,
    hash_workers: int = 8,
) -> InventoryResult:
    """Sync the partition's listing into product_images.

    Objects whose ETag and size match what Postgres holds are not re-read; the others are downloaded and
    hashed (sha256) in parallel, so idempotency rests on the bytes, not on S3 metadata.
    """
    known = pg.known_objects(conn, partition_key)
    objects = list(list_objects(s3, bucket, partition_key))
    unattributed: list[str] = []
    owners: dict[str, str] = {}
    for obj in objects:
        pid = catalog.key_to_product.get(obj.key) or key_pattern.product_id(obj.key)
        if pid is None:
            unattributed.append(obj.key)
        else:
            owners[obj.key] = pid

    def content_hash(obj) -> str:
        prev = known.get(obj.key)
        if prev and prev["etag"] == obj.etag and prev["size_bytes"] == obj.size:
            return prev["content_hash"]
        return hashlib.sha256(get_bytes(s3, bucket, obj.key)).hexdigest()

    attributed = [o for o in objects if o.key in owners]
    with ThreadPoolExecutor(max_workers=hash_workers) as pool:
        hashes = list(pool.map(content_hash, attributed))

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
    return InventoryResult(diff=diff, listed=len(objects), unattributed=unattributed)
