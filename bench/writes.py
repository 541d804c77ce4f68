"""Write throughput: Postgres analyses, OpenSearch bulk indexing and a full index rebuild, side by side.

    .venv/bin/python bench/writes.py --n 100000 [--json bench/results/writes.json]

Postgres: N synthetic analyses (512-d image + 384-d text vectors, `bench/synthetic.py`) are written block by
block (1,000 rows per call and commit, like one partition of the analysis asset) through each path, every path
into a database of its own. The paths take turns on every block, so machine load hits them alike and their
ratios hold even on a busy machine:

  save_analyses         the project's path (`storage.postgres.save_analyses`: COPY into a temp table, upsert)
  copy+upsert           binary COPY into a temp table, one INSERT .. SELECT .. ON CONFLICT (bench/synthetic.py)
  copy                  binary COPY straight into the table (new rows only): the engine's floor

each without and (save_analyses and copy; skip with --no-hnsw) with the model version's HNSW indexes in place
(every save then maintains two HNSW graphs, as rows arriving after a version's first build do). Then the
indexes are built once over the filled table, which is what the pipeline does once a version covers the
catalogue (`ensure_vector_indexes` from the image_analysis asset).

OpenSearch: the rows of `storage.postgres.iter_index_rows` (read once, in memory) are indexed through the
project's `bulk_index` (`document_json`, 500 per request, 2 requests at once) and, taking turns chunk by chunk,
as pre-serialised `_bulk` bodies of the same documents (the engine alone). Last, the full rebuild the
`rebuild_search_index` job runs: `storage.opensearch.rebuild` fed by `iter_index_rows`, wall clock to the
swapped alias. The CPU seconds each server and this process spend are measured too: the node's CPU per
document bounds the docs/s any client can reach on this machine's cores.

A breakdown (--breakdown N documents) then indexes the same pre-serialised documents into variants of the
index, one change at a time (no vectors, one vector field, no refresh, lower ef_construction, shorter floats,
two requests at once), to show where the server's time goes.

Only the write calls are timed (building ImageAnalysis objects and documents is not). Targets: >= 5,000 docs/s
each, a rebuild of 100k images under a minute.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchlib
import synthetic
from opensearchpy import OpenSearch
from pgvector import Vector

from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline.vocab import get_vocabulary

TARGET_DOCS_S = 5000
TARGET_REBUILD_S = 60.0


def pg_paths(hnsw: bool) -> list[tuple[str, bool]]:
    """(path, with HNSW indexes) in the order they take turns."""
    paths = [("save_analyses", False), ("copy+upsert", False), ("copy", False)]
    if hnsw:
        paths += [("save_analyses", True), ("copy", True)]
    return paths


def write(conn, path: str, results, vocab_version: str) -> None:
    if path == "save_analyses":
        pg.save_analyses(conn, results, vocab_version)
    else:
        synthetic.copy_analyses(conn, results, vocab_version, upsert=path == "copy+upsert")
    conn.commit()  # the pipeline's connection commits when the asset's `with postgres.connect()` closes


def bench_postgres(servers: benchlib.Servers, args, blocks, log) -> dict:
    vocab_version = get_vocabulary().version
    items = [it for b in blocks for it in b.items]
    products = [p for b in blocks for p in b.products]
    conns, ids, out = {}, {}, {}
    for path, hnsw in pg_paths(args.hnsw):
        name = f"{path}{' +hnsw' if hnsw else ''}"
        database = f"{args.database}_{path.replace('+', '_').replace('_analyses', '')}{'_hnsw' if hnsw else ''}"
        conn = pg.connect(servers.recreate_database(database))
        pg.migrate(conn)
        conn.commit()
        with benchlib.Timer() as t:
            if not conns:  # once, through the project's paths (informative: not a target of this benchmark)
                synthetic.load_catalogue(conn, items, products)
            else:
                synthetic.copy_catalogue(conn, items, products)
            conn.commit()
        if not conns:
            out["catalogue"] = {"seconds": t.seconds, "docs_s": len(items) / t.seconds}
            log(f"catalogue through upsert_products + sync_inventory: {len(items)} images in {t.seconds:.1f} s")
        if hnsw:
            pg.ensure_vector_indexes(conn, synthetic.MODEL_VERSION, synthetic.IMAGE_DIM, synthetic.TEXT_DIM)
            conn.commit()
        conns[name], ids[name] = conn, synthetic.image_ids(conn)
        out[name] = {"path": path, "hnsw": hnsw, "database": database, "seconds": 0.0, "rows": 0}
    log(f"load before Postgres writes: {benchlib.loadavg()}")
    started = time.perf_counter()
    for i, block in enumerate(blocks):
        base = synthetic.analyses(block, ids[next(iter(ids))])  # untimed: building the ImageAnalysis objects
        for name, conn in conns.items():
            own = ids[name]
            results = [(own[it.key], h, a) for it, (_, h, a) in zip(block.items, base, strict=True)]
            with benchlib.Timer() as t:
                write(conn, out[name]["path"], results, vocab_version)
            out[name]["seconds"] += t.seconds
            out[name]["rows"] += len(results)
            out[name].setdefault("block_seconds", []).append(round(t.seconds, 4))
        if (i + 1) % max(1, len(blocks) // 10) == 0:
            log(f"  {out[name]['rows']:>7} rows, {time.perf_counter() - started:.0f} s, load {benchlib.loadavg()}: "
                + ", ".join(f"{n} {r['rows'] / r['seconds']:.0f}/s" for n, r in out.items() if "rows" in r))
            out.setdefault("load_samples", []).append((out[name]["rows"], benchlib.loadavg()))
    log(f"load after Postgres writes: {benchlib.loadavg()}")
    for name, conn in conns.items():
        r = out[name]
        r["docs_s"] = r["rows"] / r["seconds"]
        r["check_rows"] = pg.count_index_rows(conn, synthetic.MODEL_VERSION)
        r["table_mb"] = conn.execute("SELECT pg_total_relation_size('image_analysis') / 1048576.0 AS mb"
                                     ).fetchone()["mb"]
    # The alternative to maintaining HNSW graphs row by row: load, then build them once.
    conn = conns["copy"]
    for mem in (None, "1GB"):
        if mem is None and not args.build_default_mem:
            continue
        conn.execute(f"DROP INDEX IF EXISTS {pg.vector_index_name(synthetic.MODEL_VERSION, 'image_embedding', 512)}")
        conn.execute(f"DROP INDEX IF EXISTS {pg.vector_index_name(synthetic.MODEL_VERSION, 'text_embedding', 384)}")
        conn.commit()
        if mem:
            conn.execute(f"SET maintenance_work_mem = '{mem}'")
        setting = conn.execute("SHOW maintenance_work_mem").fetchone()["maintenance_work_mem"]
        with benchlib.Timer() as t:
            pg.ensure_vector_indexes(conn, synthetic.MODEL_VERSION, synthetic.IMAGE_DIM, synthetic.TEXT_DIM)
            conn.commit()
        out[f"hnsw build after load (maintenance_work_mem={setting})"] = {
            "seconds": t.seconds, "docs_s": len(items) / t.seconds, "load": benchlib.loadavg()}
        log(f"HNSW indexes built over {len(items)} rows in {t.seconds:.1f} s (maintenance_work_mem={setting})")
    for conn in conns.values():
        conn.close()
    return out


def bulk_bodies(client: OpenSearch, index: str, rows: list[dict], chunk: int) -> list[bytes]:
    """The `_bulk` request bodies bulk_index sends for `rows`, serialised ahead of time."""
    dumps = client.transport.serializer.dumps
    bodies = []
    for i in range(0, len(rows), chunk):
        lines = []
        for row in rows[i:i + chunk]:
            lines += [dumps({"index": {"_index": index, "_id": str(row["image_id"])}}), osx.document_json(row)]
        bodies.append(("\n".join(lines) + "\n").encode())
    return bodies


def bench_opensearch(servers: benchlib.Servers, args, dsn: str, log) -> dict:
    client = servers.opensearch(timeout=300)
    benchlib.delete_indices(client, args.index_prefix)
    base = osx.index_base(args.index_prefix, synthetic.MODEL_VERSION)
    out: dict = {}
    conn = pg.connect(dsn)
    with benchlib.Timer() as t:
        rows = list(pg.iter_index_rows(conn, synthetic.MODEL_VERSION))
    out["iter_index_rows (read only)"] = {"seconds": t.seconds, "docs_s": len(rows) / t.seconds}
    with benchlib.Timer() as t:
        size = sum(len(osx.document_json(r)) for r in rows)
    out["document_json (client CPU only)"] = {"seconds": t.seconds, "docs_s": len(rows) / t.seconds,
                                              "mb": size / 2**20}
    log(f"{len(rows)} rows read in {out['iter_index_rows (read only)']['seconds']:.1f} s; document_json "
        f"{t.seconds:.1f} s ({size / 2**20:.0f} MB of JSON)")
    # The previous path, for the ratio: vectors parsed into floats and printed again by the JSON serialiser.
    parsed = [{**r, **{c: Vector.from_text(r[c]) for _, c in osx.VECTOR_FIELDS if r[c]}} for r in rows[:10_000]]
    with benchlib.Timer() as t:
        sum(len(client.transport.serializer.dumps(osx.to_document(r))) for r in parsed)
    out["to_document + JSON of parsed vectors (before)"] = {"seconds": t.seconds, "docs_s": len(parsed) / t.seconds}
    del parsed

    project, bare = f"{base}-bulk-project", f"{base}-bulk-bare"
    for name in (project, bare):
        client.indices.create(index=name, body=osx.mapping(synthetic.IMAGE_DIM, synthetic.TEXT_DIM))
    bodies = bulk_bodies(client, bare, rows, 500)
    per_turn = 10  # requests of 500 per turn
    spent = {project: 0.0, bare: 0.0}
    cpu = {project: defaultdict(float), bare: defaultdict(float)}
    log(f"load before bulk: {benchlib.loadavg()}")
    for turn in range(0, len(bodies), per_turn):
        lo, hi = turn * 500, (turn + per_turn) * 500
        with benchlib.CpuMeter(servers) as m:
            osx.bulk_index(client, project, rows[lo:hi])
        spent[project] += m.seconds["wall"]
        for k, v in m.seconds.items():
            cpu[project][k] += v
        with benchlib.CpuMeter(servers) as m:
            for body in bodies[turn:turn + per_turn]:
                resp = client.transport.perform_request("POST", "/_bulk", body=body,
                                                        params={"request_timeout": 300})
                if resp.get("errors"):
                    raise RuntimeError("bare bulk: some documents failed")
        spent[bare] += m.seconds["wall"]
        for k, v in m.seconds.items():
            cpu[bare][k] += v
    log(f"load after bulk: {benchlib.loadavg()}")
    for name, label in ((project, "bulk_index (project)"), (bare, "_bulk, pre-serialised (engine)")):
        with benchlib.Timer() as t:
            client.indices.refresh(index=name)
        count = osx.count(client, name)
        out[label] = {"seconds": spent[name], "docs_s": len(rows) / spent[name], "refresh_s": t.seconds,
                      "count": count, "segments": benchlib.segment_count(client, name), "cpu_s": dict(cpu[name])}
    for name in (project, bare):
        client.indices.delete(index=name)
    if args.breakdown:
        log(f"breakdown of the server's bulk time over {min(args.breakdown, len(rows))} documents ...")
        out["breakdown"] = bench_breakdown(servers, client, rows, args.breakdown, args.index_prefix, log)
    del rows, bodies

    log("rebuild from Postgres ...")
    alias = args.index_prefix
    osx.ensure_index(client, alias, f"{base}-g1", synthetic.IMAGE_DIM, synthetic.TEXT_DIM)  # the serving index
    log(f"load before rebuild: {benchlib.loadavg()}")
    with benchlib.CpuMeter(servers) as meter:
        name, indexed = osx.rebuild(client, alias, base, synthetic.IMAGE_DIM, synthetic.TEXT_DIM,
                                    pg.iter_index_rows(conn, synthetic.MODEL_VERSION))
    wall = meter.seconds["wall"]
    out["rebuild (iter_index_rows -> rebuild)"] = {
        "seconds": wall, "docs_s": indexed / wall, "count": osx.count(client, alias), "index": name,
        "alias_target": osx.alias_target(client, alias), "load_after": benchlib.loadavg(), "cpu_s": meter.seconds}
    log(f"rebuild: {indexed} documents in {wall:.1f} s; CPU s {meter.seconds}; load {benchlib.loadavg()}")
    with benchlib.CpuMeter(servers) as meter:
        benchlib.wait_for_merges(client, name)
    out["rebuild (iter_index_rows -> rebuild)"]["merges_after_s"] = meter.seconds["wall"]
    out["rebuild (iter_index_rows -> rebuild)"]["merges_cpu_s"] = meter.seconds.get("opensearch")
    out["rebuild (iter_index_rows -> rebuild)"]["segments"] = benchlib.segment_count(client, name)
    conn.close()
    return out


def bench_breakdown(servers: benchlib.Servers, client: OpenSearch, rows: list[dict], n: int, prefix: str,
                    log) -> dict:
    """Where the server's bulk time goes: the same n documents, pre-serialised, into variants of the index.

    Each variant changes one thing (documents, mapping or request concurrency); "as mapped" runs first and last,
    and the ratios are against the mean of those two runs."""
    docs = [osx.to_document(r) for r in rows[:n]]
    base = osx.mapping(synthetic.IMAGE_DIM, synthetic.TEXT_DIM)

    def mapping(refresh: str = "1s", ef_construction: int = 128) -> dict:
        m = copy.deepcopy(base)
        m["settings"]["index"]["refresh_interval"] = refresh
        for field in ("image_vector", "text_vector"):
            m["mappings"]["properties"][field]["method"]["parameters"]["ef_construction"] = ef_construction
        return m

    def strip(*fields: str) -> list[dict]:
        return [{k: v for k, v in d.items() if k not in fields} for d in docs]

    rounded = [{**d, **{f: [round(x, 6) for x in d[f]] for f in ("image_vector", "text_vector")}} for d in docs]
    variants = [
        ("as mapped (2 HNSW fields, m 16, ef_construction 128, refresh 1s)", mapping(), docs, 1),
        ("no vector fields", mapping(), strip("image_vector", "text_vector"), 1),
        ("text vector only (no image vector)", mapping(), strip("image_vector"), 1),
        ("refresh_interval -1 while filling", mapping(refresh="-1"), docs, 1),
        ("ef_construction 64", mapping(ef_construction=64), docs, 1),
        ("vectors rounded to 6 decimals (half the JSON)", mapping(), rounded, 1),
        ("2 bulk requests at once", mapping(), docs, 2),
        ("as mapped, again", mapping(), docs, 1),
    ]
    dumps = client.transport.serializer.dumps
    out = {}
    for label, body, variant_docs, parallel in variants:
        index = f"{prefix}-breakdown"
        client.indices.delete(index=index, ignore_unavailable=True)
        client.indices.create(index=index, body=body)
        chunks = [variant_docs[i:i + 500] for i in range(0, len(variant_docs), 500)]
        bodies = [("\n".join(line for d in chunk for line in (
            dumps({"index": {"_index": index, "_id": d["image_id"]}}), dumps(d))) + "\n").encode() for chunk in chunks]

        def post(part: list[bytes], label: str = label) -> None:
            for b in part:
                if client.transport.perform_request("POST", "/_bulk", body=b,
                                                    params={"request_timeout": 300}).get("errors"):
                    raise RuntimeError(f"{label}: some documents failed")

        with benchlib.CpuMeter(servers) as t:
            with ThreadPoolExecutor(parallel) as pool:
                list(pool.map(post, [bodies[i::parallel] for i in range(parallel)]))
            client.indices.refresh(index=index)
        wall, node = t.seconds["wall"], t.seconds.get("opensearch")
        out[label] = {"seconds": wall, "docs_s": len(docs) / wall, "load": benchlib.loadavg(),
                      "mb": sum(map(len, bodies)) / 2**20, "node_cpu_s": node}
        log(f"  breakdown: {label}: {len(docs) / wall:.0f} docs/s, node CPU {node} s, load {benchlib.loadavg()}")
        client.indices.delete(index=index)
    return out


def report(result: dict) -> str:
    n = result["n"]
    pgr = result["postgres"]
    lines = [f"## Writes: {n} synthetic analyses (512-d image + 384-d text vectors), batch {result['batch']}", "",
             f"Machine: {benchlib.describe_machine(result['machine'])}",
             f"Load (1/5/15 min): start {result['load_start']}, end {result['load_end']}", ""]
    rows = []
    for name, r in pgr.items():
        if not isinstance(r, dict) or "rows" not in r:
            continue
        floor = pgr["copy +hnsw" if r["hnsw"] else "copy"]["docs_s"]
        tail = r.get("block_seconds", [])[-max(1, len(r.get("block_seconds", [])) // 10):]
        last = f"{synthetic.BLOCK * len(tail) / sum(tail):,.0f}" if tail else ""
        rows.append((name, "yes" if r["hnsw"] else "no", r["docs_s"], last, r["seconds"],
                     f"{floor / r['docs_s']:.2f}x", "met" if r["docs_s"] >= TARGET_DOCS_S else "MISSED"))
    lines += ["### Postgres (ratio = time relative to plain COPY with the same indexes)", "",
              benchlib.table(["path", "HNSW indexes", "docs/s", "docs/s, last 10 %", "seconds", "vs copy",
                              ">= 5,000/s"], rows), ""]
    extra = [(k, v["seconds"], v["docs_s"]) for k, v in pgr.items() if isinstance(v, dict) and "rows" not in v]
    lines += [benchlib.table(["also measured", "seconds", "docs/s"], extra), ""]
    osr = result["opensearch"]
    engine = osr["_bulk, pre-serialised (engine)"]["docs_s"]
    cores = result["machine"].get("cores") or os.cpu_count()
    rows = []
    for name, r in osr.items():
        if name == "breakdown":
            continue
        ratio = f"{engine / r['docs_s']:.2f}x" if "bulk" in name else ""
        target = ("met" if r["docs_s"] >= TARGET_DOCS_S else "MISSED") if "bulk" in name else ""
        if name.startswith("rebuild"):
            target = "met" if r["seconds"] < TARGET_REBUILD_S else "MISSED"
        cpu = r.get("cpu_s") or {}
        node_ms = 1000 * cpu["opensearch"] / r["count"] if cpu.get("opensearch") else None
        rows.append((name, r["docs_s"], r["seconds"], ratio, target,
                     "" if node_ms is None else f"{node_ms:.2f}",
                     "" if node_ms is None else f"{1000 * cores / node_ms:,.0f}",
                     "" if not cpu else f"{cpu.get('this process', 0):.1f} / {cpu.get('postgres', 0):.1f}"))
    lines += ["### OpenSearch (ratio = how much slower than the pre-serialised _bulk)", "",
              "Node CPU per document: the node's CPU seconds during the path / documents; the ceiling is what the "
              f"node could index with all {cores} cores and nothing else running (cores / CPU per document).", "",
              benchlib.table(["path", "docs/s", "seconds", "vs engine", "target", "node CPU ms/doc",
                              f"ceiling docs/s on {cores} cores", "client / Postgres CPU s"], rows), ""]
    if "breakdown" in osr:
        bd = osr["breakdown"]
        ref = (bd[next(iter(bd))]["docs_s"] + bd["as mapped, again"]["docs_s"]) / 2
        n_bd = min(result["breakdown_n"], n)
        lines += ["### Where the server's bulk time goes (pre-serialised _bulk, one change at a time)", "",
                  benchlib.table(["variant", "docs/s", "vs as mapped", "node CPU ms/doc", "MB sent", "load"],
                                 [(k, v["docs_s"], f"{v['docs_s'] / ref:.2f}x",
                                   f"{1000 * v['node_cpu_s'] / n_bd:.2f}" if v.get("node_cpu_s") else "",
                                   v["mb"], v["load"]) for k, v in bd.items()]), ""]
    rb = osr["rebuild (iter_index_rows -> rebuild)"]
    lines += [f"Rebuild: {rb['count']} documents, alias -> {rb['alias_target']}, {rb['segments']} segments "
              f"after {rb['merges_after_s']:.0f} s of merging."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="analyses to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-hnsw", dest="hnsw", action="store_false",
                        help="skip the paths that write with HNSW indexes in place (the slow ones)")
    parser.add_argument("--build-default-mem", action="store_true",
                        help="also build the HNSW indexes after load with the server's maintenance_work_mem")
    parser.add_argument("--skip-postgres", action="store_true", help="reuse the databases of a previous run")
    parser.add_argument("--skip-opensearch", action="store_true")
    parser.add_argument("--breakdown", type=int, default=10_000,
                        help="documents for the bulk breakdown (index variants); 0 skips it")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    benchlib.add_server_args(parser, "imgsearch_bench_writes", "bench-writes")
    args = parser.parse_args(argv)

    log = benchlib.log

    servers = benchlib.start_servers(args, log)
    result: dict = {"n": args.n, "batch": synthetic.BLOCK, "seed": args.seed, "breakdown_n": args.breakdown,
                    "load_start": benchlib.loadavg(),
                    "machine": benchlib.machine(servers), "command": " ".join(sys.argv)}
    log(f"load at start: {result['load_start']}")
    gen = synthetic.Generator(args.seed, "random")
    with benchlib.Timer() as t:
        blocks = list(gen.blocks(args.n))
    log(f"generated {args.n} items in {t.seconds:.1f} s")
    if not args.skip_postgres:
        result["postgres"] = bench_postgres(servers, args, blocks, log)
    del blocks
    if not args.skip_opensearch:
        result["opensearch"] = bench_opensearch(servers, args, servers.dsn(f"{args.database}_save"), log)
    result["load_end"] = benchlib.loadavg()
    if "postgres" in result and "opensearch" in result:
        print(report(result))
    else:
        print(json.dumps(result, indent=2, default=str))
    benchlib.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
