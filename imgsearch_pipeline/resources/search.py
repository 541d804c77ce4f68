"""The search resource: the hybrid query, available to jobs and to the HTTP API."""

from __future__ import annotations

from dagster import ConfigurableResource

from imgsearch_pipeline.resources.analysis import AnalysisProviderResource
from imgsearch_pipeline.resources.opensearch import OpenSearchResource
from imgsearch_pipeline.search.results import SearchResponse
from imgsearch_pipeline.search.service import SearchService


class SearchResource(ConfigurableResource):
    opensearch: OpenSearchResource
    analysis: AnalysisProviderResource

    def service(self) -> SearchService:
        return SearchService(self.opensearch.client(), self.opensearch.alias, self.analysis.get())

    def search(self, query: str, size: int = 20) -> SearchResponse:
        return self.service().search(query, size=size)
