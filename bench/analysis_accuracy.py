"""Per-attribute accuracy and speed of an analysis provider on a labelled image set (image only).

    .venv/bin/python bench/analysis_accuracy.py --dataset ../shared/eval/myntra --limit 2000 --out docs/analysis.md

The labelled set's own columns (articleType, baseColour, attr_Pattern) are mapped onto the vocabulary;
images whose label has no vocabulary counterpart are left out of that attribute's figure. Nothing but the
image bytes reaches the provider. Prints a markdown report (and writes it with --out).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from collections import Counter
from pathlib import Path

from imgsearch_pipeline.analysis.provider import AnalysisFailure, get_provider
from imgsearch_pipeline.vocab import get_vocabulary

# Shop article types whose vocabulary category is not their own name (the rest resolve through synonyms).
ARTICLE_TYPES = {
    "Tshirts": "t-shirt", "Shirts": "shirt", "Tops": "top", "Track Pants": "trousers", "Sweatshirts": "sweatshirt",
    "Casual Shoes": "casual-shoes", "Sports Shoes": "sports-shoes", "Formal Shoes": "formal-shoes",
    "Flip Flops": "flip-flops", "Handbags": "handbag", "Clutches": "clutch", "Kurtis": "kurta",
}
PRINTED, UNPRINTED = {"Printed"}, {"Solid", "Striped", "Checked"}
PATTERNS = {"Solid": "solid", "Striped": "striped", "Checked": "checked", "Printed": None}


def load_rows(dataset: Path, limit: int, seed: int) -> list[dict]:
    rows = list(csv.DictReader((dataset / "labels.csv").open(encoding="utf-8")))
    random.Random(seed).shuffle(rows)
    return rows[:limit]


def truth(row: dict) -> dict:
    vocab = get_vocabulary()
    article = row["articleType"]
    colour = row["baseColour"]
    pattern = row.get("attr_Pattern", "")
    return {
        "category": ARTICLE_TYPES.get(article) or vocab.resolve("category", article),
        "color": vocab.resolve("color", colour) if colour not in ("", "NA", "Multi") else None,
        "has_print": True if pattern in PRINTED else False if pattern in UNPRINTED else None,
        "pattern": PATTERNS.get(pattern),
    }


def evaluate(dataset: Path, limit: int, seed: int, batch: int, provider_name: str) -> str:
    vocab = get_vocabulary()
    provider = get_provider(provider_name, {"batch_size": batch})
    rows = load_rows(dataset, limit, seed)
    provider.analyse([(dataset / rows[0]["image"]).read_bytes()])  # warm up: graphs built, sessions loaded
    results, failures = [], 0
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
              f"description, text embedding), batch {batch}, on this machine.", "",
              "Most frequent category confusions (truth -> predicted, None = left undecided):", ""]
    confusions = rows_out["category (exact)"][3]
    lines += [f"- {t} -> {p}: {n}" for (t, p), n in confusions.most_common(60) if t != p][:15]
    lines += ["", "has_print confusion (truth, predicted): " + ", ".join(
        f"{t}/{p}: {n}" for (t, p), n in sorted(rows_out["has_print (Solid/Striped/Checked vs Printed)"][3].items(),
                                               key=str))]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=Path("../shared/eval/myntra"))
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--provider", default="builtin")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    report = evaluate(args.dataset, args.limit, args.seed, args.batch, args.provider)
    print(report)
    if args.out:
        args.out.write_text("# Image analysis: measured accuracy and speed\n\n"
                            f"Command: `.venv/bin/python bench/analysis_accuracy.py --dataset {args.dataset} "
                            f"--limit {args.limit} --seed {args.seed} --out {args.out}`\n\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
