"""The rule-based query parser: vocabulary matching, negation, disjunction, residual text and robustness."""

from __future__ import annotations

import random
import re

import pytest

from imgsearch_pipeline.search.parser import MAX_QUERY_CHARS, QueryTooLong, parse_query, plan_summary
from imgsearch_pipeline.search.plan import Clause, QueryPlan
from imgsearch_pipeline.vocab import Vocabulary, get_vocabulary

RED = ["red", "maroon"]
BLUE = ["teal", "blue", "sky-blue", "navy"]
GREEN = ["green", "lime", "olive"]
GREY = ["charcoal", "grey", "silver"]


def _filters(query: str) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for c in parse_query(query).filters:
        out.setdefault(c.field, []).append(c.values)
    return out


def _excluded(query: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in parse_query(query).exclude:
        out.setdefault(c.field, []).extend(c.values)
    return out


# The two examples of the residual rule, exactly --------------------------------------------------------


def test_with_phrase_keeps_its_vocabulary_words_in_the_residual() -> None:
    plan = parse_query("show all dresses with red flowers")
    assert plan == QueryPlan(
        query="show all dresses with red flowers",
        filters=[
            Clause(field="category", values=["dress"], text="dresses"),
            Clause(field="color", values=RED, text="red"),
            Clause(field="pattern", values=["floral"], text="flowers"),
        ],
        residual="red flowers",
    )


def test_negated_print_never_reaches_the_residual() -> None:
    plan = parse_query("green t shirt with no prints")
    assert plan == QueryPlan(
        query="green t shirt with no prints",
        filters=[
            Clause(field="color", values=GREEN, text="green"),
            Clause(field="category", values=["t-shirt"], text="t shirt"),
        ],
        has_print=False,
    )


@pytest.mark.parametrize(
    ("query", "residual"),
    [
        ("shirt with stripes", "stripes"),
        ("jacket with hood", "hood"),
        ("dress with red flowers for women", "red flowers"),  # "for" ends the with-phrase
        ("dresses with no sleeves and red flowers", "red flowers"),  # the with-phrase resumes after "and"
        ("red dress", ""),
        ("elegant red dress", "elegant"),
    ],
)
def test_residual(query: str, residual: str) -> None:
    assert parse_query(query).residual == residual


def test_a_category_inside_a_with_phrase_is_a_detail_not_a_second_category() -> None:
    plan = parse_query("jeans with a belt")
    assert _filters("jeans with a belt") == {"category": [["jeans"]]}
    assert plan.residual == "belt"


# Vocabulary matching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field", "values"),
    [
        ("tee", "category", ["t-shirt"]),
        ("t shirt", "category", ["t-shirt"]),
        ("t-shirt", "category", ["t-shirt"]),
        ("tshirt", "category", ["t-shirt"]),
        ("T-Shirts", "category", ["t-shirt"]),
        ("tshirts", "category", ["t-shirt"]),
        ("polo", "category", ["t-shirt"]),
        ("sneakers", "category", ["sports-shoes"]),
        ("purse", "category", ["handbag"]),
        ("purses", "category", ["handbag"]),
        ("shades", "category", ["sunglasses"]),
        ("dresses", "category", ["dress"]),
        ("kurtis", "category", ["kurta"]),
        ("footwear", "category", ["casual-shoes", "sports-shoes", "formal-shoes", "heels", "sandals",
                                  "flip-flops"]),
        ("crimson", "color", ["red"]),
        ("maroon", "color", ["maroon"]),
        ("navy blue", "color", ["navy"]),
        ("navy", "color", ["navy"]),
        ("red", "color", RED),
        ("grey", "color", GREY),
        ("gray", "color", GREY),
        ("light grey", "color", ["silver"]),
        ("shades of blue", "color", BLUE),
        ("plaid", "pattern", ["checked"]),
        ("dotted", "pattern", ["polka-dot"]),
        ("polka dots", "pattern", ["polka-dot"]),
        ("plain", "pattern", ["solid"]),
        ("tie-dye", "pattern", ["abstract"]),
        ("long sleeve", "sleeve_length", ["long-sleeve"]),
        ("long-sleeved", "sleeve_length", ["long-sleeve"]),
        ("3/4 sleeves", "sleeve_length", ["three-quarter-sleeve"]),
        ("sleeveless", "sleeve_length", ["sleeveless"]),
        ("v-neck", "neckline", ["v-neck"]),
        ("vneck", "neckline", ["v-neck"]),
        ("slim fit", "fit", ["slim"]),
        ("leather", "material", ["leather"]),
        ("men's", "department", ["men"]),
        ("mens", "department", ["men"]),
        ("MEN\u2019S", "department", ["men"]),
        ("for women", "department", ["women"]),
        ("kid's", "department", ["kids"]),
    ],
)
def test_vocabulary_terms(query: str, field: str, values: list[str]) -> None:
    assert _filters(query) == {field: [values]}


def test_longest_phrase_wins_and_chips_quote_the_query() -> None:
    plan = parse_query("Women's navy blue long-sleeved V-neck T-shirts")
    assert [(c.field, c.values, c.text) for c in plan.filters] == [
        ("department", ["women"], "women's"),
        ("color", ["navy"], "navy blue"),
        ("sleeve_length", ["long-sleeve"], "long-sleeved"),
        ("neckline", ["v-neck"], "v-neck"),
        ("category", ["t-shirt"], "t-shirts"),
    ]
    assert plan.residual == "" and plan.unparsed == []


def test_print_words_set_has_print() -> None:
    assert parse_query("printed shirt").has_print is True
    assert parse_query("shirt with print").has_print is True
    assert parse_query("patterned shirt").filters[0].values == [
        p for p in get_vocabulary().pattern_ids if p != "solid"]


# Negation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "no stripes", "without stripes", "not striped", "shirt that is not striped", "shirts that aren't striped",
        "shirt that isn't striped", "non-striped shirt", "non striped shirt", "nonstriped shirt",
        "shirts except striped", "shirts excluding stripes", "shirts minus the stripes", "anything but striped",
        "shirts other than striped", "stripe-free shirt", "i don't want stripes", "w/o stripes",
        "shirt but not striped", "free of stripes", "not with stripes",
    ],
)
def test_negation_forms(query: str) -> None:
    plan = parse_query(query)
    assert _excluded(query) == {"pattern": ["striped"]}
    assert "stripe" not in plan.residual and not plan.warnings


@pytest.mark.parametrize(
    "query",
    ["no prints", "without print", "tee with no prints", "free of prints", "unprinted top", "print-free top",
     "not printed", "w/o prints", "printless"],
)
def test_negated_print_words(query: str) -> None:
    plan = parse_query(query)
    assert plan.has_print is False and not plan.exclude and plan.residual == ""


@pytest.mark.parametrize(
    ("query", "filters", "excluded"),
    [
        ("dress that isn't black", {"category": [["dress"]]}, {"color": ["black"]}),
        ("blue but not navy", {"color": [BLUE]}, {"color": ["navy"]}),
        ("tops except red", {"category": [["top"]]}, {"color": RED}),
        ("no stripes or checks", {}, {"pattern": ["striped", "checked"]}),
        ("not black or navy", {}, {"color": ["black", "navy"]}),
        ("not black and navy", {}, {"color": ["black", "navy"]}),
        ("neither red nor blue", {}, {"color": RED + BLUE}),
        ("no skirts or dresses", {}, {"category": ["skirt", "dress"]}),
        ("shoes except sandals or heels", {}, {"category": ["sandals", "heels"]}),
        ("not for kids", {}, {"department": ["kids"]}),
        ("collarless shirt", {"category": [["shirt"]]}, {"neckline": ["collar"]}),
        # The negation stops at a category after a modifier, and at "and" + another field.
        ("not black dresses", {"category": [["dress"]]}, {"color": ["black"]}),
        ("no prints and long sleeves", {"sleeve_length": [["long-sleeve"]]}, {}),
        ("red, not blue, shirt", {"color": [RED], "category": [["shirt"]]}, {"color": BLUE}),
        ("not red shoes but blue ones", {"color": [BLUE]}, {"color": RED}),
        # A vocabulary phrase worded as a negation is a value, and negates what is coordinated with it.
        ("dress without sleeves or collar", {"category": [["dress"]], "sleeve_length": [["sleeveless"]]},
         {"neckline": ["collar"]}),
        ("shirt without pattern", {"category": [["shirt"]], "pattern": [["solid"]]}, {}),
    ],
)
def test_negation_scope(query: str, filters: dict, excluded: dict) -> None:
    assert _filters(query) == filters
    assert _excluded(query) == excluded


def test_negation_chips_read_as_typed() -> None:
    assert [c.text for c in parse_query("blue but not navy").exclude] == ["not navy"]
    assert [c.text for c in parse_query("no stripes or checks").exclude] == ["no stripes or checks"]
    assert [c.text for c in parse_query("non-striped").exclude] == ["non-striped"]


def test_a_negated_unknown_word_is_dropped_with_a_warning() -> None:
    plan = parse_query("no ruffles dress")
    assert _filters("no ruffles dress") == {"category": [["dress"]]}
    assert plan.unparsed == ["ruffles"] and plan.residual == ""
    assert plan.warnings == ["cannot exclude 'ruffles': not in the vocabulary, ignored"]


# Disjunction and conjunction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "filters"),
    [
        ("red or maroon", {"color": [RED]}),
        ("red/blue shirt", {"color": [RED + BLUE], "category": [["shirt"]]}),
        ("red, blue or green dress", {"color": [RED + BLUE + GREEN], "category": [["dress"]]}),
        ("red dress or blue dress", {"color": [RED + BLUE], "category": [["dress"]]}),
        ("shirts or t-shirts", {"category": [["shirt", "t-shirt"]]}),
        # Items have several colours but one value of every other field.
        ("red and blue dress", {"color": [RED, BLUE], "category": [["dress"]]}),
        ("red blue dress", {"color": [RED, BLUE], "category": [["dress"]]}),
        ("black & white", {"color": [["black"], ["white", "off-white"]]}),
        ("shirts and t-shirts", {"category": [["shirt", "t-shirt"]]}),
        ("men and women sneakers", {"department": [["men", "women"]], "category": [["sports-shoes"]]}),
        ("red dress with red flowers", {"color": [RED], "category": [["dress"]], "pattern": [["floral"]]}),
    ],
)
def test_coordination(query: str, filters: dict) -> None:
    assert _filters(query) == filters


def test_or_chip_and_or_across_kinds() -> None:
    assert parse_query("red or maroon").filters[0].text == "red or maroon"
    plan = parse_query("red or striped")
    assert _filters("red or striped") == {"color": [RED], "pattern": [["striped"]]}
    assert len(plan.warnings) == 1 and "not supported" in plan.warnings[0]
    assert "contradict" not in plan.warnings[0]  # the search must still run


# Contradictions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["red and not red", "maroon but not red", "printed with no prints", "floral dress with no prints",
     "plain printed shirt", "dresses but not dresses"],
)
def test_contradictions_are_kept_and_warned(query: str) -> None:
    plan = parse_query(query)
    assert any("contradiction" in w for w in plan.warnings), plan.warnings
    assert plan.filters


def test_printed_with_no_prints_keeps_both_sides() -> None:
    plan = parse_query("printed with no prints")
    assert plan.has_print is False
    assert plan.filters == [Clause(field="pattern", values=[p.id for p in get_vocabulary().patterns
                                                            if p.has_print], text="printed")]


def test_subtracting_a_shade_from_its_family_is_not_a_contradiction() -> None:
    assert parse_query("blue but not navy").warnings == []


# Edges and robustness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "   ", "\n\t", "show me all the", "?!,.", "\U0001f600\U0001f457"])
def test_empty_queries_give_an_empty_plan(query: str) -> None:
    assert parse_query(query) == QueryPlan(query=query)


def test_length_limit() -> None:
    assert parse_query("a" * MAX_QUERY_CHARS).residual == "a" * MAX_QUERY_CHARS
    with pytest.raises(QueryTooLong, match=str(MAX_QUERY_CHARS)) as err:
        parse_query("red " * 200)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("query", "residual"),
    [
        ('"; DROP TABLE products; --', "drop table"),
        ('{"script": {"source": "x"}}', "script source x"),
        ("<script>alert(1)</script>", "script alert 1 script"),
        ("red' OR '1'='1", "1 1"),
    ],
)
def test_injection_looking_strings_become_plain_words(query: str, residual: str) -> None:
    plan = parse_query(query)
    assert plan.residual == residual
    assert all(re.fullmatch(r"\w+", w) for w in plan.unparsed)


def test_punctuation_case_emoji_and_foreign_words() -> None:
    assert _filters("RED DRESS!!! \U0001f600") == {"color": [RED], "category": [["dress"]]}
    plan = parse_query("\u0434\u0436\u0438\u043d\u0441\u044b, red")
    assert plan.unparsed == ["\u0434\u0436\u0438\u043d\u0441\u044b"] and plan.residual == plan.unparsed[0]


def test_random_unicode_never_crashes() -> None:
    vocab = get_vocabulary()
    valid = {"category": set(vocab.category_ids), "color": set(vocab.color_ids), "pattern": set(vocab.pattern_ids),
             "department": {d.id for d in vocab.departments}}
    valid |= {name: {v.id for v in attr.values} for name, attr in vocab.attributes.items()}
    words = [*vocab.term_index(), "no", "not", "non", "or", "and", "with", "but not", ",", "/", "isn't", "free",
             "w/o", "-", "'", "\u2019s", "3/4", "\U0001f600"]
    rng = random.Random(20240601)
    for i in range(2000):
        if i % 2:
            query = "".join(chr(rng.choice((rng.randint(0, 0x2FF), rng.randint(0, 0x10FFFF))))
                            for _ in range(rng.randint(0, 40)))
        else:
            query = " ".join(rng.choice(words) for _ in range(rng.randint(0, 20)))
        plan = parse_query(query)
        for clause in plan.filters + plan.exclude:
            assert clause.values and set(clause.values) <= valid[clause.field], (query, clause)
        plan.model_dump_json()  # always serialisable, lone surrogates included


def test_a_vocabulary_of_its_own_gets_its_own_phrase_index() -> None:
    data = get_vocabulary().model_dump(exclude={"version"})
    shoes = next(c for c in data["categories"] if c["id"] == "casual-shoes")
    shoes["synonyms"] = [*shoes["synonyms"], "wellies"]
    custom = Vocabulary.model_validate(data)
    assert parse_query("wellies", custom).filters[0].values == ["casual-shoes"]
    assert parse_query("wellies").unparsed == ["wellies"]


def test_plan_summary() -> None:
    line = plan_summary(parse_query("red dress but not maroon, no prints, with bows"))
    assert line == 'color=red|maroon  category=dress  color!=maroon  has_print=no  text="bows"'
    assert plan_summary(parse_query("")) == "(no constraints)"
    assert "warnings: contradiction" in plan_summary(parse_query("red and not red"))
