"""The top frames of a py-spy profile, as short text: what `docs/profiles/*.txt` hold.

    .venv/bin/py-spy record --format raw --threads --rate 40 -o /tmp/ingest.raw -- \\
        .venv/bin/python bench/ingest.py --images 300 --rounds 1
    .venv/bin/python bench/profile_top.py /tmp/ingest.raw --within pipeline_run > docs/profiles/ingest-pyspy.txt

py-spy's raw format is one collapsed stack per line with its sample count. `--within FUNC` keeps the samples of
every thread whose stack passes through FUNC, or that a thread pool started while it ran (worker threads do not
carry their caller's frames, so they are kept when they run one of `--also` functions).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path


def frame_name(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `func (file.py)`: stable across lines, short."""
    name, _, where = frame.partition(" (")
    file = where.split(":")[0].rsplit("/", 1)[-1] if where else ""
    return f"{name} ({file})" if file else name


def summarise(lines: list[str], within: str | None, also: list[str], top: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = [frame_name(f) for f in stack.split(";")[1:]]  # the first element names the thread
        names = {f.split(" (")[0] for f in frames}
        if within and within not in names and not names & set(also):
            continue
        n = int(count)
        total += n
        for f in set(frames):
            inclusive[f] += n
        if frames:
            own[frames[-1]] += n
    out = [f"{total} samples" + (f" in threads through {within} or {', '.join(also)}" if within else ""), "",
           f"top {top} by inclusive samples (the frame or anything it called):"]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out += ["", f"top {top} by own samples (the frame itself, leaf of the stack):"]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--within", help="keep only stacks through this function")
    parser.add_argument("--also", default="", help="comma-separated functions of worker threads to keep too")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    also = [a for a in args.also.split(",") if a]
    print(summarise(args.raw.read_text().splitlines(), args.within, also, args.top), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
