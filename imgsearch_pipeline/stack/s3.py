"""A local S3 endpoint: moto's server on 127.0.0.1, run as its own process so it outlives the CLI call.

`python -m imgsearch_pipeline.stack.s3 --port N` is moto's own server (`moto.server`: every service on one
port, so S3 can notify SQS) with two costs of each request taken away. moto's dispatcher finds the service of a
request's host by listing its package folder and trying a few hundred URL patterns, every time; here the answer
is remembered per host. And no access-log line is written. Together they nearly halve the server's CPU per
GET (1.8-2.0 -> 1.0-1.1 ms for 15 KB, `bench/s3_reads.py`), CPU taken from the model's cores during a run.
"""

from __future__ import annotations

import argparse
import functools
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
        [sys.executable, "-m", "imgsearch_pipeline.stack.s3", "--port", str(port)],
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


def serve(port: int) -> None:
    """moto's server on 127.0.0.1:`port` until terminated (what `moto.server.main` runs, see the docstring)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    class Dispatcher(DomainDispatcherApplication):
        @functools.lru_cache(maxsize=1024)  # noqa: B019 - one instance, alive as long as the process
        def get_backend_for_host(self, host: str | None):
            return super().get_backend_for_host(host)

    class Handler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    run_simple("127.0.0.1", port, Dispatcher(create_backend_app), threaded=True, request_handler=Handler)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="moto's S3 (and SQS) server on 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)
