"""`imgsearch stack up | down | status`: the three local servers, one state folder, idempotent.

`up` starts what is not running and writes `<state>/stack.json` with the settings every other process reads
(see `imgsearch_pipeline.config`). `down` stops everything it started. Data persists in the state folder,
except S3 objects (moto keeps them in memory): `imgsearch demo` re-uploads the sample catalogue.
"""

from __future__ import annotations

import json
from pathlib import Path

from imgsearch_pipeline import config
from imgsearch_pipeline.stack import postgres, s3
from imgsearch_pipeline.stack.opensearch import OpenSearchNode, ensure_installed


def _node(state: Path) -> OpenSearchNode:
    return OpenSearchNode(home=ensure_installed(config.cache_dir()), state_dir=state / "opensearch")


def up(state: Path | None = None, log=print) -> config.Settings:
    state = state or config.state_dir()
    state.mkdir(parents=True, exist_ok=True)
    log(f"state folder: {state}")
    dsn = postgres.start(state / "postgres")
    log(f"postgres   {dsn}")
    s3_url = s3.start(state)
    log(f"s3 (moto)  {s3_url}")
    os_url = _node(state).start()
    log(f"opensearch {os_url}")
    settings = config.Settings(postgres_dsn=dsn, s3_endpoint_url=s3_url, opensearch_url=os_url)
    (state / config.STACK_FILE).write_text(json.dumps({"settings": settings.model_dump(mode="json")}, indent=2))
    return settings


def down(state: Path | None = None, log=print) -> None:
    state = state or config.state_dir()
    if (state / "opensearch").exists():
        OpenSearchNode(home=None, state_dir=state / "opensearch").stop()
        log("opensearch stopped")
    s3.stop(state)
    log("s3 stopped")
    postgres.stop(state / "postgres")
    log("postgres stopped")
    (state / config.STACK_FILE).unlink(missing_ok=True)


def status(state: Path | None = None) -> dict[str, bool]:
    state = state or config.state_dir()
    node = OpenSearchNode(home=None, state_dir=state / "opensearch")
    return {
        "postgres": postgres.is_running(state / "postgres"),
        "s3": s3.is_running(state),
        "opensearch": node.is_running(),
    }
