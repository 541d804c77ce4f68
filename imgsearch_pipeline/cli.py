"""The `imgsearch` command: local stack, demo, ingest, parse, search, eval, serve."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from imgsearch_pipeline import config


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def cmd_stack(args) -> int:
    from imgsearch_pipeline.stack import manager

    if args.action == "up":
        manager.up()
    elif args.action == "down":
        manager.down()
    else:
        status = manager.status()
        for name, running in status.items():
            print(f"{name:11s}{'running' if running else 'stopped'}")
        return 0 if all(status.values()) else 3
    return 0


def cmd_parse(args) -> int:
    from imgsearch_pipeline.search.parser import QueryTooLong, parse_query

    try:
        plan = parse_query(args.query)
    except QueryTooLong as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        _print_json(plan.model_dump())
    else:
        from imgsearch_pipeline.search.parser import plan_summary

        print(plan_summary(plan))
    return 0


def _defs():
    from imgsearch_pipeline.definitions import build_definitions

    return build_definitions(config.load_settings())


def cmd_search(args) -> int:
    from imgsearch_pipeline.search.parser import QueryTooLong

    search = _defs().resources["search"]
    try:
        response = search.search(args.query, size=args.size)
    except QueryTooLong as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        _print_json(response.model_dump(exclude={"hits": {"__all__": {"attributes": {"description"}}}}))
    else:
        print(f"{response.total_products} products match; top {len(response.hits)}:")
        for hit in response.hits:
            a = hit.attributes
            print(f"  {hit.score:.4f} {hit.product_id:12s} {a.category or '?':12s} {','.join(a.colors):18s} "
                  f"{a.pattern or '?':10s} {hit.s3_key}")
    return 0


def _instance_env() -> dict[str, str]:
    from imgsearch_pipeline.stack.dagster_home import dagster_env

    settings = config.load_settings()
    return dagster_env(config.state_dir(), settings.require("postgres_dsn"))


# Runs are recorded in the instance (and visible in the UI); the terminal shows one line per partition.
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def ingest(partitions: list[str] | None, log=print) -> list[str]:
    """Register the catalogue's prefixes as partitions and materialize them (all, or those given)."""
    from dagster import DagsterInstance

    from imgsearch_pipeline.partitions import image_prefixes
    from imgsearch_pipeline.stack.dagster_home import apply
    from imgsearch_pipeline.storage.s3 import list_objects

    apply(_instance_env())
    defs = _defs()
    images = defs.resources["images"]
    if not partitions:
        keys = (o.key for o in list_objects(images.client(), images.bucket, images.root_prefix))
        partitions = sorted({p for k in keys if (p := images.partition_of(k))})
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions(image_prefixes.name, partitions)
    job = defs.resolve_job_def("ingest_partition")
    for part in partitions:
        started = time.perf_counter()
        result = job.execute_in_process(partition_key=part, instance=instance, raise_on_error=True,
                                        run_config=_QUIET)
        log(f"  {part:40s} {'ok' if result.success else 'FAILED'} in {time.perf_counter() - started:.1f}s")
    return partitions


def cmd_ingest(args) -> int:
    ingest(args.partition)
    return 0


def cmd_failures(args) -> int:
    from imgsearch_pipeline.storage import postgres as pg

    postgres = _defs().resources["postgres"]
    if args.action == "list":
        with postgres.connect() as conn:
            rows = pg.list_failures(conn, args.partition)
        if args.json:
            _print_json(rows)
        else:
            print(f"{len(rows)} failed images")
            for r in rows:
                kind = "retryable" if r["retryable"] else "permanent"
                print(f"  {r['image_id']:>8} {kind:9s} x{r['attempts']:<3} {r['s3_key']}: {r['error']}")
        return 0
    with postgres.connect() as conn:
        partitions = pg.release_failures(conn, args.partition)
    if not partitions:
        print("nothing to replay")
        return 0
    print(f"replaying failures in {len(partitions)} partitions")
    ingest(partitions)
    return 0


def cmd_rebuild(args) -> int:
    from dagster import DagsterInstance

    from imgsearch_pipeline.stack.dagster_home import apply

    apply(_instance_env())
    result = _defs().resolve_job_def("rebuild_index_job").execute_in_process(instance=DagsterInstance.get())
    return 0 if result.success else 1


def cmd_demo(args) -> int:
    from imgsearch_pipeline.demo import partitions_of, upload_catalog
    from imgsearch_pipeline.samples.generator import generate_catalog
    from imgsearch_pipeline.stack import manager

    print("== starting the local stack")
    manager.up()
    defs = _defs()
    images = defs.resources["images"]
    print(f"== generating {args.products} sample products and uploading them to s3://{images.bucket}")
    products = generate_catalog(n_products=args.products, seed=args.seed)
    n = upload_catalog(images.client(), images.bucket, products, images.feed_key)
    print(f"   {n} images in {len(products)} products")
    print("== materializing every partition (inventory -> analysis -> index)")
    ingest(partitions_of(products, images.partition_of))
    query = "green t shirt with no prints"
    print(f'== search: "{query}"')
    cmd_search(argparse.Namespace(query=query, size=10, json=False))
    if args.no_serve:
        return 0
    return serve_all(args.ui_port, args.api_port)


def cmd_eval(args) -> int:
    from imgsearch_pipeline.evaluation.runner import format_report, run_eval

    try:
        report = run_eval(config.load_settings(), args.dataset, args.queries, limit=args.limit,
                          backend=args.backend, reuse=args.reuse, shards=args.shards)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        _print_json(report)
    else:
        print(format_report(report))
    return 0


def serve_all(ui_port: int, api_port: int) -> int:
    """Dagster UI + daemon and the search API, each in its own process group, until Ctrl-C."""
    from imgsearch_pipeline.stack.dagster_home import REPO_ROOT
    from imgsearch_pipeline.stack.process import stop_group, wait_for_port

    env = os.environ | _instance_env() | {"IMGSEARCH_SEARCH_URL": f"http://127.0.0.1:{api_port}/"}
    bindir = Path(sys.executable).parent
    procs = [
        subprocess.Popen([str(bindir / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
                          "-p", str(ui_port)], cwd=REPO_ROOT, env=env, start_new_session=True),
        subprocess.Popen([sys.executable, "-m", "uvicorn", "imgsearch_pipeline.api.app:app", "--host",
                          "127.0.0.1", "--port", str(api_port)], env=env, start_new_session=True),
    ]
    try:
        for port in (api_port, ui_port):
            if not wait_for_port(port, timeout=120):
                raise RuntimeError(f"nothing listens on port {port}; see the output above")
        print(f"\n  Dagster UI:   http://127.0.0.1:{ui_port}\n  Search page:  http://127.0.0.1:{api_port}/\n"
              "  Ctrl-C stops both (the stack keeps running: `imgsearch stack down`).", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            stop_group(p.pid)


def cmd_serve(args) -> int:
    if args.ui:
        return serve_all(args.ui_port, args.port)
    import uvicorn

    uvicorn.run("imgsearch_pipeline.api.app:app", host=args.host, port=args.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imgsearch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="start, stop or inspect the local servers")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("demo", help="stack up, sample catalogue, materialize all, serve UI and search page")
    p.add_argument("--no-serve", action="store_true", help="stop after materializing (a smoke test)")
    p.add_argument("--products", type=int, default=60)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--ui-port", type=int, default=3000)
    p.add_argument("--api-port", type=int, default=8000)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ingest", help="materialize partitions (default: every prefix in the bucket)")
    p.add_argument("--partition", action="append", help="an S3 prefix partition; repeatable")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("failures", help="list images that could not be analysed, or replay them")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument("--partition", help="only this S3 prefix partition")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_failures)

    p = sub.add_parser("rebuild-index", help="rebuild the OpenSearch index from Postgres (no model call)")
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser("parse", help="show how a query is understood")
    p.add_argument("query")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("search", help="run a search")
    p.add_argument("query")
    p.add_argument("--size", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("eval", help="ingest a labelled image set into its own stores and score the search on it")
    p.add_argument("--dataset", type=Path, required=True, help="folder with labels.csv and images/")
    p.add_argument("--queries", type=Path, required=True, help="JSON lines: id, query, must, must_not")
    p.add_argument("--limit", type=int, help="ingest only this many images (a deterministic subset)")
    p.add_argument("--backend", choices=["opensearch", "postgres"], default="opensearch")
    p.add_argument("--reuse", action="store_true", help="skip ingest when the eval database already holds the set")
    p.add_argument("--shards", type=int, default=16, help="partitions the set is ingested in (changing it re-ingests)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("serve", help="serve the search API and page (with --ui: and the Dagster UI + daemon)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--ui", action="store_true", help="also run `dagster dev` (UI, daemon, sensors)")
    p.add_argument("--ui-port", type=int, default=3000)
    p.set_defaults(func=cmd_serve)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
