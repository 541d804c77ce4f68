"""PNG charts of the benchmarks' JSON results (needs matplotlib, which the project does not depend on).

    python bench/plots.py --writes bench/results/writes-100k.json --search bench/results/search-scaling.json \\
        --ingest bench/results/ingest.json --memory bench/results/memory.json --out docs/plots

Reads only the JSON files that the benchmarks write with `--json`, so it runs
in any Python that has matplotlib and numpy (the project's own modules are not imported).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CLASSES = ("filter-heavy", "negation", "residual-text", "pure-semantic")


def _save(fig, path: Path) -> Path:
    """Write the figure and let pyplot forget it (it keeps every open figure until closed)."""
    from matplotlib import pyplot

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
    return path


def plot_writes(data: dict, out: Path, plt) -> list[Path]:
    made = []
    pgr = data["postgres"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in pgr.items():
        if not isinstance(r, dict) or "block_seconds" not in r:
            continue
        secs = r["block_seconds"]
        rows = [1000 * (i + 1) for i in range(len(secs))]
        ax.plot(rows, [1000 / s for s in secs], label=name, linewidth=1)
    ax.axhline(5000, color="grey", linestyle="--", linewidth=0.8, label="target 5,000/s")
    ax.set_yscale("log")
    ax.set_xlabel("rows already in image_analysis")
    ax.set_ylabel("docs/s (per 1,000-row batch)")
    ax.set_title(f"Postgres writes, {data['n']} analyses (load {data['load_start']})", fontsize=9)
    ax.legend(fontsize=7)
    made.append(_save(fig, out / "writes-postgres.png"))

    osr = data["opensearch"]
    labels = [k for k, v in osr.items() if k != "breakdown" and isinstance(v, dict)]
    labels += [f"breakdown: {k}" for k in osr.get("breakdown", {})]
    values = [osr[k]["docs_s"] for k in labels if not k.startswith("breakdown: ")]
    values += [v["docs_s"] for v in osr.get("breakdown", {}).values()]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1))
    ax.barh(range(len(labels)), values, color="#4a7ab0")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(5000, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("docs/s (log)")
    ax.set_title("OpenSearch indexing (dashed: target 5,000/s)", fontsize=9)
    made.append(_save(fig, out / "writes-opensearch.png"))
    return made


def plot_search(data: dict, out: Path, plt) -> list[Path]:
    made = []
    runs = data["runs"]
    last = runs[-1]
    fig, axes = plt.subplots(1, len(data["backends"]), figsize=(5 * len(data["backends"]), 3.6), squeeze=False)
    for ax, backend in zip(axes[0], data["backends"], strict=True):
        kinds = [k for k in ("e2e", "hybrid", "serial", "bare") if f"{backend}|{k}|all" in last["latency"]]
        width = 0.8 / len(kinds)
        for i, kind in enumerate(kinds):
            p95 = [last["latency"][f"{backend}|{kind}|{c}"]["p95"] for c in CLASSES]
            ax.bar([x + i * width for x in range(len(CLASSES))], p95, width, label=kind)
        ax.axhline(50, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(CLASSES))], CLASSES, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("p95 ms (log)")
        ax.set_title(f"{backend}, {last['size']} images (dashed: 50 ms)", fontsize=9)
        ax.legend(fontsize=7)
    made.append(_save(fig, out / "search-p95.png"))

    if len(runs) > 1 and all("postgres_load_s" in r["load"] for r in runs):
        # Ingest (write) time by size: the dataset grows in place, so each size's figure is its increment.
        fig, ax = plt.subplots(figsize=(6, 4))
        sizes = [r["size"] for r in runs]
        for key, label in (("postgres_load_s", "Postgres COPY (cumulative)"),
                           ("opensearch_index_s", "OpenSearch bulk_index (cumulative)")):
            total, ys = 0.0, []
            for r in runs:
                total += r["load"][key]
                ys.append(total)
            ax.plot(sizes, ys, marker="o", label=label)
        ax.plot(sizes, [r["load"]["hnsw_build_s"] for r in runs], marker="o",
                label="Postgres HNSW build over all rows")
        ax.set_xlabel("images")
        ax.set_ylabel("seconds")
        ax.set_title("Write time by catalogue size (linear axes)", fontsize=9)
        ax.legend(fontsize=7)
        made.append(_save(fig, out / "scaling-ingest.png"))

    if len(runs) > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        sizes = [r["size"] for r in runs]
        for backend in data["backends"]:
            for kind, style in (("hybrid", "-"), ("bare", ":")):
                ax.plot(sizes, [r["latency"][f"{backend}|{kind}|all"]["p95"] for r in runs], style, marker="o",
                        label=f"{backend} {kind}")
        ax.axhline(50, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("images")
        ax.set_ylabel("p95 ms over all queries (log)")
        ax.set_title("Search latency by catalogue size", fontsize=9)
        ax.legend(fontsize=7)
        made.append(_save(fig, out / "search-scaling.png"))
    return made


def plot_ingest(data: dict, out: Path, plt) -> list[Path]:
    rounds = data["rounds"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = range(1, len(rounds) + 1)
    n = data["images"]
    ax.bar([x - 0.2 for x in xs], [n / r["analysis_s"] for r in rounds], 0.4, label="analysis alone")
    ax.bar([x + 0.2 for x in xs], [n / r["pipeline"]["first"]["seconds"] for r in rounds], 0.4,
           label="whole ingest_partition run")
    ax.set_xticks(list(xs), [f"round {x}" for x in xs])
    ax.set_ylabel("images/s")
    ax.set_title(f"Ingest of {n} images, one partition (target: pipeline >= analysis / 1.15)", fontsize=9)
    ax.legend(fontsize=7)
    return [_save(fig, out / "ingest.png")]


def plot_memory(data: dict, out: Path, plt) -> list[Path]:
    runs = data["runs"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sizes = [r["images"] for r in runs]
    ax.plot(sizes, [r["peak_rss_mb"] for r in runs], marker="o", label="peak RSS of the worker")
    ax.plot(sizes, [r["rss_before_mb"] for r in runs], marker="o", linestyle=":", label="RSS with models loaded")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("images in the partition")
    ax.set_ylabel("MB")
    ax.set_title("Worker memory by partition size", fontsize=9)
    ax.legend(fontsize=7)
    return [_save(fig, out / "memory.png")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=Path)
    parser.add_argument("--search", type=Path)
    parser.add_argument("--ingest", type=Path)
    parser.add_argument("--memory", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/plots"))
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (the tables in the benchmarks' output hold the same figures)",
              file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    made = []
    if args.writes:
        made += plot_writes(json.loads(args.writes.read_text()), args.out, plt)
    if args.search:
        made += plot_search(json.loads(args.search.read_text()), args.out, plt)
    if args.ingest:
        made += plot_ingest(json.loads(args.ingest.read_text()), args.out, plt)
    if args.memory:
        made += plot_memory(json.loads(args.memory.read_text()), args.out, plt)
    for p in made:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
