"""A bounded load test of the search API on loopback: N concurrent clients for T seconds, a realistic query mix.

    .venv/bin/python bench/load_test.py                         # 50 clients, 60 s, 20,000 synthetic images
    .venv/bin/python bench/load_test.py --clients 10 --duration 15 --n 5000 --json bench/results/load.json

What it starts, with the project's own code: the benchmark's Postgres and OpenSearch (`benchlib.start_servers`,
in `.state/bench`, or `--use-settings`), a dataset of synthetic analyses (`synthetic.py`, text vectors in
MiniLM's space) in its own database and index alias, loaded once and reused by later runs, and the API itself
(`uvicorn imgsearch_pipeline.api.app:app`, one worker, as `imgsearch serve` runs it) in a child process pointed
at them through IMGSEARCH_* variables. The API's per-client rate limit (default 1,200 requests a minute per
address) would throttle 50 clients sharing 127.0.0.1: the run sets IMGSEARCH_REQUESTS_PER_MINUTE to
`--requests-per-minute` (default 10,000,000) and says so in its report.

The clients (asyncio + httpx, in this process) draw queries from the vocabulary: filters, negations,
disjunctions, residual text, page sizes from 10 to 100 (`/search` has no offset: a bigger page is the next
page), plus a share of `/parse` and of `/products` pages with offsets. Reported: requests/s, latency
p50/p95/p99, errors by status, and the server's RSS sampled every second (start after warm-up, peak, end).
Only OpenSearch, the default backend, is loaded: the PostgreSQL backend searches the provider's model version,
which synthetic analyses do not carry.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
import synthetic  # noqa: E402

from imgsearch_pipeline.stack.process import free_port, stop_group, wait_for_port  # noqa: E402
from imgsearch_pipeline.storage import opensearch as osx  # noqa: E402
from imgsearch_pipeline.storage import postgres as pg  # noqa: E402
from imgsearch_pipeline.vocab import get_vocabulary  # noqa: E402

RESIDUALS = ["flowers", "pockets", "logo", "summer party", "office", "gym", "wedding", "vintage look", "hood",
             "beach", "buttons", "big print", "zip", "winter", "cosy weekend"]


log = benchlib.log


# The dataset ---------------------------------------------------------------------------------------------


def load_dataset(servers: benchlib.Servers, args) -> str:
    """`args.n` synthetic analyses in Postgres and behind the alias; reused when a previous run left them."""
    dsn = servers.ensure_database(args.database)
    client = servers.opensearch(timeout=300)
    with pg.connect(dsn) as conn:
        pg.migrate(conn)
        conn.commit()
        have = pg.count_index_rows(conn, synthetic.MODEL_VERSION)
    if have == args.n and client.indices.exists_alias(name=args.index_prefix) \
            and osx.count(client, args.index_prefix) == args.n:
        log(f"reusing {args.n} images in {args.database} / {args.index_prefix}")
        return dsn
    log(f"loading {args.n} synthetic images into {args.database} / {args.index_prefix} ...")
    dsn = servers.recreate_database(args.database)
    benchlib.delete_indices(client, args.index_prefix)
    gen = synthetic.Generator(args.seed, "minilm")
    vocab_version = get_vocabulary().version
    with pg.connect(dsn) as conn:
        pg.migrate(conn)
        for block in gen.blocks(args.n):
            synthetic.copy_catalogue(conn, block.items, block.products)
            ids = synthetic.image_ids(conn, [it.key for it in block.items])
            synthetic.copy_analyses(conn, synthetic.analyses(block, ids), vocab_version, upsert=False)
            conn.commit()
        base = osx.index_base(args.index_prefix, synthetic.MODEL_VERSION)
        name, indexed = osx.rebuild(client, args.index_prefix, base, synthetic.IMAGE_DIM, synthetic.TEXT_DIM,
                                    pg.iter_index_rows(conn, synthetic.MODEL_VERSION), take_alias=True)
    benchlib.wait_for_merges(client, name)
    log(f"indexed {indexed} documents in {name}")
    return dsn


# The query mix -------------------------------------------------------------------------------------------


def query_mix(seed: int, n: int = 2000) -> list[tuple[str, dict]]:
    """(path, params) pairs: 85 % searches of several shapes, 10 % plans, 5 % product pages."""
    vocab = get_vocabulary()
    rng = random.Random(seed)
    cats = [c.label.lower() for c in vocab.categories]
    colours = sorted({c.family for c in vocab.colors})
    patterns = [p.label.lower() for p in vocab.patterns if p.id != "solid"]
    shapes = [
        lambda: f"{rng.choice(colours)} {rng.choice(cats)}",
        lambda: f"{rng.choice(cats)} not {rng.choice(colours)}",
        lambda: f"{rng.choice(colours)} {rng.choice(cats)} with no prints",
        lambda: f"{rng.choice(colours)} or {rng.choice(colours)} {rng.choice(cats)}",
        lambda: f"{rng.choice(patterns)} {rng.choice(cats)} without {rng.choice(colours)}",
        lambda: f"{rng.choice(cats)} with {rng.choice(RESIDUALS)}",
        lambda: f"{rng.choice(colours)} {rng.choice(RESIDUALS)}",
        lambda: rng.choice(RESIDUALS),
    ]
    out: list[tuple[str, dict]] = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.85:
            out.append(("/search", {"q": rng.choice(shapes)(), "size": rng.choice([10, 20, 20, 20, 50, 100])}))
        elif roll < 0.95:
            out.append(("/parse", {"q": rng.choice(shapes)()}))
        else:
            out.append(("/products", {"limit": 50, "offset": 50 * rng.randrange(0, 20)}))
    return out


# The run -------------------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn runs the app in its own process)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


async def run_clients(base: str, mix: list[tuple[str, dict]], clients: int, duration: float, pid: int) -> dict:
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    rss: list[tuple[float, float]] = []
    started = time.perf_counter()
    deadline = started + duration

    async def client(i: int, http: httpx.AsyncClient) -> None:
        k = i * 37
        while time.perf_counter() < deadline:
            path, params = mix[k % len(mix)]
            k += 1
            t0 = time.perf_counter()
            try:
                r = await http.get(path, params=params)
                statuses[r.status_code] += 1
            except httpx.HTTPError as e:
                errors[type(e).__name__] += 1
                continue
            latencies.append(time.perf_counter() - t0)

    async def sample() -> None:
        while time.perf_counter() < deadline:
            rss.append((time.perf_counter() - started, rss_mb(pid)))
            await asyncio.sleep(1.0)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as http:
        await asyncio.gather(sample(), *(client(i, http) for i in range(clients)))
    elapsed = time.perf_counter() - started
    return {"elapsed_s": elapsed, "requests": len(latencies), "rps": len(latencies) / elapsed,
            "latency_ms": benchlib.percentiles(latencies) if latencies else {},
            "statuses": dict(statuses), "transport_errors": dict(errors), "rss_mb": rss}


def serve(args, dsn: str, opensearch_url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = os.environ | {
        "IMGSEARCH_POSTGRES_DSN": dsn, "IMGSEARCH_OPENSEARCH_URL": opensearch_url,
        "IMGSEARCH_INDEX_PREFIX": args.index_prefix, "IMGSEARCH_SEARCH_BACKEND": "opensearch",
        "IMGSEARCH_REQUESTS_PER_MINUTE": str(args.requests_per_minute),
        "IMGSEARCH_S3_ENDPOINT_URL": "http://127.0.0.1:1",  # searches never read S3
    }
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "imgsearch_pipeline.api.app:app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning", "--no-access-log"],
                            env=env, start_new_session=True)
    if not wait_for_port(port, timeout=120):
        stop_group(proc.pid)
        raise RuntimeError("the API did not start")
    return proc, f"http://127.0.0.1:{port}"


def report(result: dict) -> str:
    run, lat = result["run"], result["run"]["latency_ms"]
    rss = [m for _, m in run["rss_mb"]]
    errors = {s: n for s, n in run["statuses"].items() if int(s) >= 400} | run["transport_errors"]
    lines = [
        f"## Load test: {result['clients']} clients, {result['duration_s']:.0f} s, {result['n']} images "
        f"(OpenSearch backend)", "",
        f"Machine: {benchlib.describe_machine(result['machine'])}",
        f"Load (1/5/15 min): start {result['load_start']}, end {result['load_end']}",
        f"Rate limit for the run: IMGSEARCH_REQUESTS_PER_MINUTE={result['requests_per_minute']} "
        "(the default, 1,200 per client address, would throttle clients sharing 127.0.0.1)", "",
        benchlib.table(["requests", "requests/s", "p50 ms", "p95 ms", "p99 ms", "errors", "RSS start MB",
                        "RSS peak MB", "RSS end MB"],
                       [[run["requests"], run["rps"], lat.get("p50", 0.0), lat.get("p95", 0.0), lat.get("p99", 0.0),
                         sum(errors.values()), rss[0] if rss else 0.0, max(rss, default=0.0),
                         rss[-1] if rss else 0.0]]), "",
        f"Statuses: {dict(sorted(run['statuses'].items()))}; transport errors: {run['transport_errors'] or 'none'}",
        f"Mix: {result['mix']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of measured load")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    parser.add_argument("--n", type=int, default=20_000, help="synthetic images in the dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests-per-minute", type=int, default=10_000_000,
                        help="the API's per-client rate limit for the run (IMGSEARCH_REQUESTS_PER_MINUTE)")
    parser.add_argument("--json", type=Path)
    benchlib.add_server_args(parser, database="imgsearch_bench_load", index_prefix="bench-load")
    args = parser.parse_args(argv)

    servers = benchlib.start_servers(args, log)
    dsn = load_dataset(servers, args)
    mix = query_mix(args.seed)
    kinds = Counter(path for path, _ in mix)
    result: dict = {"clients": args.clients, "duration_s": args.duration, "n": args.n,
                    "requests_per_minute": args.requests_per_minute, "command": " ".join(sys.argv),
                    "mix": {p: f"{100 * n / len(mix):.0f} %" for p, n in kinds.items()}}
    proc, base = serve(args, dsn, servers.opensearch_url)
    try:
        assert httpx.get(f"{base}/search", params={"q": "red dress"}, timeout=120).status_code == 200  # loads MiniLM
        log(f"warm-up {args.warmup:.0f} s ...")
        asyncio.run(run_clients(base, mix, args.clients, args.warmup, proc.pid))
        result["machine"] = benchlib.machine(servers)
        result["load_start"] = benchlib.loadavg()
        log(f"{args.clients} clients for {args.duration:.0f} s (load {result['load_start']}) ...")
        result["run"] = asyncio.run(run_clients(base, mix, args.clients, args.duration, proc.pid))
        result["load_end"] = benchlib.loadavg()
    finally:
        stop_group(proc.pid)
    print(report(result))
    benchlib.write_json(args.json, result)
    errors = sum(n for s, n in result["run"]["statuses"].items() if int(s) >= 400)
    return 1 if errors or result["run"]["transport_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
