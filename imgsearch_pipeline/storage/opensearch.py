"""The OpenSearch index: one index per model version behind an alias, filled from Postgres rows.

The index holds nothing Postgres does not: it can be dropped and rebuilt at any time without a model call.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from opensearchpy import OpenSearch, helpers
from pgvector import Vector

# Lucene HNSW: the only engine whose native code ships inside the k-NN plugin zip (see docs/architecture.md).
_KNN_METHOD = {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil",
               "parameters": {"m": 16, "ef_construction": 128}}
# Vectors travel as JSON: 7 decimals is below float32's resolution for the components that matter (the stored
# vectors are float32) and halves the bytes the server parses, against 17 significant digits.
VECTOR_DECIMALS = 7
BULK_THREADS = 2
VECTOR_FIELDS = (("image_vector", "image_embedding"), ("text_vector", "text_embedding"))  # document, row
_VECTOR_TEXT = re.compile(r"\[[-+0-9.eE,]*\]")


def make_client(url: str, user: str | None = None, password: str | None = None,
                verify_certs: bool = True, timeout: int = 30) -> OpenSearch:
    auth = (user, password) if user and password else None
    return OpenSearch(hosts=[url], http_auth=auth, verify_certs=verify_certs, timeout=timeout,
                      max_retries=3, retry_on_timeout=True)


def index_base(prefix: str, model_version: str) -> str:
    """The name stem of a model version's indices (OpenSearch wants lower case, no odd characters).

    Concrete indices are `<base>-g<N>`: a rebuild fills generation N+1 while N serves, then swaps the alias.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", model_version.lower()).strip("-")
    return f"{prefix}-{slug}"[:240]


def generations(client: OpenSearch, base: str) -> list[int]:
    names = client.indices.get(index=f"{base}-g*", ignore_unavailable=True, allow_no_indices=True)
    return sorted(int(m.group(1)) for n in names if (m := re.fullmatch(re.escape(base) + r"-g(\d+)", n)))


def write_index(client: OpenSearch, alias: str, base: str, image_dim: int, text_dim: int) -> str:
    """The newest generation of `base` (created when none exists); the alias is set if it points nowhere."""
    gens = generations(client, base)
    name = f"{base}-g{gens[-1] if gens else 1}"
    ensure_index(client, alias, name, image_dim, text_dim)
    return name


def mapping(image_dim: int, text_dim: int) -> dict:
    vec = lambda dim: {"type": "knn_vector", "dimension": dim, "method": _KNN_METHOD}  # noqa: E731
    return {
        "settings": {"index": {"knn": True, "number_of_shards": 1, "number_of_replicas": 0,
                               "refresh_interval": "1s"}},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "image_id": {"type": "keyword"},
                "product_id": {"type": "keyword"},
                "s3_key": {"type": "keyword"},
                "partition": {"type": "keyword"},
                "category": {"type": "keyword"},
                "category_confidence": {"type": "float"},
                "colors": {"type": "keyword"},
                "primary_color": {"type": "keyword"},
                "color_coverage": {"type": "float"},
                "pattern": {"type": "keyword"},
                "has_print": {"type": "boolean"},
                "attributes": {"type": "object", "dynamic": True},
                # English stemming (floral/flowers, striped/stripes) from the analysis-common module.
                "description": {"type": "text", "analyzer": "english"},
                "product_name": {"type": "text", "analyzer": "english"},
                "brand": {"type": "keyword", "fields": {"text": {"type": "text"}}},
                "department": {"type": "keyword"},
                "shop_category": {"type": "keyword"},
                "model_version": {"type": "keyword"},
                "analysed_at": {"type": "date"},
                "image_vector": vec(image_dim),
                "text_vector": vec(text_dim),
            },
            # Open attributes are keywords whatever their name, so filters on them are exact.
            "dynamic_templates": [{"attrs": {"path_match": "attributes.*",
                                             "mapping": {"type": "keyword"}}}],
        },
    }


def ensure_index(client: OpenSearch, alias: str, name: str, image_dim: int, text_dim: int) -> bool:
    """Create the versioned index if missing, and point the alias at it when the alias is unset.

    Returns True when the index was created. Moving an existing alias to a new version is `switch_alias`.
    """
    created = False
    if not client.indices.exists(index=name):
        client.indices.create(index=name, body=mapping(image_dim, text_dim))
        created = True
    if not client.indices.exists_alias(name=alias):
        client.indices.put_alias(index=name, name=alias)
    return created


def alias_target(client: OpenSearch, alias: str) -> str | None:
    if not client.indices.exists_alias(name=alias):
        return None
    return next(iter(client.indices.get_alias(name=alias)))


def switch_alias(client: OpenSearch, alias: str, name: str) -> None:
    """Atomically point the alias at `name` (one request: searches never see an empty alias)."""
    actions = [{"add": {"index": name, "alias": alias}}]
    old = alias_target(client, alias)
    if old and old != name:
        actions.insert(0, {"remove": {"index": old, "alias": alias}})
    client.indices.update_aliases(body={"actions": actions})


def to_document(row: dict) -> dict:
    """A Postgres analysis row (see storage.postgres.iter_index_rows) as an index document."""
    colors = list(row["colors"] or [])
    doc = {
        "image_id": str(row["image_id"]),
        "product_id": row["product_id"],
        "s3_key": row["s3_key"],
        "partition": row["partition_key"],
        "category": row["category"],
        "category_confidence": row["category_confidence"],
        "colors": colors,
        "primary_color": colors[0] if colors else None,
        "color_coverage": list(row["color_coverage"] or []),
        "pattern": row["pattern"],
        "has_print": row["has_print"],
        "attributes": row["attributes"] or {},
        "description": row["description"],
        "product_name": row["product_name"],
        "brand": row["brand"],
        "department": row["department"],
        "shop_category": row["shop_category"],
        "model_version": row["model_version"],
        "analysed_at": row["analysed_at"].isoformat(),
    }
    for field, col in VECTOR_FIELDS:
        if row[col] is not None:
            doc[field] = json.loads(vector_json(row[col]))
    return doc


def vector_json(value: str | Vector) -> str:
    """A vector as a JSON array. Postgres' own text form (`iter_index_rows` selects it) is one already: passing it
    through spares the client parsing and printing ~900 floats per document, its largest cost in a bulk."""
    if isinstance(value, str):
        if not _VECTOR_TEXT.fullmatch(value):
            raise ValueError(f"not a vector's text form: {value[:80]!r}")
        return value
    # rounded in float64, so each component prints as its short decimal
    return json.dumps(np.round(value.to_numpy().astype(np.float64), VECTOR_DECIMALS).tolist())


def document_json(row: dict) -> str:
    """`to_document(row)` serialised, with the vectors spliced in as text (see `vector_json`)."""
    doc = to_document({**row, **{col: None for _, col in VECTOR_FIELDS}})
    vectors = "".join(f',"{field}":{vector_json(row[col])}' for field, col in VECTOR_FIELDS if row[col] is not None)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)[:-1] + vectors + "}"


def bulk_index(client: OpenSearch, index: str, rows: Iterable[dict], chunk_size: int = 500,
               threads: int = BULK_THREADS) -> int:
    """Index rows by image_id (re-indexing overwrites, never duplicates); raises on any failed document.

    `threads` bulk requests run at once: the server builds the HNSW graphs of each request on one core."""
    action = json.dumps({"index": {"_index": index}})[:-2]

    def bodies() -> Iterator[tuple[int, bytes]]:
        lines: list[str] = []
        for row in rows:
            lines += [f'{action},"_id":{json.dumps(str(row["image_id"]))}}}}}', document_json(row)]
            if len(lines) == 2 * chunk_size:
                yield len(lines) // 2, ("\n".join(lines) + "\n").encode()
                lines = []
        if lines:
            yield len(lines) // 2, ("\n".join(lines) + "\n").encode()

    def send(chunk: tuple[int, bytes]) -> tuple[int, list[dict]]:
        n, body = chunk
        response = client.bulk(body=body, request_timeout=120)
        failed = [item["index"] for item in response["items"] if item["index"].get("error")]
        return n - len(failed), failed

    ok, errors = 0, []
    with ThreadPoolExecutor(threads) as pool:
        for indexed, failed in _bounded_map(pool, send, bodies(), ahead=threads):
            ok += indexed
            errors += failed
    if errors:
        raise RuntimeError(f"{len(errors)} documents failed to index; first: {errors[0]}")
    return ok


def _bounded_map(pool: ThreadPoolExecutor, fn, items: Iterable, ahead: int) -> Iterator:
    """pool.map, but reading `items` only `ahead` tasks ahead of the results (a partition streams from a cursor)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def delete_documents(client: OpenSearch, index: str, image_ids: Iterable[int]) -> int:
    actions = ({"_op_type": "delete", "_index": index, "_id": str(i)} for i in image_ids)
    ok, errors = helpers.bulk(client, actions, raise_on_error=False, request_timeout=120)
    real = [e for e in errors if e.get("delete", {}).get("status") != 404]
    if real:
        raise RuntimeError(f"{len(real)} deletes failed; first: {real[0]}")
    return ok


def rebuild(client: OpenSearch, alias: str, base: str, image_dim: int, text_dim: int,
            rows: Iterable[dict], take_alias: bool = False) -> tuple[str, int]:
    """Fill a fresh generation from `rows`, swap the alias onto it in one step, drop older generations.

    Searches keep using the old generation until the new one is complete (or forever, if this fails). An alias
    serving another model version moves only with `take_alias` (that version's analyses cover the catalogue).
    """
    gens = generations(client, base)
    name = f"{base}-g{(gens[-1] + 1) if gens else 1}"
    body = mapping(image_dim, text_dim)
    serving_refresh = body["settings"]["index"]["refresh_interval"]
    body["settings"]["index"]["refresh_interval"] = "-1"  # nobody searches it yet: fewer, larger segments
    client.indices.create(index=name, body=body)
    try:
        indexed = bulk_index(client, name, rows)
        client.indices.put_settings(index=name, body={"index": {"refresh_interval": serving_refresh}})
        client.indices.refresh(index=name)
    except Exception:
        client.indices.delete(index=name, ignore_unavailable=True)
        raise
    current = alias_target(client, alias)
    if take_alias or current is None or current.startswith(f"{base}-g"):
        switch_alias(client, alias, name)
    for g in gens:
        client.indices.delete(index=f"{base}-g{g}", ignore_unavailable=True)
    return name, indexed


def count(client: OpenSearch, index: str) -> int:
    client.indices.refresh(index=index)
    return client.count(index=index)["count"]
