"""The search resource: the hybrid query on the configured backend, available to jobs and to the HTTP API."""

from __future__ import annotations

from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from imgsearch_pipeline.resources.analysis import AnalysisProviderResource
from imgsearch_pipeline.resources.opensearch import OpenSearchResource
from imgsearch_pipeline.resources.postgres import PostgresResource
from imgsearch_pipeline.search.backend import SearchBackend
from imgsearch_pipeline.search.results import SearchResponse
from imgsearch_pipeline.search.service import SearchService


class SearchResource(ConfigurableResource):
    opensearch: OpenSearchResource
    postgres: PostgresResource
    analysis: AnalysisProviderResource
    backend: Literal["opensearch", "postgres"] = Field(
        default="opensearch", description="postgres: search without OpenSearch (pgvector + full-text)")

    def backend_impl(self) -> SearchBackend:
        if self.backend == "postgres":
            from imgsearch_pipeline.search.postgres_backend import PostgresBackend

            return PostgresBackend(self.postgres.connect, self.analysis.get().model_version)
        from imgsearch_pipeline.search.opensearch_backend import OpenSearchBackend

        return OpenSearchBackend(self.opensearch.client(), self.opensearch.alias)

    def service(self) -> SearchService:
        return SearchService(self.backend_impl(), self.analysis.get())

    def search(self, query: str, size: int = 20) -> SearchResponse:
        return self.service().search(query, size=size)
