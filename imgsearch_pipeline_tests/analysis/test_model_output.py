"""A model's answer is validated against the vocabulary: mapped, or rejected with a reason, never stored raw."""

import json

import pytest

from imgsearch_pipeline.analysis.model_output import answer_schema, parse_answer
from imgsearch_pipeline.analysis.provider import AnalysisFailure
from imgsearch_pipeline.analysis.types import ImageAnalysis

GOOD = {"category": "tee", "colors": [{"color": "crimson", "coverage": 0.8}, {"color": "Navy Blue", "coverage": 0.2}],
        "pattern": "plaid", "has_print": None, "attributes": {"sleeve_length": "full sleeves"},
        "description": "A red and navy checked t-shirt with long sleeves."}


def test_synonyms_are_mapped_onto_the_vocabulary():
    analysis, answer = parse_answer(json.dumps(GOOD), "vlm-1")
    assert isinstance(analysis, ImageAnalysis) and answer is not None
    assert (analysis.category, analysis.color_ids, analysis.pattern) == ("t-shirt", ["red", "navy"], "checked")
    assert analysis.has_print is False and analysis.attributes == {"sleeve_length": "long-sleeve"}


def test_code_fences_are_tolerated():
    analysis, _ = parse_answer("```json\n" + json.dumps(GOOD) + "\n```", "vlm-1")
    assert isinstance(analysis, ImageAnalysis)


@pytest.mark.parametrize(("answer", "reason"), [
    ("I think it is a red shirt.", "not JSON"),
    ('{"category": "shirt", "colors": [', "not JSON"),
    ("[1, 2, 3]", "rejected"),
    (json.dumps(GOOD | {"category": "spaceship"}), "category"),
    (json.dumps(GOOD | {"colors": [{"color": "ultraviolet", "coverage": 1}]}), "colors"),
    (json.dumps(GOOD | {"colors": [{"color": "red", "coverage": 7}]}), "coverage"),
    (json.dumps(GOOD | {"attributes": {"sparkle": "yes"}}), "attributes"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "description"}), "description"),
    (json.dumps(GOOD | {"extra": "field"}), "extra"),
    ("x" * 30_000, "too long"),
])
def test_garbage_is_a_recorded_retryable_failure(answer, reason):
    analysis, parsed = parse_answer(answer, "vlm-1")
    assert isinstance(analysis, AnalysisFailure) and parsed is None
    assert analysis.retryable and reason in analysis.reason and len(analysis.reason) <= 1000


def test_schema_names_the_fields_a_model_must_return():
    schema = answer_schema()
    assert set(schema["required"]) >= {"category", "colors", "pattern", "description"}
    assert schema["additionalProperties"] is False
