"""Where a hybrid search spends its time inside the engines: EXPLAIN ANALYZE of every statement the Postgres
backend runs, and OpenSearch's profile of the hybrid's sub-searches, for one query.

    .venv/bin/python bench/explain_search.py "something elegant for a summer evening" > docs/profiles/search-explain.txt

Runs against the dataset `search_latency.py` left in its database and index (run that first, e.g. `--n 100000`).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager

import benchlib
import synthetic
from psycopg import sql

from imgsearch_pipeline.analysis.provider import get_provider
from imgsearch_pipeline.search.backend import SearchRequest
from imgsearch_pipeline.search.opensearch_backend import OpenSearchBackend
from imgsearch_pipeline.search.postgres_backend import PostgresBackend
from imgsearch_pipeline.search.service import SearchService, semantic_text
from imgsearch_pipeline.storage import postgres as pg


class Explaining:
    """A connection whose statements also run under EXPLAIN ANALYZE; the plans are kept in `plans`."""

    def __init__(self, conn) -> None:
        self.conn, self.plans = conn, []

    def execute(self, query, params=None):
        text = query.as_string(self.conn) if isinstance(query, sql.Composable) else query
        if not text.lstrip().startswith("SELECT set_config"):
            rows = self.conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + text, params).fetchall()
            self.plans.append("\n".join(r["QUERY PLAN"] for r in rows))
        return self.conn.execute(query, params)

    def transaction(self):
        return self.conn.transaction()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("query")
    benchlib.add_server_args(parser, "imgsearch_bench_search", "bench-search")
    args = parser.parse_args(argv)
    servers = benchlib.start_servers(args, lambda m: print(m, file=sys.stderr))
    provider = get_provider("builtin")
    conn = pg.connect(servers.dsn(args.database))
    explaining = Explaining(conn)

    @contextmanager
    def connect():
        yield explaining

    backend = PostgresBackend(connect, synthetic.MODEL_VERSION)
    service = SearchService(backend, provider)
    plan = service.parse(args.query)
    text = semantic_text(plan, service.vocab)
    req = SearchRequest(plan=plan, mode="hybrid", text=text,
                        text_vector=[float(x) for x in provider.embed_text([text])[0]])
    backend.search(req)
    print(f"# Query {args.query!r}: plan {plan.model_dump()}\n\n## Postgres backend: EXPLAIN (ANALYZE, BUFFERS)\n")
    for i, p in enumerate(explaining.plans, start=1):
        print(f"### statement {i}\n\n{p}\n")
    conn.close()

    client = servers.opensearch()
    os_backend = OpenSearchBackend(client, args.index_prefix)
    real = client.msearch

    def profiled(body, **kw):
        body = [dict(part, profile=True) if i % 2 else part for i, part in enumerate(body)]
        resp = real(body=body, **kw)
        print("## OpenSearch backend: profile of the _msearch sub-searches (shard totals, ms)\n")
        for name, r in zip(("BM25 list", "k-NN list", "count + facets"), resp["responses"], strict=False):
            shard = r["profile"]["shards"][0]
            query_ns = sum(q["time_in_nanos"] for s in shard["searches"] for q in s["query"])
            collect_ns = sum(c["time_in_nanos"] for s in shard["searches"] for c in s["collector"])
            aggs_ns = sum(a["time_in_nanos"] for a in shard.get("aggregations", []))
            top = [(q["type"], q["time_in_nanos"] / 1e6) for s in shard["searches"] for q in s["query"]]
            print(f"- {name}: took {r['took']} ms; query {query_ns / 1e6:.1f}, collectors {collect_ns / 1e6:.1f}, "
                  f"aggregations {aggs_ns / 1e6:.1f}; top-level queries " + ", ".join(f"{t} {ms:.1f}" for t, ms in top))
        return resp

    client.msearch = profiled
    os_backend.search(req)
    return 0


if __name__ == "__main__":
    sys.exit(main())
