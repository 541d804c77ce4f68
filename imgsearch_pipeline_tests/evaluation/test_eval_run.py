"""`imgsearch eval` end to end on a small labelled set written here, on the real servers of conftest.py."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from imgsearch_pipeline import config
from imgsearch_pipeline.cli import main
from imgsearch_pipeline.evaluation.labels import ARTICLE_TYPES
from imgsearch_pipeline.evaluation.runner import METRICS, SYSTEMS, EvalStores, database_dsn
from imgsearch_pipeline.samples.generator import generate_catalog
from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.vocab import get_vocabulary

ARTICLE = {v: k for k, v in ARTICLE_TYPES.items()}
PATTERN = {"solid": "Solid", "striped": "Striped", "checked": "Checked"}
GENDER = {"men": "Men", "women": "Women", "kids": "Boys", "unisex": "Unisex"}
COLUMNS = ["image", "id", "gender", "articleType", "baseColour", "attr_Pattern", "productDisplayName", "brandName"]


def write_dataset(root: Path) -> tuple[Path, dict]:
    """A labelled set in the evaluation format from the sample generator (front images, one per product)."""
    vocab = get_vocabulary()
    products = generate_catalog(n_products=40, seed=11)
    (root / "images").mkdir(parents=True)
    rows = []
    for n, p in enumerate(products):
        image_id = str(20000 + n)
        (root / "images" / f"{image_id}.jpg").write_bytes(p.images[0].data)
        rows.append({
            "image": f"images/{image_id}.jpg", "id": image_id, "gender": GENDER[p.department],
            "articleType": ARTICLE.get(p.category, vocab.category(p.category).label),
            "baseColour": vocab.color(p.colors[0]).label,
            "attr_Pattern": "Printed" if p.has_print else PATTERN.get(p.pattern, ""),
            "productDisplayName": p.name, "brandName": p.brand,
        })
    with (root / "labels.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tee = next(p for p in products if p.category == "t-shirt")
    family = vocab.family_of(tee.colors[0])
    absent = next(c for c in vocab.categories if c.id not in {p.category for p in products})
    queries = [
        {"id": "tee", "query": "t-shirt", "must": {"articleType": ["Tshirts"]}},
        {"id": "tee-colour", "query": f"{family} t-shirt",
         "must": {"articleType": ["Tshirts"], "baseColour": [vocab.color(c).label
                                                             for c in vocab.colors_in_family(family)]}},
        {"id": "plain-shirt", "query": "shirt with no prints", "must": {"articleType": ["Shirts"]},
         "must_not": {"attr_Pattern": ["Printed"]}},
        {"id": "absent", "query": absent.label.lower(), "must": {"articleType": [absent.label]}},
    ]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    return root / "queries.jsonl", {"brands": {p.brand for p in products}, "tees": sum(
        p.category == "t-shirt" for p in products)}


class Run:
    def __init__(self, settings, dataset: Path, queries: Path) -> None:
        self.settings, self.dataset, self.queries = settings, dataset, queries
        self.stores = EvalStores.for_dataset(dataset.name)
        self.dsn = database_dsn(settings.postgres_dsn, self.stores.database)

    def __call__(self, *extra: str) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["eval", "--dataset", str(self.dataset), "--queries", str(self.queries), "--shards", "2",
                         *extra])
        return code, out.getvalue()

    def json(self, *extra: str) -> dict:
        code, out = self("--json", *extra)
        assert code == 0
        return json.loads(out)

    def db(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, row_factory=dict_row)


@pytest.fixture(scope="module")
def run(new_settings, tmp_path_factory):
    settings = new_settings()
    dataset = tmp_path_factory.mktemp("shopset")
    queries, facts = write_dataset(dataset)
    with pytest.MonkeyPatch.context() as mp:
        for env in config._ENV.values():
            mp.delenv(env, raising=False)
        mp.setenv("IMGSEARCH_STATE_DIR", str(tmp_path_factory.mktemp("no-stack")))
        mp.setenv("IMGSEARCH_POSTGRES_DSN", settings.postgres_dsn)
        mp.setenv("IMGSEARCH_S3_ENDPOINT_URL", settings.s3_endpoint_url)
        mp.setenv("IMGSEARCH_S3_BUCKET", settings.s3_bucket)
        mp.setenv("IMGSEARCH_OPENSEARCH_URL", settings.opensearch_url)
        mp.setenv("IMGSEARCH_INDEX_PREFIX", settings.index_prefix)
        r = Run(settings, dataset, queries)
        r.facts = facts
        r.first = r.json()
        yield r


def test_json_shape(run):
    report = run.first
    assert set(report) >= {"systems", "queries", "images", "model_version", "backend"}
    assert report["images"] == 40 and report["backend"] == "opensearch" and report["ingested"] is True
    assert set(report["systems"]) == set(SYSTEMS)
    for mode in SYSTEMS:
        assert set(report["systems"][mode]) == set(METRICS)
    assert [q["id"] for q in report["queries"]] == ["tee", "tee-colour", "plain-shirt", "absent"]
    for q in report["queries"]:
        assert set(q) >= {"id", "query", "plan", "relevant", *SYSTEMS}
        assert q["plan"]["query"] == q["query"] and q["plan"]["filters"]
        for mode in SYSTEMS:
            assert set(q[mode]) == set(METRICS)


def test_metric_values_are_shares(run):
    for q in run.first["queries"]:
        for mode in SYSTEMS:
            for metric, value in q[mode].items():
                if q["relevant"] == 0 and metric in ("p@10", "ndcg@10", "r@50"):
                    assert value is None  # undefined without relevant images, left out of the means
                else:
                    assert 0.0 <= value <= 1.0, (q["id"], mode, metric, value)
    for mode in SYSTEMS:
        for value in run.first["systems"][mode].values():
            assert 0.0 <= value <= 1.0


def test_relevant_sets_come_from_the_labels(run):
    by_id = {q["id"]: q for q in run.first["queries"]}
    assert by_id["tee"]["relevant"] == run.facts["tees"]
    assert by_id["absent"]["relevant"] == 0


def test_hybrid_never_returns_what_its_plan_excludes(run):
    for q in run.first["queries"]:
        assert q["hybrid"]["stored_violations@10"] == 0.0, q["id"]


def test_a_query_with_a_known_answer_finds_it(run):
    tee = next(q for q in run.first["queries"] if q["id"] == "tee")
    assert tee["hybrid"]["p@10"] > 0
    assert tee["hybrid"]["r@50"] > 0.5


def test_image_only_into_its_own_stores(run):
    with run.db() as conn:
        products = conn.execute("SELECT product_id, name, brand, department FROM products").fetchall()
        images = conn.execute("SELECT product_id, s3_key FROM product_images WHERE status = 'analysed'").fetchall()
        descriptions = " ".join(r["description"] for r in conn.execute("SELECT description FROM image_analysis"))
    assert len(products) == 40 and len(images) == 40
    assert all(p["name"] is None and p["brand"] is None and p["department"] is None for p in products)
    assert {i["product_id"] for i in images} == {str(20000 + n) for n in range(40)}
    assert all(i["s3_key"].startswith(f"eval/{run.stores.dataset}/") for i in images)
    assert not any(b in descriptions for b in run.facts["brands"])
    # the configured (user's) stores are untouched
    with psycopg.connect(run.settings.postgres_dsn) as conn:
        assert conn.execute("SELECT to_regclass('products')").fetchone()[0] is None
    client = osx.make_client(run.settings.opensearch_url)
    assert not client.indices.exists_alias(name=run.settings.index_prefix)
    assert osx.count(client, run.stores.index_prefix) == 40


def test_reuse_skips_ingest(run):
    with run.db() as conn:
        before = conn.execute("SELECT image_id, analysed_at FROM image_analysis ORDER BY image_id").fetchall()
    again = run.json("--reuse")
    assert again["ingested"] is False
    assert again["systems"] == run.first["systems"]
    with run.db() as conn:
        after = conn.execute("SELECT image_id, analysed_at FROM image_analysis ORDER BY image_id").fetchall()
    assert after == before


def test_readable_table(run):
    code, out = run("--reuse")
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("hybrid") for line in lines)
    assert any(line.startswith("tee ") for line in lines)


def test_limit_ingests_a_subset_and_reuse_notices(run):
    report = run.json("--limit", "12", "--reuse")  # the database holds 40: not reusable
    assert report["ingested"] is True and report["images"] == 12
    with run.db() as conn:
        live = conn.execute("SELECT count(*) AS n FROM product_images WHERE status <> 'deleted'").fetchone()["n"]
    assert live == 12
    assert osx.count(osx.make_client(run.settings.opensearch_url), run.stores.index_prefix) == 12
    assert run.json("--limit", "12", "--reuse")["ingested"] is False


def test_bad_query_file(run, tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": "x", "query": "t-shirt", "must": {"nosuchcolumn": ["A"]}}\n')
    code = main(["eval", "--dataset", str(run.dataset), "--queries", str(bad), "--reuse"])
    assert code == 2
