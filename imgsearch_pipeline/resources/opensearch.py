"""OpenSearch connection resource: URL + optional basic auth, and the alias/index naming."""

from __future__ import annotations

from dagster import ConfigurableResource
from opensearchpy import OpenSearch

from imgsearch_pipeline.storage import opensearch as osx


class OpenSearchResource(ConfigurableResource):
    url: str
    user: str | None = None
    password: str | None = None
    verify_certs: bool = True
    index_prefix: str = "imgsearch"

    def client(self) -> OpenSearch:
        return osx.make_client(self.url, self.user, self.password, self.verify_certs)

    @property
    def alias(self) -> str:
        return self.index_prefix

    def index_base(self, model_version: str) -> str:
        return osx.index_base(self.index_prefix, model_version)
