"""The ranking measures on hand-computed examples."""

from __future__ import annotations

import math

import pytest

from imgsearch_pipeline.evaluation.dataset import EvalQuery
from imgsearch_pipeline.evaluation.metrics import condense, mean, ndcg_at, precision_at, recall_at, share

R, N = True, False


def test_condense_drops_unjudged_and_keeps_order():
    assert condense([None, R, N, None, R, None]) == [R, N, R]
    assert condense([None, None]) == []


def test_unjudged_hits_neither_reward_nor_punish():
    raw = [None, R, None, N, R]  # hits 1 and 3 have an unknown label in a column the query names
    ranked = condense(raw)
    assert ranked == [R, N, R]
    # counted as not relevant, P@3 would be 1/3; condensed, the judged hits at ranks 1..3 give 2/3
    assert precision_at(ranked, 3) == pytest.approx(2 / 3)
    assert ndcg_at(ranked, 3, 2) == pytest.approx((1 + 1 / 2) / (1 + 1 / math.log2(3)))
    assert recall_at(ranked, 2, 2) == 0.5


def test_precision_divides_by_k_even_for_short_lists():
    assert precision_at([R, R], 10) == 0.2
    assert precision_at([], 10) == 0.0
    assert precision_at([R] * 12, 10) == 1.0


def test_ndcg_ideal_uses_only_as_many_relevant_as_exist():
    # 2 relevant images in the whole set: the ideal list is [R, R], not ten Rs.
    assert ndcg_at([R, R, N, N], 10, 2) == pytest.approx(1.0)
    # found at ranks 2 and 4: (1/log2(3) + 1/log2(5)) / (1 + 1/log2(3))
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at([N, R, N, R], 10, 2) == pytest.approx(expected)
    assert ndcg_at([N, R, N, R], 10, 2) == pytest.approx(0.6509209298)


def test_ndcg_cuts_at_k_and_caps_the_ideal_at_k():
    ranked = [N] * 10 + [R] * 5
    assert ndcg_at(ranked, 10, 5) == 0.0
    assert ndcg_at([R] * 10, 10, 500) == pytest.approx(1.0)
    # one relevant hit at rank 1 out of 500 relevant: 1 / IDCG@10
    idcg = sum(1 / math.log2(i + 2) for i in range(10))
    assert ndcg_at([R], 10, 500) == pytest.approx(1 / idcg)


def test_recall_counts_against_the_whole_relevant_set():
    assert recall_at([R, N, R] + [N] * 50 + [R], 50, 4) == 0.5  # the R at rank 54 is past the cut
    assert recall_at([R, R], 50, 2) == 1.0
    assert recall_at([], 50, 3) == 0.0


def test_undefined_without_relevant_images():
    assert ndcg_at([N, N], 10, 0) is None
    assert recall_at([N], 50, 0) is None
    assert mean([None, 0.5, None, 1.0]) == 0.75
    assert mean([None]) is None


def test_share():
    assert share([True, False, False, True]) == 0.5
    assert share([]) == 0.0


def test_relevance_rules_and_unjudged():
    q = EvalQuery(id="q", query="green t-shirt with no prints",
                  must={"articleType": ["Tshirts"], "baseColour": ["Green"]},
                  must_not={"attr_Pattern": ["Printed"]})
    row = {"articleType": "Tshirts", "baseColour": "Green", "attr_Pattern": "Solid"}
    assert q.judge(row) is True
    assert q.judge(row | {"attr_Pattern": "Printed"}) is False
    assert q.judge(row | {"baseColour": "Navy Blue"}) is False
    assert q.judge(row | {"attr_Pattern": ""}) is None  # a named column is unknown: unjudged
    assert q.judge(row | {"baseColour": "NA"}) is None
    assert q.judge({"articleType": "Tshirts", "baseColour": "Green"}) is None  # column absent
    assert q.judge(row | {"articleType": "Shirts", "attr_Pattern": ""}) is None  # unknown wins over a miss
