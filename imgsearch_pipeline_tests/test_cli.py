import json

from imgsearch_pipeline.cli import main
from imgsearch_pipeline.search.parser import MAX_QUERY_CHARS


def test_parse_json_matches_the_documented_example(capsys):
    assert main(["parse", "green t shirt with no prints", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    fields = {c["field"]: c["values"] for c in plan["filters"]}
    assert fields["category"] == ["t-shirt"]
    assert "green" in fields["color"]
    assert plan["has_print"] is False and plan["residual"] == "" and plan["exclude"] == []


def test_parse_refuses_an_overlong_query_with_a_clear_error(capsys):
    assert main(["parse", "red " * MAX_QUERY_CHARS]) == 2
    assert "error:" in capsys.readouterr().err
