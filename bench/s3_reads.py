"""What one S3 read costs in CPU on this machine: the local server's share and boto3's, side by side.

    .venv/bin/python bench/s3_reads.py [--gets 1000] [--kb 15] [--rounds 3] [--json bench/results/s3-reads.json]

Two local servers on free ports, started and stopped here: moto's own (`python -m moto.server`) and the stack's
launcher (`python -m imgsearch_pipeline.stack.s3`: the same moto application, the service of a host name
remembered, no access log). In each round, on each server in turn: --gets GETs of 200 objects of --kb KB, from
8 threads as the analysis step reads (`analysis/batch.py`), then from one thread. Printed per 1,000 GETs: the
server's CPU seconds, the client's (this process: boto3 `get_object` through `storage.s3.make_client`), and the
client's CPU for presigning as many URLs and for GETting them with a plain urllib3 pool (one thread): what a
read without `get_object`'s machinery would cost.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchlib
import urllib3

from imgsearch_pipeline.stack.process import free_port, stop_group, wait_for_port
from imgsearch_pipeline.storage.s3 import make_client

SERVERS = {"moto.server": ["-m", "moto.server", "-H", "127.0.0.1", "-p"],
           "stack launcher": ["-m", "imgsearch_pipeline.stack.s3", "--port"]}
BUCKET = "bench-reads"
OBJECTS = 200


def measure(server: str, args) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, *SERVERS[server], str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if not wait_for_port(port, timeout=30):
            raise RuntimeError(f"{server} did not start")
        client = make_client(f"http://127.0.0.1:{port}")
        client.create_bucket(Bucket=BUCKET)
        body = os.urandom(args.kb * 1024)
        for i in range(OBJECTS):
            client.put_object(Bucket=BUCKET, Key=f"k{i}", Body=body)

        def get(i: int) -> int:
            return len(client.get_object(Bucket=BUCKET, Key=f"k{i % OBJECTS}")["Body"].read())

        out = {}
        for label, threads in (("8 threads", 8), ("1 thread", 1)):
            server_cpu, client_cpu = benchlib.cpu_seconds(proc.pid), time.process_time()
            wall = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                assert sum(pool.map(get, range(args.gets))) == args.gets * len(body)
            per = 1000 / args.gets
            out[label] = {"wall": (time.perf_counter() - wall) * per,
                          "server": (benchlib.cpu_seconds(proc.pid) - server_cpu) * per,
                          "client": (time.process_time() - client_cpu) * per}
        presign = time.process_time()
        urls = [client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": f"k{i % OBJECTS}"})
                for i in range(args.gets)]
        out["presign"] = (time.process_time() - presign) * 1000 / args.gets
        # The same GETs through those URLs and one urllib3 pool (one thread): what a read would cost the client
        # without get_object's machinery (retries and error mapping left out here).
        http = urllib3.PoolManager(maxsize=8)
        client_cpu, wall = time.process_time(), time.perf_counter()
        assert sum(len(http.request("GET", url).data) for url in urls) == args.gets * len(body)
        out["urllib3"] = {"wall": (time.perf_counter() - wall) * 1000 / args.gets,
                          "client": (time.process_time() - client_cpu) * 1000 / args.gets}
        return out
    finally:
        stop_group(proc.pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gets", type=int, default=1000)
    parser.add_argument("--kb", type=int, default=15, help="object size (the sample JPEGs average 15 KB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result: dict = {"gets": args.gets, "kb": args.kb, "load_start": benchlib.loadavg(), "machine": benchlib.machine(),
                    "rounds": []}
    for n in range(args.rounds):
        result["rounds"].append({server: measure(server, args) for server in SERVERS})
        benchlib.log(f"round {n + 1}/{args.rounds}, load {benchlib.loadavg()}")
    result["load_end"] = benchlib.loadavg()
    rows = [(n, server, label, r[server][label]["server"], r[server][label]["client"], r[server][label]["wall"],
             r[server]["presign"], r[server]["urllib3"]["client"])
            for n, r in enumerate(result["rounds"], start=1) for server in SERVERS
            for label in ("8 threads", "1 thread")]
    print(f"## S3 reads: CPU per 1,000 GETs of {args.kb} KB\n\n"
          f"Machine: {benchlib.describe_machine(result['machine'])}\n"
          f"Load (1/5/15 min): start {result['load_start']}, end {result['load_end']}\n")
    print(benchlib.table(["round", "server", "client threads", "server CPU s", "client CPU s (boto3)", "wall s",
                          "presign client CPU s", "presigned GET via urllib3, client CPU s"], rows))
    benchlib.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
