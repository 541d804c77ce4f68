"""Reciprocal rank fusion and one-hit-per-product, shared by every search backend."""

from __future__ import annotations

from collections.abc import Sequence

RRF_K = 60


def rrf(ranked_lists: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """Fuse ranked id lists: score(id) = sum 1 / (k + rank). Rank-based, so BM25 and cosine scales never mix."""
    scores: dict[str, float] = {}
    for ranked in ranked_lists:
        for rank, doc_id in enumerate(ranked, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return scores


def best_per_group(scores: dict[str, float], group_of: dict[str, str], limit: int) -> list[tuple[str, float]]:
    """The highest-scoring id of each group (product), best groups first, at most `limit`."""
    seen: set[str] = set()
    out: list[tuple[str, float]] = []
    for doc_id, score in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])):
        group = group_of[doc_id]
        if group in seen:
            continue
        seen.add(group)
        out.append((doc_id, score))
        if len(out) == limit:
            break
    return out
