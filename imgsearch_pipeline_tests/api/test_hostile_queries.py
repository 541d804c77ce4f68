"""Hostile queries through the real API on both search backends: every one gets a clear answer, none crashes
the API, none changes a table or the index, and query text reaches the engines only as data.

The catalogue is ingested once by the real Dagster job (Postgres, S3, OpenSearch); one app searches
OpenSearch, the other PostgreSQL, over the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from dagster import instance_for_test
from fastapi.testclient import TestClient

from imgsearch_pipeline.api.app import create_app
from imgsearch_pipeline.api.security import ApiSecurity
from imgsearch_pipeline.definitions import build_resources
from imgsearch_pipeline.search.backend import SearchRequest
from imgsearch_pipeline.search.opensearch_backend import _FIELDS, _SOURCE, OpenSearchBackend
from imgsearch_pipeline.search.parser import MAX_QUERY_CHARS
from imgsearch_pipeline.search.postgres_backend import PostgresBackend
from imgsearch_pipeline.search.results import SearchResponse
from imgsearch_pipeline.search.service import NOTHING_TO_SEARCH, SearchService
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline.vocab import get_vocabulary
from imgsearch_pipeline_tests.harness import Pipeline

BACKENDS = ("opensearch", "postgres")
MODES = ("hybrid", "keyword", "vector")
SQL_INJECTION = ['"; DROP TABLE products; --', "' OR 1=1 --", "red'); DELETE FROM image_analysis; --",
                 "dress' UNION SELECT s3_key FROM product_images --", "$$; TRUNCATE products; $$"]
DSL_INJECTION = ['{"script": {"source": "ctx._source.category = \'x\'"}}', '{"query": {"match_all": {}}}',
                 "*:*", "category:dress AND", "description:(red OR blue)^10 AND NOT", "red \\\" } ] }",
                 "/.*/", "dress~2 AND colors:*"]
UNICODE = ["👗👗👗", "فستان أحمر", "красное платье", "red\u200bdress", "\u202edress der\u202c", "ＲＥＤ　ＤＲＥＳＳ",
           "e\u0301te\u0301 dress", "🏳️‍🌈 t-shirt", "\ufeffshirt"]
CONTROL = ["red\x00dress", "dress\x1b[31m\x07", "shirt\r\nSet-Cookie: x=1", "\x00\x00\x00", "\x7f\x85blue"]
CONTRADICTIONS = {"red and not red": ("'red'", "'not red'"), "dress not dress": ("'dress'", "'not dress'"),
                  "printed shirt with no prints": ("'printed'", "'no prints'")}
MANY_NEGATIONS = " ".join(f"not {c}" for c in ["red", "blue", "green", "black", "white"] * 10)  # 50
HOSTILE = [*SQL_INJECTION, *DSL_INJECTION, *UNICODE, *CONTROL, MANY_NEGATIONS, "x" * MAX_QUERY_CHARS]


@pytest.fixture(scope="module")
def world(new_settings):
    settings = new_settings()
    with instance_for_test() as instance:
        pipeline = Pipeline(settings, instance, n_products=12, seed=5)
        pipeline.run()
        provider = pipeline.res["analysis"].get()
        with pipeline.db() as conn:
            pg.ensure_vector_indexes(conn, provider.model_version, provider.image_dim, provider.text_dim)
        security = ApiSecurity(requests_per_minute=1_000_000)  # the test sends far more than a shopper
        clients = {}
        for backend in BACKENDS:
            res = build_resources(settings.model_copy(update={"search_backend": backend}))
            clients[backend] = TestClient(create_app(lambda res=res: res, security))
        yield pipeline, clients
        for client in clients.values():
            client.close()


def _state(pipeline: Pipeline) -> dict:
    """Everything a query must not change: row counts, analyses, index names, alias and documents."""
    client = pipeline.res["opensearch"].client()
    prefix = pipeline.settings.index_prefix
    indices = client.indices.get(index=f"{prefix}*")
    with pipeline.db() as conn:
        tables = {t: conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"]
                  for t in ("products", "product_images", "image_analysis", "analysis_failures")}
    return {**pipeline.snapshot(), "tables": tables, "indices": sorted(indices),
            "aliases": {n: sorted(i["aliases"]) for n, i in indices.items()}}


def _clear(r, query: str) -> SearchResponse | None:
    """A clear answer: a valid search response, or a 4xx that says what is wrong; never a 5xx."""
    assert r.status_code < 500, (query, r.status_code, r.text)
    if r.status_code != 200:
        assert r.status_code == 422 and r.json()["detail"], (query, r.text)
        return None
    return SearchResponse.model_validate(r.json())


def test_hostile_queries_get_clear_answers_and_change_nothing(world):
    pipeline, clients = world
    before = _state(pipeline)
    for backend, client in clients.items():
        for query in HOSTILE:
            for mode in MODES:
                body = _clear(client.get("/search", params={"q": query, "mode": mode, "size": 100}), query)
                assert body is not None and body.backend == backend and body.mode == mode, (backend, query, mode)
                assert not any(c in body.plan.query for c in "\x00\x1b\x07\r\n\x7f\x85"), body.plan.query
            assert client.get("/parse", params={"q": query}).status_code == 200
    assert _state(pipeline) == before


def test_injection_words_are_searched_as_words(world):
    _, clients = world
    for client in clients.values():
        plan = client.get("/search", params={"q": '"; DROP TABLE products; --'}).json()["plan"]
        assert plan["residual"] == "drop table" and plan["filters"] == []
        lucene = client.get("/search", params={"q": "category:dress AND"}).json()
        assert [c["values"] for c in lucene["plan"]["filters"]] == [["dress"]]  # the vocabulary word counts
        assert all(h["attributes"]["category"] == "dress" for h in lucene["hits"])


def test_too_long_queries_are_refused_with_the_limit(world):
    _, clients = world
    for client in clients.values():
        for path in ("/search", "/parse", "/similar"):
            params = {"q": "red dress " * 1000}  # 10,000 characters
            if path == "/similar":
                params["image_id"] = 1
            r = client.get(path, params=params)
            assert r.status_code == 422 and str(MAX_QUERY_CHARS) in r.text, (path, r.text)


def test_empty_and_stopword_queries_say_that_everything_matches(world):
    pipeline, clients = world
    for client in clients.values():
        for query in ("", "   ", "show me the", "please, i want to see some of these", "*:*", "?!,.;"):
            body = client.get("/search", params={"q": query, "size": 100}).json()
            assert NOTHING_TO_SEARCH in body["plan"]["warnings"], (query, body["plan"])
            assert body["total_products"] == len(pipeline.products) == len({h["product_id"] for h in body["hits"]})
        assert client.get("/search", params={"q": "red dress"}).json()["plan"]["warnings"] == []


def test_contradictions_answer_empty_with_a_warning_naming_both_sides(world):
    _, clients = world
    for backend, client in clients.items():
        for query, sides in CONTRADICTIONS.items():
            body = client.get("/search", params={"q": query, "size": 100}).json()
            assert body["hits"] == [] and body["total_products"] == 0, (backend, query)
            warning = next(w for w in body["plan"]["warnings"] if "contradiction" in w)
            assert all(side in warning for side in sides), warning
        # A value excluded from a wider filter is no contradiction: "blue but not navy" still finds blue items.
        assert not any("contradiction" in w for w in
                       client.get("/search", params={"q": "blue but not navy"}).json()["plan"]["warnings"])


def test_many_negations_exclude_every_value(world):
    _, clients = world
    for client in clients.values():
        body = client.get("/search", params={"q": MANY_NEGATIONS, "size": 100}).json()
        excluded = {v for c in body["plan"]["exclude"] for v in c["values"]}
        assert {"red", "blue", "green", "black", "white"} <= excluded
        assert all(not set(h["attributes"]["colors"]) & excluded for h in body["hits"])


def test_more_like_this_with_hostile_filters(world):
    _, clients = world
    for client in clients.values():
        source = client.get("/search", params={"q": ""}).json()["hits"][0]
        for query in [*SQL_INJECTION, *CONTROL, "red and not red"]:
            _clear(client.get("/similar", params={"image_id": source["image_id"], "q": query}), query)
        for image_id in ("-1", "0", "99999999999999999999", "1;DROP TABLE products", "1e3", "%00"):
            r = client.get("/similar", params={"image_id": image_id})
            assert r.status_code in (404, 422), (image_id, r.status_code, r.text)
            r = client.get(f"/images/{image_id}")
            assert r.status_code in (404, 422), (image_id, r.status_code, r.text)


# What reaches the engines -----------------------------------------------------------------------------------


class _RecordingOpenSearch:
    """The real client, keeping every _msearch body it sends."""

    def __init__(self, client, alias: str) -> None:
        self.client, self.alias, self.bodies = client, alias, []

    def msearch(self, body, **kwargs):
        self.bodies.append(body)
        return self.client.msearch(body=body, **kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


class _RecordingConnection:
    """The real connection, keeping every statement as the server receives it (rendered) and its parameters."""

    def __init__(self, conn, log: list) -> None:
        self.conn, self.log = conn, log

    def execute(self, query, params=None, **kwargs):
        text = query if isinstance(query, str) else query.as_string(self.conn)
        self.log.append((text, params))
        return self.conn.execute(query, params, **kwargs)

    def __getattr__(self, name):
        return getattr(self.conn, name)


_DSL_KEYS = {"bool", "filter", "must", "must_not", "should", "terms", "term", "multi_match", "query", "fields",
             "knn", "vector", "k", "size", "_source", "track_total_hits", "aggs", "cardinality", "field", "index",
             "has_print", "docvalue_fields"}
_FORBIDDEN = {"query_string", "simple_query_string", "script", "script_score", "regexp", "wildcard", "prefix",
              "fuzzy", "match_all", "function_score"}


def _leaves(node, path=()) -> Iterator[tuple[tuple, object]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, "{}", key), key
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for item in node:
            yield from _leaves(item, path)
    else:
        yield path, node


def _check_opensearch_body(body: list[dict], req_text: str, vocab_ids: set[str], alias: str) -> None:
    """Only known DSL keys; the user's text only as `multi_match.query`; filter values only vocabulary ids;
    every other string one the backend itself chose (index, field names)."""
    fixed = {alias, "description^2", "product_name", "brand.text", *_SOURCE, *_FIELDS.values()}
    for path, value in _leaves(body):
        if path[-2:-1] == ("{}",):  # a key
            key = str(value)
            assert key not in _FORBIDDEN, path
            parent = path[-3] if len(path) > 2 else ""
            assert key in _DSL_KEYS or key.startswith("facet_") or key == "products" or parent in (
                "terms", "term", "knn"), path
        elif not isinstance(value, str):
            continue
        elif path[-2:] == ("multi_match", "query"):
            assert value == req_text, (value, req_text)  # analysed as text by the engine, never parsed
        elif path[-2:-1] == ("terms",) and path[-1] not in ("product_id", "field"):
            assert value in vocab_ids, (path, value)
        else:
            assert value in fixed, (path, value)


@pytest.fixture(scope="module")
def engines(world):
    pipeline, _ = world
    res = pipeline.res
    provider = res["analysis"].get()
    os_client = _RecordingOpenSearch(res["opensearch"].client(), res["opensearch"].alias)
    sql_log: list = []

    @contextmanager
    def connect():
        with res["postgres"].connect() as conn:
            yield _RecordingConnection(conn, sql_log)

    services = {
        "opensearch": SearchService(OpenSearchBackend(os_client, res["opensearch"].alias), provider),
        "postgres": SearchService(PostgresBackend(connect, provider.model_version), provider),
    }
    return services, os_client, sql_log


def _vocab_ids() -> set[str]:
    vocab = get_vocabulary()
    ids = {*vocab.category_ids, *vocab.color_ids, *vocab.pattern_ids, *(d.id for d in vocab.departments)}
    return ids | {v.id for a in vocab.attributes.values() for v in a.values}


def test_query_text_reaches_the_engines_only_as_data(engines):
    services, os_client, sql_log = engines
    vocab_ids = _vocab_ids()
    requests: list[SearchRequest] = []
    for name, service in services.items():
        backend = service.backend
        original = backend.search

        def recording(req, original=original):
            requests.append(req)
            return original(req)

        backend.search = recording
        for query in [*SQL_INJECTION, *DSL_INJECTION, *CONTROL, "red dress with flowers"]:
            for mode in MODES:
                del requests[:], os_client.bodies[:], sql_log[:]
                service.search(query, mode=mode)
                (req,) = requests
                if name == "opensearch":
                    (body,) = os_client.bodies
                    _check_opensearch_body(body, req.text, vocab_ids, os_client.alias)
                    if req.text:  # the lexical list received it
                        assert any(p[-2:] == ("multi_match", "query") for p, _ in _leaves(body))
                else:
                    assert sql_log
                    payload = req.text.strip()
                    for statement, _ in sql_log:
                        if len(payload) > 2 and not payload.replace(" ", "").isalnum():  # quotes, semicolons...
                            assert payload not in statement, statement  # never spliced into the SQL
                        assert "\x00" not in statement
                    if req.text:  # the lexical list received it, as a parameter
                        assert any(isinstance(p, dict) and p.get("text") == req.text for _, p in sql_log)
