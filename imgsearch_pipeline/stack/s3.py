"""A local S3 endpoint: moto's server on 127.0.0.1, run as its own process so it outlives the CLI call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from imgsearch_pipeline.stack.process import free_port, read_pid, stop_group, wait_for_port

PID_FILE = "s3.pid"


def start(state: Path) -> str:
    """Start moto (or reuse the running one); returns its endpoint URL."""
    state.mkdir(parents=True, exist_ok=True)
    url_file = state / "s3.url"
    if read_pid(state / PID_FILE) and url_file.exists():
        return url_file.read_text().strip()
    port = free_port()
    log = (state / "s3.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    if not wait_for_port(port, timeout=30):
        stop_group(proc.pid)
        raise RuntimeError(f"moto S3 server did not start; see {state / 's3.log'}")
    (state / PID_FILE).write_text(str(proc.pid))
    url = f"http://127.0.0.1:{port}"
    url_file.write_text(url)
    return url


def is_running(state: Path) -> bool:
    return read_pid(state / PID_FILE) is not None


def stop(state: Path) -> None:
    pid = read_pid(state / PID_FILE)
    if pid:
        stop_group(pid)
    (state / PID_FILE).unlink(missing_ok=True)
    (state / "s3.url").unlink(missing_ok=True)
