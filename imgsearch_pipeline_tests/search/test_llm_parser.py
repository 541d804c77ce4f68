"""The LLM query parser against a real local OpenAI-compatible endpoint: the same typed plan as the rule
parser, every value checked against the vocabulary, and the rule parser whenever the model fails or is slow."""

from __future__ import annotations

import json

import pytest

from imgsearch_pipeline.analysis.openai_compat import OpenAICompatibleProvider
from imgsearch_pipeline.search.llm_parser import LLMPlan, LLMQueryParser
from imgsearch_pipeline.search.parser import QueryTooLong, parse_query
from imgsearch_pipeline_tests.openai_endpoint import Reply, chat_answer, error, serve


def plan_reply(**plan) -> Reply:
    return chat_answer(json.dumps(plan))


@pytest.fixture(scope="module")
def endpoint():
    with serve(plan_reply()) as (url, fake):
        provider = OpenAICompatibleProvider(OpenAICompatibleProvider.Options(
            base_url=url, model="planner", api_key_env=None, timeout_s=5))
        yield LLMQueryParser(provider, timeout_s=2.0), fake
        provider.close()


def test_the_model_fills_the_plan_and_values_are_resolved_through_the_vocabulary(endpoint):
    parser, fake = endpoint
    fake.script.append(plan_reply(
        filters=[{"field": "category", "values": ["frocks"], "text": "dresses"},
                 {"field": "color", "values": ["red"], "text": "red"},
                 {"field": "sleeve_length", "values": ["full sleeves"], "text": "long sleeves"}],
        exclude=[{"field": "color", "values": ["Navy Blue"], "text": "not navy"}],
        has_print=True, residual="flowers"))
    plan = parser.parse("long sleeved dresses with red flowers, not navy")
    request = fake.requests[-1]["body"]
    assert request["response_format"]["json_schema"]["schema"] == LLMPlan.model_json_schema()
    assert "long sleeved dresses with red flowers, not navy" in json.dumps(request["messages"])
    clauses = {c.field: c.values for c in plan.filters}
    assert clauses["category"] == ["dress"] and clauses["sleeve_length"] == ["long-sleeve"]
    assert set(clauses["color"]) >= {"red", "maroon"}  # a family word means every shade, as in the rule parser
    assert plan.exclude[0].values == ["navy"] and plan.has_print is True and plan.residual == "flowers"
    assert plan.warnings == []


def test_values_outside_the_vocabulary_are_dropped_with_a_warning(endpoint):
    parser, fake = endpoint
    fake.script.append(plan_reply(filters=[{"field": "category", "values": ["spaceship"]},
                                           {"field": "material", "values": ["cotton", "unobtainium"]},
                                           {"field": "mood", "values": ["happy"]}]))
    plan = parser.parse("a cotton spaceship")
    assert [(c.field, c.values) for c in plan.filters] == [("material", ["cotton"])]
    assert sum("not in the vocabulary" in w for w in plan.warnings) == 3


def test_contradictions_are_reported_like_the_rule_parser_does(endpoint):
    parser, fake = endpoint
    fake.script.append(plan_reply(filters=[{"field": "color", "values": ["red"], "text": "red"}],
                                  exclude=[{"field": "color", "values": ["red"], "text": "not red"}]))
    assert any("contradiction" in w for w in parser.parse("red and not red").warnings)


@pytest.mark.parametrize(("reply", "why"), [
    (chat_answer("I think you want dresses!"), "answer rejected"),  # not JSON
    (chat_answer(json.dumps({"filters": "dress"})), "answer rejected"),  # wrong shape
    (chat_answer(json.dumps({"filters": [], "sql": "DROP TABLE products"})), "answer rejected"),  # unknown field
    (error(500, "model crashed"), "TransientProviderError"),
    (error(401, "bad key"), "ProviderConfigurationError"),
    (Reply(delay_s=3.0, body={}), "no answer within 2 s"),  # slower than the parser's budget
])
def test_any_failure_falls_back_to_the_rule_parser(endpoint, reply, why):
    parser, fake = endpoint
    fake.release.clear()
    fake.script.append(reply)
    query = "green t shirt with no prints"
    try:
        plan = parser.parse(query)
    finally:
        fake.release.set()  # a delayed reply ends now
    rules = parse_query(query)
    assert plan.filters == rules.filters and plan.has_print is False
    assert plan.warnings[0].startswith(f"LLM parser not used ({why}")
    assert plan.warnings[0].endswith("rule parser used")


def test_limits_hold_without_calling_the_model(endpoint):
    parser, fake = endpoint
    before = len(fake.requests)
    with pytest.raises(QueryTooLong):
        parser.parse("x" * 10_000)
    assert parser.parse("   ").filters == [] and len(fake.requests) == before
