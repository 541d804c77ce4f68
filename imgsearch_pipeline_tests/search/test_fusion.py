from imgsearch_pipeline.search.fusion import best_per_group, rrf


def test_rrf_rewards_agreement():
    scores = rrf([["a", "b", "c"], ["b", "c", "a"]])
    assert max(scores, key=scores.get) == "b"
    assert scores["a"] == 1 / 61 + 1 / 63


def test_best_per_group_keeps_one_per_product_in_order():
    scores = {"i1": 0.9, "i2": 0.8, "i3": 0.7, "i4": 0.6}
    groups = {"i1": "p1", "i2": "p1", "i3": "p2", "i4": "p3"}
    assert best_per_group(scores, groups, 10) == [("i1", 0.9), ("i3", 0.7), ("i4", 0.6)]
    assert best_per_group(scores, groups, 2) == [("i1", 0.9), ("i3", 0.7)]
