"""Per-attribute accuracy and speed of an analysis provider on a labelled image set (image only).

    .venv/bin/python bench/analysis_accuracy.py --dataset ../shared/eval/myntra --limit 2000 --out docs/analysis.md

The labelled set's own columns (articleType, baseColour, attr_Pattern) are mapped onto the vocabulary
(`imgsearch_pipeline.evaluation.labels.truth`, shared with `imgsearch eval`);
images whose label has no vocabulary counterpart are left out of that attribute's figure. Nothing but the
image bytes reaches the provider. Prints a markdown report (and writes it with --out).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

from imgsearch_pipeline.analysis.provider import AnalysisFailure, get_provider
from imgsearch_pipeline.evaluation.labels import truth
from imgsearch_pipeline.vocab import get_vocabulary


def load_rows(dataset: Path, limit: int, seed: int) -> list[dict]:
    rows = list(csv.DictReader((dataset / "labels.csv").open(encoding="utf-8")))
    random.Random(seed).shuffle(rows)
    return rows[:limit]


def evaluate(dataset: Path, limit: int, seed: int, batch: int, provider_name: str, options: dict) -> str:
    vocab = get_vocabulary()
    provider = get_provider(provider_name, options)
    rows = load_rows(dataset, limit, seed)
    provider.analyse([(dataset / rows[0]["image"]).read_bytes()])  # warm up: graphs built, sessions loaded
    results, failures = [], 0
    load = os.getloadavg()
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        out = provider.analyse([(dataset / r["image"]).read_bytes() for r in chunk])
        for row, a in zip(chunk, out, strict=True):
            if isinstance(a, AnalysisFailure):
                failures += 1
            else:
                results.append((truth(row), a))
    elapsed = time.perf_counter() - started

    def score(name, judge, pred_of):
        judged = [(t[name], pred_of(a)) for t, a in results if t[name] is not None]
        decided = [(t, p) for t, p in judged if p is not None]
        correct = sum(judge(t, p) for t, p in decided)
        return len(judged), len(decided), correct, Counter((t, p) for t, p in judged)

    lines = [
        f"Provider `{provider.model_version}`, {len(rows)} images of `{dataset.name}` (seed {seed}), image only.",
        "",
        "| attribute | judged | decided | accuracy of decided | accuracy over judged (undecided = wrong) |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows_out = {
        "category (exact)": score("category", lambda t, p: t == p, lambda a: a.category),
        "primary colour (exact)": score("color", lambda t, p: t == p, lambda a: a.color_ids[0] if a.colors else None),
        "primary colour (family)": score("color", lambda t, p: vocab.family_of(t) == vocab.family_of(p),
                                         lambda a: a.color_ids[0] if a.colors else None),
        "has_print (Solid/Striped/Checked vs Printed)": score("has_print", lambda t, p: t == p,
                                                              lambda a: a.has_print),
        "pattern (Solid/Striped/Checked)": score("pattern", lambda t, p: t == p, lambda a: a.pattern),
    }
    for name, (judged, decided, correct, _) in rows_out.items():
        lines.append(f"| {name} | {judged} | {decided} | {correct / max(decided, 1):.3f} | "
                     f"{correct / max(judged, 1):.3f} |")
    categories = Counter(t["category"] for t, _ in results if t["category"])
    top, top_n = categories.most_common(1)[0]
    lines += ["", f"Majority-class category baseline: {top_n / sum(categories.values()):.3f} ({top}). "
              f"Images the provider refused: {failures}.", "",
              f"Speed: {len(rows) / elapsed:.1f} images/s end to end (read, decode, both models, pixels, "
              f"description, text embedding), batch {batch}, on this machine ({os.cpu_count()} cores; load "
              f"average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after: other work on the machine slows "
              "this figure).", ""]
    family = Counter()
    for (t, p), n in rows_out["primary colour (exact)"][3].items():
        family[(vocab.family_of(t), vocab.family_of(p) if p else None)] += n
    lines += confusion_table("Category (the 12 most frequent true categories; rows: truth, columns: predicted)",
                             rows_out["category (exact)"][3], keep=12)
    lines += confusion_table("Primary colour family", family, keep=12)
    lines += confusion_table("Pattern", rows_out["pattern (Solid/Striped/Checked)"][3], keep=12)
    lines += confusion_table("has_print", rows_out["has_print (Solid/Striped/Checked vs Printed)"][3], keep=2)
    return "\n".join(lines) + "\n"


def confusion_table(title: str, counts: Counter, keep: int) -> list[str]:
    """A markdown confusion matrix; rarer truths and predictions are summed into "other", undecided is "none"."""
    truths = [t for t, _ in _totals(counts).most_common(keep)]
    predicted: Counter = Counter()
    for (_, p), n in counts.items():
        if p is not None and p not in truths:
            predicted[p] += n
    extra = [p for p, _ in predicted.most_common(4)]  # frequent wrong answers get a column of their own
    label = {v: str(v).lower() for v in [*truths, *extra]}
    preds = [*truths, *extra, "other", "none"]

    def column(p: object) -> str:
        return "none" if p is None else label.get(p, "other")

    matrix: Counter = Counter()
    for (t, p), n in counts.items():
        matrix[(label.get(t, "other") if t in truths else "other", column(p))] += n
    row_names = [label[t] for t in truths] + (["other"] if any(t not in truths for t, _ in counts) else [])
    cols = [label.get(p, p) for p in preds if any(matrix[(r, label.get(p, p))] for r in row_names)]
    out = [f"**{title}**", "", "| truth \\ predicted | " + " | ".join(cols) + " | recall |",
           "| --- | " + " | ".join("---:" for _ in cols) + " | ---: |"]
    for r in row_names:
        total = sum(matrix[(r, c)] for c in cols)
        hit = r != "other"  # "other" -> "other" is not a correct answer, only two rare classes
        cells = [f"**{matrix[(r, c)]}**" if hit and r == c else str(matrix[(r, c)] or "") for c in cols]
        recall = f"{matrix[(r, r)] / max(total, 1):.2f}" if hit else "-"
        out.append(f"| {r} | " + " | ".join(cells) + f" | {recall} |")
    return out + [""]


def _totals(counts: Counter) -> Counter:
    totals: Counter = Counter()
    for (t, _), n in counts.items():
        totals[t] += n
    return totals


START, END = "<!-- bench:analysis_accuracy:start -->", "<!-- bench:analysis_accuracy:end -->"


def write_between_markers(path: Path, report: str) -> None:
    """Replace the generated part of the doc only: the prose around it is written by people."""
    text = path.read_text(encoding="utf-8") if path.exists() else f"{START}\n{END}\n"
    if START not in text or END not in text:
        raise SystemExit(f"{path} has no {START} ... {END} markers to write between")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{START}\n{report}{END}{tail}", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=Path("../shared/eval/myntra"))
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--provider", default="builtin")
    ap.add_argument("--provider-options", type=json.loads, default={}, help="JSON object of provider options")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    report = evaluate(args.dataset, args.limit, args.seed, args.batch, args.provider, args.provider_options)
    print(report)
    if args.out:
        write_between_markers(args.out, f"Command: `.venv/bin/python bench/analysis_accuracy.py --dataset "
                              f"{args.dataset} --limit {args.limit} --seed {args.seed} --out {args.out}`\n\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
