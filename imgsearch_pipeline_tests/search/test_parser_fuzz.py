"""Property-based fuzzing of the query parser (hypothesis), bounded for CI: arbitrary unicode and sentences
built from the vocabulary, function words and junk. Whatever the input, the parser answers a plan that only
holds vocabulary values, never requires what it excludes without saying so, and stays small."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgsearch_pipeline.search.parser import MAX_QUERY_CHARS, QueryTooLong, _scan, clean_query, parse_query
from imgsearch_pipeline.search.plan import QueryPlan
from imgsearch_pipeline.vocab import get_vocabulary

VOCAB = get_vocabulary()
FIELD_VALUES: dict[str, set[str]] = {
    "category": set(VOCAB.category_ids), "color": set(VOCAB.color_ids), "pattern": set(VOCAB.pattern_ids),
    "department": {d.id for d in VOCAB.departments},
    **{name: {v.id for v in a.values} for name, a in VOCAB.attributes.items()},
}
WORDS = sorted({t for t in VOCAB.term_index() if len(t) < 30})
FUNCTION_WORDS = ["no", "not", "without", "with", "and", "or", "nor", "but not", "except", "non", "un", "free",
                  "other than", "only", "for", ",", "/", "|", "&", "+", ".", "?", "'s", "-", "w/", "w/o", "less"]
JUNK = ["\x00", "\u200b", "\u202e", "👗", "'", '"', ";", "--", "*:*", "{", "}", "\\", "%", "ǅ", "ﬁ", "①", "\ud800",
        "DROP TABLE", "script", "nonnon", "ununprinted", "printless", "t-", "-shirt"]

# Bounded in time: 3,000 examples each (~10 s here), no per-example deadline (a loaded CI box), no example database.
BOUNDED = settings(max_examples=3000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

sentences = st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(FUNCTION_WORDS), st.sampled_from(JUNK),
                               st.text(max_size=8)), max_size=40).map(" ".join)
queries = st.one_of(sentences, st.text(max_size=200))


def _check(query: str, plan: QueryPlan) -> None:
    for clause in [*plan.filters, *plan.exclude]:
        assert clause.values, clause
        assert set(clause.values) <= FIELD_VALUES[clause.field], clause  # vocabulary ids only
        assert clause.text, clause
    # A filter every value of which is excluded matches nothing: allowed only when a warning says so.
    for f in plan.filters:
        excluded = {v for e in plan.exclude if e.field == f.field for v in e.values}
        if set(f.values) <= excluded:
            assert any("contradiction" in w for w in plan.warnings), plan
    folded, tokens = _scan(clean_query(query))
    words = {m.group() for m in tokens}
    for word in plan.residual.split():
        assert word in words or word in folded, (word, query)  # residual words come from the query
    for word in plan.unparsed:
        assert word in words, (word, query)
    # Bounded: never more clauses, residual words or warnings than the query has tokens (plus the fixed ones).
    n = len(tokens)
    assert len(plan.filters) + len(plan.exclude) <= n + 1
    assert len(plan.residual.split()) <= n and len(plan.warnings) <= n + 2
    assert len(plan.model_dump_json()) < 200 * (n + 1) + 4 * len(query) + 2000
    plan.model_dump_json()  # always serialisable (no lone surrogates)


@BOUNDED
@given(queries)
def test_parser_never_raises_and_plans_are_sound(query: str) -> None:
    query = query[:MAX_QUERY_CHARS]
    _check(query, parse_query(query))


@BOUNDED
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6), st.sampled_from(["not", "no", "without"]))
def test_negating_what_is_asked_is_reported(terms: list[str], negator: str) -> None:
    """"red dress not red": the negated value is also required: a contradiction warning, or not both."""
    query = f"{' '.join(terms)} {negator} {terms[0]}"[:MAX_QUERY_CHARS]
    _check(query, parse_query(query))


@settings(max_examples=50, deadline=None, database=None)
@given(st.text(min_size=MAX_QUERY_CHARS + 1, max_size=MAX_QUERY_CHARS + 200))
def test_overlong_queries_are_refused_with_the_limit(query: str) -> None:
    with pytest.raises(QueryTooLong, match=str(MAX_QUERY_CHARS)):
        parse_query(query)
