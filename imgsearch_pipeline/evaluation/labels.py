"""A shop's ground-truth labels in the vocabulary's terms: what a labelled image IS, as far as labels tell.

Used twice: by `bench/analysis_accuracy.py` (is the analyser right?) and by the evaluation's violations@10
(does a hit contradict a query plan's hard constraints?). Columns are those of the Myntra set: articleType,
baseColour, attr_Pattern, gender and the attr_* columns of the open attributes.

A label that maps to nothing in the vocabulary is unknown, never a contradiction. A label may also name a
set of possible vocabulary values: "Printed" is one of the printed patterns, "Unisex" fits men and women.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imgsearch_pipeline.evaluation.dataset import is_unknown
from imgsearch_pipeline.search.plan import Clause, QueryPlan
from imgsearch_pipeline.vocab import Vocabulary, get_vocabulary

# Shop article types whose vocabulary category is not their own name (the rest resolve through synonyms).
ARTICLE_TYPES = {
    "Tshirts": "t-shirt", "Shirts": "shirt", "Tops": "top", "Track Pants": "trousers", "Sweatshirts": "sweatshirt",
    "Casual Shoes": "casual-shoes", "Sports Shoes": "sports-shoes", "Formal Shoes": "formal-shoes",
    "Flip Flops": "flip-flops", "Handbags": "handbag", "Clutches": "clutch", "Kurtis": "kurta",
    "Scarves": "scarf", "Sports Sandals": "sandals", "Capris": "trousers", "Lounge Pants": "trousers",
    "Lounge Shorts": "shorts", "Necklace and Chains": "jewellery",
}
PRINTED, UNPRINTED = {"Printed"}, {"Solid", "Striped", "Checked"}
PATTERNS = {"Solid": "solid", "Striped": "striped", "Checked": "checked", "Printed": None}
NO_COLOUR = {"Multi"}  # a real label, but no single vocabulary colour
# gender -> the departments an item of that gender can be sold under
GENDERS = {"Men": ("men",), "Women": ("women",), "Boys": ("kids",), "Girls": ("kids",),
           "Unisex": ("unisex", "men", "women")}
# open attribute (vocabulary name) -> the labels' column
ATTRIBUTE_COLUMNS = {"sleeve_length": "attr_SleeveLength", "neckline": "attr_Neck", "fit": "attr_Fit",
                     "material": "attr_Fabric"}


def _value(row: dict, column: str) -> str | None:
    value = row.get(column)
    return None if is_unknown(value) else value.strip()


def category_of(row: dict, vocab: Vocabulary | None = None) -> str | None:
    article = _value(row, "articleType")
    if article is None:
        return None
    return ARTICLE_TYPES.get(article) or (vocab or get_vocabulary()).resolve("category", article)


def color_of(row: dict, vocab: Vocabulary | None = None) -> str | None:
    colour = _value(row, "baseColour")
    if colour is None or colour in NO_COLOUR:
        return None
    return (vocab or get_vocabulary()).resolve("color", colour)


def has_print_of(row: dict) -> bool | None:
    pattern = _value(row, "attr_Pattern")
    return True if pattern in PRINTED else False if pattern in UNPRINTED else None


def truth(row: dict, vocab: Vocabulary | None = None) -> dict:
    """One vocabulary value per attribute, None when the label does not say (what an analyser is scored on)."""
    return {
        "category": category_of(row, vocab),
        "color": color_of(row, vocab),
        "has_print": has_print_of(row),
        "pattern": PATTERNS.get(_value(row, "attr_Pattern") or ""),
    }


@dataclass(frozen=True)
class LabelTerms:
    """What the labels allow an item to be: field -> possible vocabulary ids (absent: unknown)."""

    possible: dict[str, frozenset[str]] = field(default_factory=dict)
    has_print: bool | None = None


def label_terms(row: dict, vocab: Vocabulary | None = None) -> LabelTerms:
    vocab = vocab or get_vocabulary()
    possible: dict[str, frozenset[str]] = {}
    if category := category_of(row, vocab):
        possible["category"] = frozenset({category})
    if color := color_of(row, vocab):
        possible["color"] = frozenset({color})
    pattern = _value(row, "attr_Pattern")
    if PATTERNS.get(pattern or ""):
        possible["pattern"] = frozenset({PATTERNS[pattern]})
    elif pattern in PRINTED:
        possible["pattern"] = frozenset(p.id for p in vocab.patterns if p.has_print)
    if (gender := _value(row, "gender")) in GENDERS:
        possible["department"] = frozenset(GENDERS[gender])
    for name, column in ATTRIBUTE_COLUMNS.items():
        value = _value(row, column)
        if value and name in vocab.attributes and (resolved := vocab.resolve_attribute(name, value)):
            possible[name] = frozenset({resolved})
    return LabelTerms(possible=possible, has_print=has_print_of(row))


def _contradicts_filter(clause: Clause, terms: LabelTerms) -> bool:
    known = terms.possible.get(clause.field)
    return known is not None and not known & set(clause.values)


def _contradicts_exclude(clause: Clause, terms: LabelTerms) -> bool:
    # Only when every value the labels allow is excluded: "Printed" is not contradicted by "no florals".
    known = terms.possible.get(clause.field)
    return known is not None and known <= set(clause.values)


def label_violations(plan: QueryPlan, row: dict, vocab: Vocabulary | None = None) -> list[str]:
    """The plan's hard constraints that an image's ground-truth labels contradict, by the words they came from.

    Colours are compared at the level the plan states: its clause lists every accepted shade (a family word
    such as "blue" lists the family's shades, "navy" only navy), and the label's colour must be among them.
    """
    terms = label_terms(row, vocab)
    broken = [c.text for c in plan.filters if _contradicts_filter(c, terms)]
    broken += [c.text for c in plan.exclude if _contradicts_exclude(c, terms)]
    if plan.has_print is not None and terms.has_print is not None and terms.has_print is not plan.has_print:
        broken.append("printed" if plan.has_print else "no print")
    return broken
