"""The image inventory of one S3 prefix: list, tell new and changed objects by ETag and size, attribute images
to products. It reads no object: the analysis step hashes the bytes it reads anyway."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from pydantic import ValidationError

from imgsearch_pipeline.catalog import Catalog, KeyPattern
from imgsearch_pipeline.partitions import CONTROL, MAX_KEY_BYTES
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline.storage.s3 import list_objects


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
) -> InventoryResult:
    """Sync the partition's listing into product_images; keys that cannot be taken in are `rejected` with why.

    Objects whose ETag and size match what Postgres holds are unchanged; the others become pending with no
    content hash until the analysis step reads them, so idempotency still rests on the bytes. An object deleted
    after the listing fails that read, and the next inventory marks it deleted.
    """
    objects = list(list_objects(s3, bucket, partition_key))
    unattributed: list[str] = []
    rejected: dict[str, str] = {}
    listed: list[pg.ListedObject] = []
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
            listed.append(pg.ListedObject(obj.key, pid, obj.etag, obj.size, obj.last_modified))

    # Feed products carry catalogue data; products known only from a key pattern get a bare row.
    needed = {o.product_id for o in listed}
    from_feed = [catalog.products[p] for p in needed if p in catalog.products]
    bare = [pg.Product(product_id=p, source="key_pattern") for p in needed if p not in catalog.products]
    pg.upsert_products(conn, from_feed)
    pg.upsert_products(conn, bare, overwrite=False)
    conn.commit()
    diff = pg.sync_inventory(conn, partition_key, listed)
    return InventoryResult(diff=diff, listed=len(objects), unattributed=unattributed, rejected=rejected)
