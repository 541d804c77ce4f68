"""`imgsearch eval`: ingest a labelled set through the real pipeline into its own stores, run its queries three
ways and score them.

Stores: a database `imgsearch_eval_<dataset>` on the configured PostgreSQL server, the bucket `imgsearch-eval`
(images under `eval/<dataset>/<shard>/<id>.<ext>`, a feed at `feeds/<dataset>.jsonl`) and the index alias
`imgsearch-eval-<dataset>`; the user's catalogue is never touched. Ingest is image only: the feed names each
image's product (the `id` column, one product per image) and nothing else, so no catalogue text reaches the
analyser or the index. Shards are the partitions the ingest job materializes, one Dagster run each.

Systems: `hybrid` (the product: parsed filters + ranking), `vector` (k-NN of the raw query, no filters) and
`keyword` (BM25 of the raw query, no filters). Per query and system: P@10, nDCG@10, R@50 on the condensed
list (unjudged hits dropped first; up to `FETCH` hits are asked for so that the list stays deep enough),
violations@10 (top-10 hits whose labels contradict the parsed plan's hard constraints) and stored_violations@10
(top-10 hits whose stored attributes contradict the constraints the hybrid applied; 0 by construction for the
hybrid). No hits means no violations (0). With `limit`, "the whole set" for recall is the ingested subset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from imgsearch_pipeline.config import Settings
from imgsearch_pipeline.evaluation.dataset import EvalQuery, LabelledSet, load_labels, load_queries
from imgsearch_pipeline.evaluation.labels import label_violations
from imgsearch_pipeline.evaluation.metrics import condense, mean, ndcg_at, precision_at, recall_at, share
from imgsearch_pipeline.search.plan import QueryPlan, violations
from imgsearch_pipeline.search.results import Hit, SearchResponse
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline.vocab import Vocabulary, get_vocabulary

SYSTEMS = ("hybrid", "vector", "keyword")
METRICS = ("p@10", "ndcg@10", "r@50", "violations@10", "stored_violations@10")
K, DEEP = 10, 50
FETCH = 100  # hits asked per query and system (the search service's maximum)
BUCKET = "imgsearch-eval"
SHARDS = 16
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Stores -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalStores:
    """Where one labelled set lives, apart from the user's catalogue."""

    dataset: str
    database: str
    bucket: str
    index_prefix: str
    image_prefix: str
    feed_key: str

    @classmethod
    def for_dataset(cls, name: str) -> EvalStores:
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "dataset"
        return cls(dataset=slug, database=f"imgsearch_eval_{slug}"[:63], bucket=BUCKET,
                   index_prefix=f"imgsearch-eval-{slug.replace('_', '-')}", image_prefix=f"eval/{slug}/",
                   feed_key=f"feeds/{slug}.jsonl")

    def image_key(self, image_id: str, suffix: str, shards: int) -> str:
        number = int(image_id) if image_id.isdigit() else int(hashlib.sha256(image_id.encode()).hexdigest(), 16)
        return f"{self.image_prefix}{number % shards:02d}/{image_id}{suffix.lower()}"

    def partitions(self, shards: int) -> list[str]:
        return [f"{self.image_prefix}{s:02d}/" for s in range(shards)]


def database_dsn(server_dsn: str, database: str) -> str:
    """The DSN of another database on the same server (same host, port, user and options)."""
    return conninfo.make_conninfo(server_dsn, dbname=database)


def ensure_database(server_dsn: str, database: str) -> str:
    """Create the database on the configured server when missing; returns its DSN."""
    with psycopg.connect(server_dsn, autocommit=True, connect_timeout=10) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # created concurrently
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return database_dsn(server_dsn, database)


def eval_settings(base: Settings, stores: EvalStores, backend: str) -> Settings:
    """The configured servers and provider, with the evaluation's own database, bucket and index alias."""
    dsn = database_dsn(base.require("postgres_dsn"), stores.database)
    return base.model_copy(update={"postgres_dsn": dsn, "s3_bucket": stores.bucket,
                                   "index_prefix": stores.index_prefix, "search_backend": backend})


def eval_definitions(settings: Settings, stores: EvalStores):
    """The project's definitions, with the image store pointed at the evaluation's prefix and feed."""
    from dagster import Definitions

    from imgsearch_pipeline.definitions import build_definitions
    from imgsearch_pipeline.resources import ImageStoreResource

    defs = build_definitions(settings)
    images = ImageStoreResource(s3=defs.resources["images"].s3, bucket=stores.bucket,
                                root_prefix=stores.image_prefix, partition_depth=3, feed_key=stores.feed_key)
    # Everything else as the project defines it (assets, checks, jobs, ...); only the resources differ.
    return Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs, schedules=defs.schedules,
                       sensors=defs.sensors, executor=defs.executor, loggers=defs.loggers,
                       resources={**defs.resources, "images": images})


# Ingest -------------------------------------------------------------------------------------------------


def expected_keys(labelled: LabelledSet, stores: EvalStores, shards: int) -> dict[str, str]:
    """S3 key -> image id for every image of the (sub)set."""
    return {stores.image_key(i, labelled.image_path(i).suffix, shards): i for i in labelled.rows}


def upload(client, stores: EvalStores, labelled: LabelledSet, shards: int, log: Log = _stderr) -> dict[str, int]:
    """Make the bucket's dataset prefix hold exactly the (sub)set, plus a feed of product ids and keys only.

    Objects whose bytes are already there (same MD5 ETag) are not sent again; objects of images outside the
    (sub)set are deleted, so that the inventory retires them from the database and the index.
    """
    from imgsearch_pipeline.storage.s3 import ensure_bucket, list_objects

    ensure_bucket(client, stores.bucket)
    wanted = expected_keys(labelled, stores, shards)
    existing = {o.key: o.etag for o in list_objects(client, stores.bucket, stores.image_prefix, images_only=False)}

    def put(key: str) -> bool:
        data = labelled.image_path(wanted[key]).read_bytes()
        if existing.get(key) == hashlib.md5(data, usedforsecurity=False).hexdigest():
            return False
        client.put_object(Bucket=stores.bucket, Key=key, Body=data, ContentType="image/jpeg")
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        sent = sum(pool.map(put, sorted(wanted)))
    stale = sorted(set(existing) - set(wanted))
    for i in range(0, len(stale), 1000):
        client.delete_objects(Bucket=stores.bucket, Delete={"Objects": [{"Key": k} for k in stale[i:i + 1000]]})
    feed = "".join(json.dumps({"product_id": image_id, "image_keys": [key]}) + "\n"
                   for key, image_id in sorted(wanted.items(), key=lambda kv: kv[1]))
    client.put_object(Bucket=stores.bucket, Key=stores.feed_key, Body=feed.encode(),
                      ContentType="application/x-ndjson")
    log(f"  s3://{stores.bucket}/{stores.image_prefix}: {sent} images uploaded, {len(wanted) - sent} already "
        f"there, {len(stale)} removed")
    return {"uploaded": sent, "unchanged": len(wanted) - sent, "removed": len(stale)}


def holds(conn: psycopg.Connection, keys: set[str], model_version: str) -> str | None:
    """None when the database holds exactly these images, each analysed by this model version (or failed for
    good); otherwise why not."""
    live = {r["s3_key"] for r in conn.execute("SELECT s3_key FROM product_images WHERE status <> 'deleted'")}
    if live != keys:
        return f"{len(keys - live)} images missing, {len(live - keys)} extra"
    done = conn.execute(
        "SELECT count(*) AS n FROM product_images i WHERE (i.status = 'analysed' AND EXISTS (SELECT 1 FROM "
        "image_analysis a WHERE a.image_id = i.image_id AND a.content_hash = i.content_hash AND a.model_version = %s))"
        " OR (i.status = 'failed' AND EXISTS (SELECT 1 FROM analysis_failures f WHERE f.image_id = i.image_id AND "
        "f.content_hash = i.content_hash AND f.model_version = %s AND NOT f.retryable))",
        (model_version, model_version)).fetchone()["n"]
    return None if done == len(keys) else f"{len(keys) - done} images not analysed by {model_version}"


def index_state(resources, model_version: str) -> str | None:
    """None when the eval alias serves this model version's newest index with every analysed image."""
    from imgsearch_pipeline.storage import opensearch as osx

    opensearch = resources["opensearch"]
    client = opensearch.client()
    base = opensearch.index_base(model_version)
    gens = osx.generations(client, base)
    target = osx.alias_target(client, opensearch.alias)
    if not gens or target != f"{base}-g{gens[-1]}":
        return f"alias {opensearch.alias} does not serve {model_version}"
    with resources["postgres"].connect() as conn:
        expected = pg.count_index_rows(conn, model_version)
    indexed = osx.count(client, target)
    return None if indexed == expected else f"index holds {indexed} documents, the database {expected}"


def materialize(defs, partitions: list[str], log: Log = _stderr) -> None:
    """Run the ingest job for each partition on a throwaway Dagster instance (the runs are not the point)."""
    from dagster import DagsterInstance

    from imgsearch_pipeline.partitions import image_prefixes

    job = defs.resolve_job_def("ingest_partition")
    with tempfile.TemporaryDirectory(prefix="imgsearch-eval-") as tmp, DagsterInstance.ephemeral(tmp) as instance:
        instance.add_dynamic_partitions(image_prefixes.name, partitions)
        for part in partitions:
            started = time.perf_counter()
            job.execute_in_process(partition_key=part, instance=instance, raise_on_error=True, run_config=_QUIET)
            log(f"  {part:32s} ok in {time.perf_counter() - started:.1f}s")


def serve_current_index(defs, model_version: str, log: Log = _stderr) -> None:
    """Point the eval alias at this model version's index, rebuilt from Postgres if it holds other documents
    (e.g. left from an earlier database of the same name)."""
    from dagster import DagsterInstance

    from imgsearch_pipeline.storage import opensearch as osx

    if index_state(defs.resources, model_version) is None:
        return
    opensearch = defs.resources["opensearch"]
    client = opensearch.client()
    base = opensearch.index_base(model_version)
    with tempfile.TemporaryDirectory(prefix="imgsearch-eval-") as tmp, DagsterInstance.ephemeral(tmp) as instance:
        defs.resolve_job_def("rebuild_index_job").execute_in_process(instance=instance, run_config=_QUIET)
    newest = f"{base}-g{osx.generations(client, base)[-1]}"
    if osx.alias_target(client, opensearch.alias) != newest:
        osx.switch_alias(client, opensearch.alias, newest)
    log(f"  index rebuilt from Postgres; alias {opensearch.alias} -> {newest}")


# Scoring ------------------------------------------------------------------------------------------------


def stored_document(hit: Hit) -> dict:
    """A hit's stored attributes in the shape `plan.violations` reads. Image-only ingest stores no department."""
    a = hit.attributes
    return {"category": a.category, "colors": a.colors, "pattern": a.pattern, "has_print": a.has_print,
            "attributes": a.attributes, "department": None}


def score(response: SearchResponse, parsed: QueryPlan, applied: QueryPlan, query: EvalQuery, labelled: LabelledSet,
          n_relevant: int, vocab: Vocabulary) -> dict[str, float | None]:
    """The five metrics of one ranked list. Labels are held against the `parsed` plan (what the shopper asked
    for), stored attributes against the plan the hybrid `applied` (which relaxes constraints that no item can
    satisfy, such as a department in an image-only catalogue, into ranking)."""
    rows = [labelled.rows.get(h.product_id) for h in response.hits]
    ranked = condense(query.judge(row) if row is not None else None for row in rows)
    top = list(zip(response.hits[:K], rows[:K], strict=True))
    return {
        "p@10": precision_at(ranked, K) if n_relevant else None,
        "ndcg@10": ndcg_at(ranked, K, n_relevant),
        "r@50": recall_at(ranked, DEEP, n_relevant),
        "violations@10": share([row is not None and bool(label_violations(parsed, row, vocab)) for _, row in top]),
        "stored_violations@10": share([bool(violations(applied, stored_document(hit))) for hit, _ in top]),
    }


def run_queries(service, labelled: LabelledSet, queries: list[EvalQuery]) -> list[dict]:
    """Every query through every system, all three judged against the same plans; "plan" in the output is the
    one the hybrid applied (its warnings say what it relaxed)."""
    vocab = get_vocabulary()
    out = []
    for q in queries:
        n_relevant = len(labelled.relevant(q))
        parsed = service.parse(q.query)
        responses = {mode: service.search(q.query, size=FETCH, mode=mode, facets=False) for mode in SYSTEMS}
        applied = responses["hybrid"].plan
        entry = {"id": q.id, "query": q.query, "plan": applied.model_dump(), "relevant": n_relevant,
                 "returned": {mode: len(r.hits) for mode, r in responses.items()}}
        for mode in SYSTEMS:
            entry[mode] = _rounded(score(responses[mode], parsed, applied, q, labelled, n_relevant, vocab))
        out.append(entry)
    return out


def summarize(per_query: list[dict]) -> dict[str, dict[str, float | None]]:
    """Each system's mean of each metric over the queries where it is defined."""
    return {mode: _rounded({m: mean(q[mode][m] for q in per_query) for m in METRICS}) for mode in SYSTEMS}


def _rounded(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 4) for k, v in values.items()}


# The command --------------------------------------------------------------------------------------------


def run_eval(base: Settings, dataset: Path, queries_file: Path, limit: int | None = None,
             backend: str = "opensearch", reuse: bool = False, shards: int = SHARDS, log: Log = _stderr) -> dict:
    """Ingest (unless `reuse` finds it done), query, score; returns the report `--json` prints."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, not {limit}")
    if not 1 <= shards <= 100:
        raise ValueError(f"--shards must be between 1 and 100, not {shards}")
    labelled = load_labels(dataset, limit)
    queries = load_queries(queries_file, labelled.columns)
    stores = EvalStores.for_dataset(labelled.name)
    ensure_database(base.require("postgres_dsn"), stores.database)
    settings = eval_settings(base, stores, backend)
    defs = eval_definitions(settings, stores)
    model_version = defs.resources["analysis"].get().model_version
    keys = set(expected_keys(labelled, stores, shards))
    log(f"eval {labelled.name}: {len(labelled.rows)} images, {len(queries)} queries, database {stores.database}, "
        f"alias {stores.index_prefix}, {model_version}")

    started = time.perf_counter()
    reason = _not_reusable(defs, keys, model_version, backend) if reuse else "no --reuse"
    if reason is None:
        log("  the eval database already holds this set at this model version: ingest skipped")
    else:
        log(f"  ingesting ({reason})")
        upload(defs.resources["images"].client(), stores, labelled, shards, log)
        materialize(defs, stores.partitions(shards), log)
        serve_current_index(defs, model_version, log)
        with defs.resources["postgres"].connect() as conn:
            counts = pg.status_counts(conn)
        log("  images: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    ingest_s = time.perf_counter() - started

    started = time.perf_counter()
    per_query = run_queries(defs.resources["search"].service(), labelled, queries)
    query_s = time.perf_counter() - started
    return {
        "dataset": labelled.name,
        "images": len(labelled.rows),
        "model_version": model_version,
        "backend": backend,
        "ingested": reason is not None,
        "seconds": {"ingest": round(ingest_s, 1), "queries": round(query_s, 1)},
        "systems": summarize(per_query),
        "queries": per_query,
    }


def _not_reusable(defs, keys: set[str], model_version: str, backend: str) -> str | None:
    with defs.resources["postgres"].connect() as conn:
        reason = holds(conn, keys, model_version)
    if reason is None and backend == "opensearch":
        reason = index_state(defs.resources, model_version)
    return reason


def format_report(report: dict) -> str:
    """The report as readable tables: the systems overall, then each query."""
    def cell(v: float | None) -> str:
        return "   -  " if v is None else f"{v:6.3f}"

    def triple(q: dict, metric: str) -> str:
        return " ".join(cell(q[mode][metric]) for mode in SYSTEMS)

    lines = [f"{report['dataset']}: {report['images']} images, {len(report['queries'])} queries, "
             f"{report['model_version']}, backend {report['backend']} (ingest {report['seconds']['ingest']}s, "
             f"queries {report['seconds']['queries']}s)", "",
             f"{'system':8s} " + " ".join(f"{m:>14s}" for m in METRICS)]
    for mode in SYSTEMS:
        lines.append(f"{mode:8s} " + " ".join(f"{cell(report['systems'][mode][m]):>14s}" for m in METRICS))
    lines += ["", "per query: hybrid / vector / keyword", f"{'id':6s} {'query':36s} {'rel':>5s}  "
              f"{'P@10':^20s}  {'nDCG@10':^20s}  {'R@50':^20s}  {'violations@10':^20s}  {'hits':^11s}"]
    for q in report["queries"]:
        hits = "/".join(str(q["returned"][mode]) for mode in SYSTEMS)
        lines.append(f"{q['id']:6s} {q['query'][:36]:36s} {q['relevant']:5d}  {triple(q, 'p@10')}  "
                     f"{triple(q, 'ndcg@10')}  {triple(q, 'r@50')}  {triple(q, 'violations@10')}  {hits:>11s}")
    return "\n".join(lines)
