"""Ranking measures with binary relevance, on condensed lists (unjudged hits removed before scoring).

A judged ranked list is a sequence of booleans (True: relevant), best first. Measures that depend on the
size of the relevant set return None when it is empty: they are undefined there, and `mean` skips them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def condense(judgements: Iterable[bool | None]) -> list[bool]:
    """Drop the unjudged hits (None), keeping the order of the rest: unknown labels neither reward nor punish."""
    return [j for j in judgements if j is not None]


def precision_at(ranked: Sequence[bool], k: int) -> float:
    """Relevant hits among the first k, over k (a list shorter than k is not given the benefit of the doubt)."""
    return sum(ranked[:k]) / k


def _dcg(ranked: Sequence[bool], k: int) -> float:
    return sum(1.0 / math.log2(i + 2) for i, rel in enumerate(ranked[:k]) if rel)


def ndcg_at(ranked: Sequence[bool], k: int, n_relevant: int) -> float | None:
    """DCG@k with binary gains over the ideal DCG, which puts min(k, n_relevant) relevant hits first."""
    if n_relevant <= 0:
        return None
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, n_relevant)))
    return _dcg(ranked, k) / ideal


def recall_at(ranked: Sequence[bool], k: int, n_relevant: int) -> float | None:
    """Relevant hits among the first k, over the relevant images in the whole set."""
    if n_relevant <= 0:
        return None
    return sum(ranked[:k]) / n_relevant


def share(flags: Sequence[bool]) -> float:
    """The share of True among flags; 0 for no flags (nothing returned, nothing violated)."""
    return sum(flags) / len(flags) if flags else 0.0


def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the defined values, None when none is defined."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None
