"""Ground-truth labels against a query plan's hard constraints (violations@10), and the bench's truth()."""

from __future__ import annotations

from imgsearch_pipeline.evaluation.labels import label_terms, label_violations, truth
from imgsearch_pipeline.search.parser import parse_query

GREEN_SOLID_TEE = {"articleType": "Tshirts", "baseColour": "Green", "attr_Pattern": "Solid", "gender": "Men"}


def violated(query: str, **row) -> list[str]:
    return label_violations(parse_query(query), GREEN_SOLID_TEE | row)


def test_a_matching_item_violates_nothing():
    assert violated("green t-shirt with no prints") == []
    assert violated("plain olive or green tees for men") == []


def test_category_outside_the_filter():
    assert violated("green shirt") == ["shirt"]
    assert violated("green t-shirt", articleType="Shirts") == ["t-shirt"]
    assert violated("sneakers", articleType="Sports Shoes") == []
    assert violated("kurta", articleType="Kurtis") == []


def test_category_that_maps_to_nothing_is_unknown():
    assert violated("green t-shirt", articleType="Briefs") == []
    assert violated("green t-shirt", articleType="") == []


def test_colour_at_the_level_the_plan_states():
    assert violated("green t-shirt", baseColour="Olive") == []  # "green" is the family
    assert violated("green t-shirt", baseColour="Fluorescent Green") == []  # lime, of the green family
    assert violated("green t-shirt", baseColour="Red") == ["green"]
    assert violated("blue t-shirt", baseColour="Navy Blue") == []
    assert violated("navy blue t-shirt", baseColour="Blue") == ["navy blue"]  # "navy" names one shade
    assert violated("navy blue t-shirt", baseColour="Navy Blue") == []


def test_unknown_colours_are_not_violations():
    for unknown in ("", "NA", "Multi", "Steel"):
        assert violated("red t-shirt", baseColour=unknown) == []


def test_excluded_values_present():
    assert violated("t-shirt that is not black or white", baseColour="Black") == ["not black or white"]
    assert violated("t-shirt that is not black or white", baseColour="Cream") == ["not black or white"]
    assert violated("t-shirt that is not black or white") == []
    assert violated("not green t-shirt") == ["not green"]
    assert violated("t-shirt, no stripes", attr_Pattern="Striped") == ["no stripes"]


def test_has_print_against_the_pattern_label():
    assert violated("green t-shirt with no prints", attr_Pattern="Printed") == ["no print"]
    for unprinted in ("Solid", "Striped", "Checked"):
        assert violated("printed green t-shirt", attr_Pattern=unprinted) == ["printed"]
        assert violated("green t-shirt with no prints", attr_Pattern=unprinted) == []
    assert violated("printed green t-shirt", attr_Pattern="Printed") == []
    for unknown in ("", "Self Design", "Embellished"):
        assert violated("printed green t-shirt", attr_Pattern=unknown) == []


def test_pattern_clauses():
    assert violated("striped t-shirt", attr_Pattern="Checked") == ["striped"]
    assert violated("plain t-shirt", attr_Pattern="Printed") == ["plain"]
    # "Printed" is some printed pattern: it contradicts stripes, not florals, and "no florals" cannot tell
    assert violated("striped t-shirt", attr_Pattern="Printed") == ["striped"]
    assert violated("floral t-shirt", attr_Pattern="Printed") == []
    assert violated("t-shirt without flowers", attr_Pattern="Printed") == []
    assert violated("t-shirt without flowers", attr_Pattern="Solid") == []


def test_department_and_attributes():
    assert violated("women's t-shirt") == ["women's"]
    assert violated("women's t-shirt", gender="Unisex") == []
    assert violated("kids t-shirt", gender="Boys") == []
    assert violated("long sleeve t-shirt", attr_SleeveLength="Short Sleeves") == ["long sleeve"]
    assert violated("long sleeve t-shirt", attr_SleeveLength="Long Sleeves") == []
    assert violated("long sleeve t-shirt", attr_SleeveLength="") == []
    assert violated("v-neck t-shirt", attr_Neck="Round Neck") == ["v-neck"]
    assert violated("v-neck t-shirt", attr_Neck="Scoop Neck") == []  # no vocabulary neckline: unknown


def test_several_clauses_broken_at_once():
    assert violated("red striped shirt", attr_Pattern="Solid") == ["red", "striped", "shirt"]


def test_label_terms():
    terms = label_terms(GREEN_SOLID_TEE | {"attr_Neck": "Polo Collar", "attr_Fit": "Tight Fit"})
    assert terms.possible["category"] == {"t-shirt"}
    assert terms.possible["color"] == {"green"}
    assert terms.possible["pattern"] == {"solid"}
    assert terms.possible["neckline"] == {"collar"}
    assert "fit" not in terms.possible  # "Tight Fit" is not a vocabulary value
    assert terms.has_print is False


def test_bench_truth():
    assert truth(GREEN_SOLID_TEE) == {"category": "t-shirt", "color": "green", "has_print": False, "pattern": "solid"}
    assert truth({"articleType": "Flats", "baseColour": "Multi", "attr_Pattern": "Printed"}) == {
        "category": None, "color": None, "has_print": True, "pattern": None}
    assert truth({"articleType": "Watches", "baseColour": "Navy Blue"})["category"] == "watch"
