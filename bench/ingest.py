"""Ingest throughput: the whole `ingest_partition` run against the analysis step alone, on the same images.

    .venv/bin/python bench/ingest.py --images 400 [--rounds 2] [--json bench/results/ingest.json]

N generated sample images (`imgsearch_pipeline.samples`, 448 px JPEGs) are put under one S3 prefix of the
benchmark's own moto server, so they form one partition (`catalog/bench/all/`). Then, taking turns:

  analysis   the builtin provider's `analyse` over the images' bytes held in memory, in the batches the
             pipeline uses (`AnalysisProviderResource.batch_size`): the model's own time, the physical limit
  pipeline   `ingest_partition` for that partition, `execute_in_process` on a fresh Dagster instance, fresh
             database and index: inventory (S3 list + read + sha256), S3 reads, decoding, analysis, Postgres
             writes, OpenSearch bulk, Dagster's own bookkeeping (events, IO manager)
  again      the same partition run a second time (nothing changed: nothing is analysed): the fixed cost of a run

Both use the same provider instance (one per process), warmed up first. The ratio pipeline / analysis is the
figure the issue sets a target for (<= 1.15). `--profile DIR` records the last pipeline run with pyinstrument
(text, and speedscope JSON) when pyinstrument is installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchlib
from dagster import instance_for_test

from imgsearch_pipeline.config import Settings
from imgsearch_pipeline.definitions import build_definitions
from imgsearch_pipeline.partitions import image_prefixes
from imgsearch_pipeline.resources import AnalysisProviderResource
from imgsearch_pipeline.samples.generator import SampleProduct, feed_jsonl, generate_catalog
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline.storage import s3 as s3x

PARTITION = "catalog/bench/all/"
TARGET_RATIO = 1.15
CPU_COLUMNS = ("wall", "this process", "s3 (moto)", "postgres", "opensearch")


def catalogue(n_images: int, seed: int) -> list[SampleProduct]:
    """Sample products holding `n_images` images in all, every key moved under the one bench partition."""
    products = generate_catalog(n_products=max(1, round(n_images / 2.3)) + 5, seed=seed)
    out, total = [], 0
    for p in products:
        images = p.images[: n_images - total]
        if not images:
            break
        moved = tuple(dataclasses.replace(im, key=f"{PARTITION}{p.product_id}/{k}.jpg")
                      for k, im in enumerate(images, start=1))
        out.append(dataclasses.replace(p, images=moved))
        total += len(moved)
    if total < n_images:
        raise SystemExit(f"generated only {total} images; raise the product count")
    return out


def upload(client, bucket: str, products: list[SampleProduct], feed_key: str) -> None:
    s3x.ensure_bucket(client, bucket)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda im: client.put_object(Bucket=bucket, Key=im.key, Body=im.data),
                      [im for p in products for im in p.images]))
    client.put_object(Bucket=bucket, Key=feed_key, Body=feed_jsonl(products))


def analysis_alone(servers: benchlib.Servers, provider, images: list[bytes], batch_size: int) -> dict:
    with benchlib.CpuMeter(servers) as cpu:
        for i in range(0, len(images), batch_size):
            provider.analyse(images[i:i + batch_size])
    return cpu.seconds


def pipeline_run(servers: benchlib.Servers, settings: Settings, args, profile_to: Path | None) -> dict:
    """One fresh ingest of the partition, then the same run again; seconds and per-step seconds of each."""
    benchlib.delete_indices(servers.opensearch(), settings.index_prefix)
    settings = settings.model_copy(update={"postgres_dsn": servers.recreate_database(args.database)})
    with pg.connect(settings.postgres_dsn) as conn:  # the resource migrates a DSN once per process, not per round
        pg.migrate(conn)
    defs = build_definitions(settings)
    job = defs.resolve_job_def("ingest_partition")
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, instance_for_test(temp_dir=tmp) as instance:
        instance.add_dynamic_partitions(image_prefixes.name, [PARTITION])
        for label in ("first", "again"):
            profiler = None
            if profile_to is not None and label == "first":
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.005)
                profiler.start()
            with benchlib.CpuMeter(servers) as cpu:
                result = job.execute_in_process(partition_key=PARTITION, instance=instance)
            if profiler is not None:
                profiler.stop()
                profile_to.mkdir(parents=True, exist_ok=True)
                (profile_to / "ingest-pipeline.txt").write_text(
                    profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False))
                from pyinstrument.renderers import SpeedscopeRenderer

                (profile_to / "ingest-pipeline.speedscope.json").write_text(profiler.output(SpeedscopeRenderer()))
            if not result.success:
                raise RuntimeError("ingest_partition failed")
            steps = {s.step_key: round(s.end_time - s.start_time, 3)
                     for s in instance.get_run_step_stats(result.run_id) if s.end_time and s.start_time}
            out[label] = {"seconds": cpu.seconds["wall"], "steps": steps, "cpu_s": cpu.seconds}
    return out


def report(result: dict) -> str:
    n = result["images"]
    rows = []
    for i, r in enumerate(result["rounds"], start=1):
        ratio = r["pipeline"]["first"]["seconds"] / r["analysis_s"]
        rows.append((i, r["analysis_s"], n / r["analysis_s"], r["pipeline"]["first"]["seconds"],
                     n / r["pipeline"]["first"]["seconds"], f"{ratio:.2f}x", f"{100 * (ratio - 1):+.0f}%",
                     r["pipeline"]["again"]["seconds"], "met" if ratio <= TARGET_RATIO else "MISSED"))
    lines = [f"## Ingest throughput: {n} images in one partition ({result['image_kb']:.0f} KB JPEG on average)", "",
             f"Machine: {benchlib.describe_machine(result['machine'])}",
             f"Load (1/5/15 min): start {result['load_start']}, end {result['load_end']}", "",
             benchlib.table(["round", "analysis s", "analysis img/s", "pipeline s", "pipeline img/s",
                             "pipeline / analysis", "overhead", "re-run (nothing new) s", f"<= {TARGET_RATIO}x"],
                            rows), "",
             "analysis = the provider's analyse over in-memory bytes in batches of "
             f"{result['batch_size']}; pipeline = ingest_partition (execute_in_process) from S3 to the index.", ""]
    lines += [benchlib.table(["round", "run", *CPU_COLUMNS], [
        (i, label, *(cpu.get(c, "") for c in CPU_COLUMNS))
        for i, r in enumerate(result["rounds"], start=1)
        for label, cpu in (("analysis alone", r["analysis_cpu_s"]), ("pipeline", r["pipeline"]["first"]["cpu_s"]),
                           ("re-run", r["pipeline"]["again"]["cpu_s"]))]), "",
              "Wall and CPU seconds (this process: the benchmark, the Dagster run and the model; the servers: "
              "their CPU over the same interval, Postgres including its finished backends). On 2 cores, CPU the "
              "local servers take is CPU the model does not get.", "",
              "Steps of the pipeline runs (seconds, Dagster's step stats):", ""]
    steps = sorted({k for r in result["rounds"] for k in r["pipeline"]["first"]["steps"]})
    lines.append(benchlib.table(["round", "run", *steps], [
        (i, label, *(r["pipeline"][label]["steps"].get(s, "") for s in steps))
        for i, r in enumerate(result["rounds"], start=1) for label in ("first", "again")]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2, help="analysis and pipeline take turns this many times")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--bucket", default="bench-ingest")
    parser.add_argument("--profile", type=Path, help="write a pyinstrument profile of the last pipeline run here")
    parser.add_argument("--json", type=Path)
    benchlib.add_server_args(parser, "imgsearch_bench_ingest", "bench-ingest")
    args = parser.parse_args(argv)

    log = benchlib.log

    servers = benchlib.start_servers(args, log)
    s3_url = benchlib.start_s3(args)
    result: dict = {"images": args.images, "load_start": benchlib.loadavg(), "machine": benchlib.machine(servers),
                    "command": " ".join(sys.argv), "rounds": []}
    log(f"generating {args.images} sample images ...")
    products = catalogue(args.images, args.seed)
    images = [im.data for p in products for im in p.images]
    result["image_kb"] = sum(map(len, images)) / len(images) / 1024
    settings = Settings(postgres_dsn=servers.dsn(args.database), s3_endpoint_url=s3_url, s3_bucket=args.bucket,
                        opensearch_url=servers.opensearch_url, index_prefix=args.index_prefix)
    resources = build_definitions(settings).resources
    upload(resources["images"].client(), args.bucket, products, resources["images"].feed_key)
    analysis: AnalysisProviderResource = resources["analysis"]
    provider = analysis.get()  # the instance the job's resource returns too (one per process and options)
    result["batch_size"] = analysis.batch_size
    log("warming up the models ...")
    provider.analyse(images[: analysis.batch_size])
    for i in range(args.rounds):
        log(f"round {i + 1}: analysis alone (load {benchlib.loadavg()}) ...")
        alone = analysis_alone(servers, provider, images, analysis.batch_size)
        spent = alone["wall"]
        log(f"round {i + 1}: {len(images) / spent:.1f} img/s; pipeline ...")
        last = i == args.rounds - 1
        run = pipeline_run(servers, settings, args, args.profile if last else None)
        log(f"round {i + 1}: pipeline {len(images) / run['first']['seconds']:.1f} img/s, "
            f"ratio {run['first']['seconds'] / spent:.2f}, load {benchlib.loadavg()}")
        result["rounds"].append({"analysis_s": spent, "analysis_cpu_s": alone, "pipeline": run,
                                 "load": benchlib.loadavg()})
    result["load_end"] = benchlib.loadavg()
    print(report(result))
    benchlib.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
