"""Memory of a worker: peak RSS of a process running `ingest_partition` over one partition, at two sizes.

    .venv/bin/python bench/memory.py --sizes 500,5000 [--json bench/results/memory.json]

For each size a fresh child process (the worker) ingests one partition of that many images
(`catalog/bench/mem<N>/`, its own database and index) in process: inventory, analysis (the
image_attributes + image_embeddings frames through the IO manager), Postgres, OpenSearch. The child reports
its RSS after the models are loaded (before the run) and its peak RSS (getrusage ru_maxrss); the growth per
image between the two sizes is what a partition's size costs. Streaming means that growth is small: the
bytes of a batch, not of the partition, are in memory at a time.

The images are a few hundred generated sample JPEGs (448 px, ~15 KB) repeated under distinct keys (products
come from the key pattern, no feed): the analysis and the writes do the same work per key whatever the bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchlib

from imgsearch_pipeline.storage import s3 as s3x

DISTINCT = 240  # distinct generated images, repeated under new keys


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(partition: str) -> dict:
    """Run in the worker (settings from IMGSEARCH_* variables): load the models, then run the partition as a
    deployed run does (execute_job, in-process executor: no step output is kept in memory by Dagster)."""
    from dagster import execute_job, instance_for_test
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from imgsearch_pipeline.definitions import defs
    from imgsearch_pipeline.partitions import image_prefixes
    from imgsearch_pipeline.samples.generator import generate_catalog

    sample = generate_catalog(n_products=2, seed=1)[0].images[0].data
    defs.resources["analysis"].get().analyse([sample])  # models loaded, as in a warm worker
    before = rss_mb()
    job = ReconstructableRepository.for_module("imgsearch_pipeline.definitions", "defs").get_reconstructable_job(
        "ingest_partition")
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            samples.append((time.time(), rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp, instance_for_test(temp_dir=tmp) as instance:
        instance.add_dynamic_partitions(image_prefixes.name, [partition])
        sampler.start()
        with benchlib.Timer() as t, execute_job(job, instance, run_config={"execution": {"config": {"in_process": {}}}},
                                                tags={"dagster/partition": partition}) as result:
            ok, run_id = result.success, result.run_id
        done.set()
        sampler.join()
        steps = {s.step_key: max((rss for at, rss in samples if s.start_time <= at <= s.end_time), default=None)
                 for s in instance.get_run_step_stats(run_id) if s.start_time and s.end_time}
    return {"ok": ok, "rss_before_mb": before, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": t.seconds, "step_peak_rss_mb": steps}


def upload(client, bucket: str, partition: str, n: int, images: list[bytes]) -> None:
    """n keys under the partition, 3 per product (key pattern catalog/<dept>/<cat>/<product>/<n>.jpg)."""
    keys = [f"{partition}p{i // 3:05d}/{i % 3 + 1}.jpg" for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda ik: client.put_object(Bucket=bucket, Key=ik[1], Body=images[ik[0] % len(images)]),
                      enumerate(keys)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="500,5000", help="images per partition, one worker each")
    parser.add_argument("--bucket", default="bench-memory")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a partition: run as the worker
    benchlib.add_server_args(parser, "imgsearch_bench_memory", "bench-memory")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0

    log = benchlib.log

    servers = benchlib.start_servers(args, log)
    s3_url = benchlib.start_s3(args)
    client = s3x.make_client(s3_url)
    s3x.ensure_bucket(client, args.bucket)
    from imgsearch_pipeline.samples.generator import generate_catalog

    images = [im.data for p in generate_catalog(n_products=DISTINCT // 2, seed=5) for im in p.images][:DISTINCT]
    result: dict = {"load_start": benchlib.loadavg(), "machine": benchlib.machine(servers),
                    "command": " ".join(sys.argv), "image_kb": sum(map(len, images)) / len(images) / 1024, "runs": []}
    for n in sorted(int(s) for s in args.sizes.split(",")):
        partition = f"catalog/bench/mem{n}/"
        upload(client, args.bucket, partition, n, images)
        benchlib.delete_indices(servers.opensearch(), args.index_prefix)
        env = os.environ | {"IMGSEARCH_POSTGRES_DSN": servers.recreate_database(args.database),
                            "IMGSEARCH_S3_ENDPOINT_URL": s3_url, "IMGSEARCH_S3_BUCKET": args.bucket,
                            "IMGSEARCH_OPENSEARCH_URL": servers.opensearch_url,
                            "IMGSEARCH_INDEX_PREFIX": args.index_prefix}
        log(f"worker: {n} images (load {benchlib.loadavg()}) ...")
        out = subprocess.run([sys.executable, __file__, "--child", partition], capture_output=True, text=True,
                             check=False, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"worker failed:\n{out.stderr[-4000:]}")
        run = json.loads(out.stdout.strip().splitlines()[-1]) | {"images": n}
        if not run["ok"]:
            raise RuntimeError("ingest_partition failed in the worker")
        log(f"  peak RSS {run['peak_rss_mb']:.0f} MB (after model load {run['rss_before_mb']:.0f} MB), "
            f"{run['seconds']:.0f} s")
        result["runs"].append(run)
    result["load_end"] = benchlib.loadavg()
    runs = result["runs"]
    rows = [(r["images"], r["rss_before_mb"], r["peak_rss_mb"], r["peak_rss_mb"] - r["rss_before_mb"], r["seconds"])
            for r in runs]
    step_names = [k for k in runs[0]["step_peak_rss_mb"] if "_" in k and not k.startswith("image_analysis_")]
    lines = [f"## Worker memory: one partition per worker process ({result['image_kb']:.0f} KB JPEGs)", "",
             f"Machine: {benchlib.describe_machine(result['machine'])}",
             f"Load (1/5/15 min): start {result['load_start']}, end {result['load_end']}", "",
             benchlib.table(["images", "RSS after model load MB", "peak RSS MB", "growth MB", "run s"], rows), "",
             "Peak RSS (MB) while each step ran (sampled every 50 ms):", "",
             benchlib.table(["images", *step_names], [(r["images"], *(r["step_peak_rss_mb"].get(k) or 0.0
                                                                     for k in step_names)) for r in runs])]
    if len(runs) > 1:
        a, b = runs[0], runs[-1]
        per = (b["peak_rss_mb"] - a["peak_rss_mb"]) / (b["images"] - a["images"]) * 1024
        result["kb_per_image"] = per
        lines += ["", f"Peak RSS grows by {per:.1f} KB per image of the partition "
                      f"({a['images']} -> {b['images']} images)."]
    print("\n".join(lines) + "\n")
    benchlib.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
