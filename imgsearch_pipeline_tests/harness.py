"""A generated catalogue in a test's own bucket, database and index, and the Dagster job to ingest it."""

from __future__ import annotations

from imgsearch_pipeline.definitions import build_definitions
from imgsearch_pipeline.demo import partitions_of, upload_catalog
from imgsearch_pipeline.partitions import image_prefixes
from imgsearch_pipeline.samples.generator import generate_catalog
from imgsearch_pipeline.storage import opensearch as osx


class Pipeline:
    """A catalogue in S3 and a Dagster instance to materialize its partitions with."""

    def __init__(self, settings, instance, n_products: int = 40, seed: int = 3) -> None:
        self.settings, self.instance = settings, instance
        self.defs = build_definitions(settings)
        self.res = self.defs.resources
        self.products = generate_catalog(n_products=n_products, seed=seed)
        self.n_images = upload_catalog(self.res["images"].client(), settings.s3_bucket, self.products,
                                       self.res["images"].feed_key)
        self.partitions = partitions_of(self.products, self.res["images"].partition_of)
        instance.add_dynamic_partitions(image_prefixes.name, self.partitions)

    def run(self, partitions=None) -> None:
        job = self.defs.resolve_job_def("ingest_partition")
        for part in partitions or self.partitions:
            assert job.execute_in_process(partition_key=part, instance=self.instance).success

    def db(self):
        return self.res["postgres"].connect()

    def doc_count(self) -> int:
        client = self.res["opensearch"].client()
        return osx.count(client, self.res["opensearch"].alias)

    def snapshot(self) -> dict:
        with self.db() as conn:
            return {
                "products": conn.execute("SELECT count(*) AS n FROM products").fetchone()["n"],
                "images": conn.execute("SELECT count(*) AS n FROM product_images").fetchone()["n"],
                "analyses": {r["image_id"]: (r["content_hash"], r["analysed_at"]) for r in conn.execute(
                    "SELECT image_id, content_hash, analysed_at FROM image_analysis")},
                "docs": self.doc_count(),
            }
