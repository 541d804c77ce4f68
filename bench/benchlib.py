"""Plumbing shared by the benchmarks: a dedicated local stack, the machine's description, statistics, tables.

By default every benchmark runs against its own servers, started with the project's stack modules in a state
folder of its own (`.state/bench`), in a database and under an index prefix of its own, so a developer's stack
(`imgsearch stack up`, in `.state`) is never touched. `--use-settings` uses the servers of
`imgsearch_pipeline.config.load_settings()` instead (the developer's stack or the IMGSEARCH_* variables), still
with the benchmark's own database and index prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import numpy as np
import psycopg
from opensearchpy import OpenSearch

from imgsearch_pipeline import config
from imgsearch_pipeline.storage import opensearch as osx

DEFAULT_STATE = Path(".state/bench")


# Servers ---------------------------------------------------------------------------------------------------


def add_server_args(parser: argparse.ArgumentParser, database: str, index_prefix: str) -> None:
    group = parser.add_argument_group("servers")
    group.add_argument("--state", type=Path, default=DEFAULT_STATE,
                       help="state folder of the benchmark's own Postgres and OpenSearch (started when not running)")
    group.add_argument("--use-settings", action="store_true",
                       help="use the servers of the project's settings (IMGSEARCH_* or `imgsearch stack up`) instead")
    group.add_argument("--heap-mb", type=int, default=512,
                       help="OpenSearch heap when the benchmark starts its node (the project's stack uses 512)")
    group.add_argument("--database", default=database, help="dedicated database (dropped and recreated)")
    group.add_argument("--index-prefix", default=index_prefix, help="dedicated OpenSearch alias / index prefix")


@dataclass
class Servers:
    admin_dsn: str  # a database to run CREATE / DROP DATABASE from
    opensearch_url: str
    state: Path | None
    started: list[str] = field(default_factory=list)

    def dsn(self, database: str) -> str:
        url = urlparse(self.admin_dsn)
        return urlunparse(url._replace(path=f"/{database}"))

    def recreate_database(self, database: str) -> str:
        """Drop and create `database`; returns its DSN."""
        _check_name(database)
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
        return self.dsn(database)

    def ensure_database(self, database: str) -> str:
        _check_name(database)
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
                conn.execute(f'CREATE DATABASE "{database}"')
        return self.dsn(database)

    def opensearch(self, timeout: int = 120) -> OpenSearch:
        return osx.make_client(self.opensearch_url, timeout=timeout)


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"database name {name!r}: lower-case letters, digits and underscores only")


def start_servers(args: argparse.Namespace, log=print) -> Servers:
    """The servers to benchmark: the project's settings, or the benchmark's own stack in `args.state`."""
    if args.use_settings:
        settings = config.load_settings()
        return Servers(settings.require("postgres_dsn"), settings.require("opensearch_url"), None)
    from imgsearch_pipeline.stack import postgres
    from imgsearch_pipeline.stack.opensearch import OpenSearchNode, ensure_installed

    state = args.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    started = []
    if not postgres.is_running(state / "postgres"):
        started.append("postgres")
    dsn = postgres.start(state / "postgres")
    node = OpenSearchNode(home=None, state_dir=state / "opensearch", heap_mb=args.heap_mb)
    if not node.is_running():
        node.home = ensure_installed(config.cache_dir())
        started.append("opensearch")
    url = node.start()
    if started:
        log(f"started {', '.join(started)} in {state}")
    return Servers(dsn, url, state, started)


def start_s3(args: argparse.Namespace) -> str:
    """An S3 endpoint for the benchmarks that read images: the project's settings, or moto in `args.state`."""
    if args.use_settings:
        return config.load_settings().require("s3_endpoint_url")
    from imgsearch_pipeline.stack import s3

    return s3.start(args.state.resolve())


def stop_servers(state: Path) -> None:
    """Stop the benchmark's own servers (only those of `state`)."""
    from imgsearch_pipeline.stack import postgres, s3
    from imgsearch_pipeline.stack.opensearch import OpenSearchNode

    OpenSearchNode(home=None, state_dir=state.resolve() / "opensearch").stop()
    postgres.stop(state.resolve() / "postgres")
    s3.stop(state.resolve())


def delete_indices(client: OpenSearch, prefix: str) -> None:
    """Every index of the benchmark's prefix, and its alias."""
    names = client.indices.get(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
    for name in names:
        client.indices.delete(index=name, ignore_unavailable=True)


def wait_for_merges(client: OpenSearch, index: str, timeout: float = 600.0) -> float:
    """Wait until no merge runs on `index` (a merge competes with the benchmark for the CPU); returns seconds."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        stats = client.indices.stats(index=index, metric="merge")
        if stats["_all"]["primaries"]["merges"]["current"] == 0:
            break
        time.sleep(1.0)
    return time.perf_counter() - started


def segment_count(client: OpenSearch, index: str) -> int:
    stats = client.indices.stats(index=index, metric="segments")
    return stats["_all"]["primaries"]["segments"]["count"]


def server_pids(state: Path | None) -> dict[str, int]:
    """Process ids of the benchmark's own servers in `state` (none with --use-settings)."""
    if state is None:
        return {}
    from imgsearch_pipeline.stack.opensearch import OpenSearchNode
    from imgsearch_pipeline.stack.process import read_pid

    pids = {"opensearch": OpenSearchNode(home=None, state_dir=state / "opensearch").pid(),
            "s3 (moto)": read_pid(state / "s3.pid")}
    with contextlib.suppress(OSError, ValueError, IndexError):
        pids["postgres"] = int((state / "postgres" / "postmaster.pid").read_text().split()[0])
    return {k: v for k, v in pids.items() if v}


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children that have exited (Postgres backends after their connection)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent by this process and by each server during a `with` block (its wall time too)."""

    def __init__(self, servers: Servers) -> None:
        self.pids = server_pids(servers.state)

    def __enter__(self) -> CpuMeter:
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.self_start = time.process_time()
        self.wall_start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = {"wall": time.perf_counter() - self.wall_start,
                        "this process": time.process_time() - self.self_start}
        self.seconds |= {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}


# The machine -----------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    """Progress on stderr, time-stamped: stdout holds the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, value = line.split(":", 1)
            out[name] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(servers: Servers | None = None) -> dict:
    """Cores, RAM, load and the server versions: what a reader needs to compare figures between machines."""
    mem = _meminfo()
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(mem.get("MemTotal", 0) / 2**30, 1),
        "ram_available_gb": round(mem.get("MemAvailable", 0) / 2**30, 1),
        "load": loadavg(),
        "python": platform.python_version(),
    }
    if servers is not None:
        with psycopg.connect(servers.admin_dsn) as conn:
            info["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
            row = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
            info["pgvector"] = row[0] if row else None
            info["pg_settings"] = {s: conn.execute(f"SHOW {s}").fetchone()[0] for s in
                                   ("shared_buffers", "maintenance_work_mem", "synchronous_commit")}
        client = servers.opensearch()
        info["opensearch"] = client.info()["version"]["number"]
        jvm = next(iter(client.nodes.stats(metric="jvm")["nodes"].values()))["jvm"]["mem"]
        info["opensearch_heap_mb"] = round(jvm["heap_max_in_bytes"] / 2**20)
    return info


def describe_machine(info: dict) -> str:
    text = f"{info['cores']} cores ({info['cpu']}), {info['ram_gb']} GB RAM ({info['ram_available_gb']} GB available)"
    if "postgres" in info:
        text += (f"; PostgreSQL {info['postgres']} + pgvector {info['pgvector']} "
                 f"({', '.join(f'{k}={v}' for k, v in info['pg_settings'].items())}); "
                 f"OpenSearch {info['opensearch']} (heap {info['opensearch_heap_mb']} MB)")
    return text


# Statistics and output ---------------------------------------------------------------------------------------


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / p99 / mean in milliseconds."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(ms.mean()), "n": int(ms.size)}


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table (also readable as plain text)."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path | None, data: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")


class Timer:
    """`with Timer() as t: ...; t.seconds`."""

    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started
