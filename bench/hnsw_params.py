"""HNSW build parameters of the OpenSearch index: bulk indexing speed and the recall they cost, side by side.

    .venv/bin/python bench/hnsw_params.py --variants ef_construction=64 --json bench/results/hnsw-params.json

Runs on the data `search_latency.py` left (its database and its MiniLM-space synthetic vectors; run that first
at the same --n). The rows of `iter_index_rows` are read once, then indexed by the project's `bulk_index` into
one index as the project maps it and one per variant, taking turns 5,000 documents at a time, so machine load
hits every index alike; the node's CPU seconds are measured per index. Then recall@10 of each index's k-NN
(filtered, 100 and 10 candidates, and the bare unfiltered k=10) against exact search, with
`search_latency.recall`. A variant is `name=value[;name=value]` over the method's parameters (m,
ef_construction). Indices are deleted at the end.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import benchlib
import search_latency
import synthetic

from imgsearch_pipeline.analysis.provider import get_provider
from imgsearch_pipeline.search.backend import CANDIDATES
from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage import postgres as pg

TURN = 5000  # documents per index per turn


def parse_variant(text: str) -> dict[str, int]:
    return {k.strip(): int(v) for k, v in (part.split("=") for part in text.split(";"))}


def mapping(params: dict[str, int]) -> dict:
    body = osx.mapping(synthetic.IMAGE_DIM, synthetic.TEXT_DIM)
    for field in ("image_vector", "text_vector"):
        method = copy.deepcopy(body["mappings"]["properties"][field]["method"])
        method["parameters"].update(params)
        body["mappings"]["properties"][field]["method"] = method
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="documents (search_latency.py must have loaded them)")
    parser.add_argument("--variants", default="ef_construction=64",
                        help="comma-separated, e.g. 'm=8,ef_construction=64'")
    parser.add_argument("--json", type=Path)
    benchlib.add_server_args(parser, "imgsearch_bench_search", "bench-hnsw")
    args = parser.parse_args(argv)

    log = benchlib.log

    servers = benchlib.start_servers(args, log)
    client = servers.opensearch(timeout=600)
    result: dict = {"n": args.n, "load_start": benchlib.loadavg(), "machine": benchlib.machine(servers),
                    "command": " ".join(sys.argv), "variants": {}}
    conn = pg.connect(servers.dsn(args.database))
    rows = []
    for row in pg.iter_index_rows(conn, synthetic.MODEL_VERSION):
        rows.append(row)
        if len(rows) == args.n:
            break
    conn.close()
    if len(rows) < args.n:
        raise SystemExit(f"{args.database} holds {len(rows)} analyses: run search_latency.py --n {args.n} first")
    labels = {"as mapped": {}} | {v: parse_variant(v) for v in args.variants.split(",") if v}
    indices = {label: f"{args.index_prefix}-{i}" for i, label in enumerate(labels)}
    benchlib.delete_indices(client, args.index_prefix)
    for label, index in indices.items():
        client.indices.create(index=index, body=mapping(labels[label]))
    spent = {label: {"wall": 0.0, "opensearch": 0.0} for label in labels}
    for lo in range(0, len(rows), TURN):
        for label, index in indices.items():
            with benchlib.CpuMeter(servers) as meter:
                osx.bulk_index(client, index, rows[lo:lo + TURN])
            for k in spent[label]:
                spent[label][k] += meter.seconds.get(k, 0.0)
        speeds = ", ".join(f"{label} {(lo + TURN) / s['wall']:.0f} docs/s" for label, s in spent.items())
        log(f"{lo + TURN} documents: {speeds}; load {benchlib.loadavg()}")
    del rows
    for label, index in indices.items():
        client.indices.refresh(index=index)
        benchlib.wait_for_merges(client, index)
        result["variants"][label] = {"params": labels[label], "docs_s": args.n / spent[label]["wall"],
                                     "node_cpu_ms_per_doc": 1000 * spent[label]["opensearch"] / args.n,
                                     "count": osx.count(client, index)}
    result["load_after_indexing"] = benchlib.loadavg()

    bench_args = argparse.Namespace(**vars(args), backends=["opensearch"], candidates=CANDIDATES)
    bench = search_latency.Bench(servers, bench_args, get_provider("builtin"))
    gen = synthetic.Generator(0, "minilm")
    try:
        for label, index in indices.items():
            bench.alias = index
            result["variants"][label]["recall"] = search_latency.recall(bench, gen, args.n)
            log(f"recall measured on {label}")
    finally:
        bench.close()
    benchlib.delete_indices(client, args.index_prefix)
    result["load_end"] = benchlib.loadavg()
    print(report(result))
    benchlib.write_json(args.json, result)
    return 0


def report(result: dict) -> str:
    variants = result["variants"]
    ref = variants["as mapped"]
    classes = list(search_latency.QUERIES)
    rows = []
    for label, v in variants.items():
        r = v["recall"]
        rows.append((label, v["docs_s"], f"{v['docs_s'] / ref['docs_s']:.2f}x", f"{v['node_cpu_ms_per_doc']:.2f}",
                     *(f"{r[f'opensearch|k={CANDIDATES}|{c}']:.2f}" for c in classes),
                     f"{r['opensearch|bare k=10|pure-semantic']:.2f}"
                     f" ({r['opensearch|bare k=10 eps|pure-semantic']:.2f})"))
    return "\n".join([
        f"## HNSW build parameters: {result['n']} documents, indexed side by side, then recall@10", "",
        f"Machine: {benchlib.describe_machine(result['machine'])}",
        f"Load (1/5/15 min): start {result['load_start']}, after indexing {result['load_after_indexing']}, "
        f"end {result['load_end']}", "",
        f"Recall@10 of the filtered k-NN list with {CANDIDATES} candidates (what the hybrid fuses) per query class, "
        "and of the bare unfiltered k=10 (within 0.005 cosine of the true 10th in brackets).", "",
        benchlib.table(["index (method parameters)", "bulk docs/s", "vs as mapped", "node CPU ms/doc",
                        *(f"recall {c}" for c in classes), "bare k=10 recall"], rows),
    ])


if __name__ == "__main__":
    sys.exit(main())
