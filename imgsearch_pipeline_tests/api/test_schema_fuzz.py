"""Schemathesis against the API's own OpenAPI schema, over real servers, on both search backends, bounded for
CI: generated requests (valid and invalid) never get a 5xx, and every answer matches its documented schema
and content type. Product changes are sent with the admin key; the admin operations (reindex, replay: slow,
and covered by test_admin.py) are excluded explicitly."""

from __future__ import annotations

import pytest
import schemathesis
from dagster import instance_for_test
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from imgsearch_pipeline.api.app import create_app
from imgsearch_pipeline.api.security import API_KEY_HEADER, ApiSecurity
from imgsearch_pipeline.definitions import build_resources
from imgsearch_pipeline_tests.harness import Pipeline

ADMIN_KEY = "fuzz-admin-key-31337"
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# Per operation, mode and backend; about 40 s for both backends here. Derandomized: CI sees the same cases
# every run (set derandomize=False locally to explore; that is how the bugs in test_what_the_fuzzer_found_...
# were found).
BOUNDED = settings(max_examples=15, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def apps(new_settings):
    settings_ = new_settings()
    with instance_for_test() as instance:
        Pipeline(settings_, instance, n_products=6, seed=17).run()
        security = ApiSecurity(api_key=ADMIN_KEY, requests_per_minute=1_000_000)
        built = {}
        for backend in ("opensearch", "postgres"):
            res = build_resources(settings_.model_copy(update={"search_backend": backend}))
            built[backend] = create_app(lambda res=res: res, security)
        yield built


def test_admin_operations_are_in_the_schema_and_excluded_here(apps):
    with TestClient(apps["postgres"]) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert {"/admin/reindex", "/admin/failures/replay"} <= set(paths)


def test_what_the_fuzzer_found_stays_fixed(apps):
    """An offset beyond PostgreSQL's bigint and a NUL in a product's fields were 500s ("bigint out of range",
    "text fields cannot contain NUL"); an app error's 422 body did not match the documented 422 schema."""
    with TestClient(apps["postgres"]) as client:
        assert client.get("/products", params={"offset": 2**64}).status_code == 422
        for body in ({"product_id": "nul-1", "department": "wo\x00men"}, {"product_id": "nul-2", "name": "\x00"}):
            r = client.post("/products", json=body, headers={API_KEY_HEADER: ADMIN_KEY})
            assert r.status_code == 422 and "NUL" in r.text, r.text
        assert client.get("/products", params={"offset": 10**9}).json() == []
        schema = client.get("/openapi.json").json()
    ref = schema["paths"]["/similar"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    detail = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["detail"]
    assert {"type": "string"} in detail["anyOf"]


@pytest.mark.parametrize("backend", ["opensearch", "postgres"])
def test_api_conforms_to_its_schema(apps, backend):
    """Every operation but the admin ones, with valid and with invalid inputs (schemathesis' own pytest plugin
    does not run under pytest 9, so each operation's strategy runs under a plain hypothesis test)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", apps[backend]).exclude(path_regex="^/admin/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    no_invalid_input = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @BOUNDED
            @given(operation.as_strategy(generation_mode=mode))
            def check(case):
                case.call_and_validate(headers={API_KEY_HEADER: ADMIN_KEY}, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:  # no invalid input exists: no parameters ("GET /healthz"), or any string goes
                assert mode == GenerationMode.NEGATIVE, operation.label
                no_invalid_input.append(operation.label)
    assert "GET /healthz" in no_invalid_input
    assert {"GET /search", "GET /parse", "GET /similar", "POST /similar", "POST /products"}.isdisjoint(no_invalid_input)
