"""The search resource: the hybrid query on the configured backend, available to jobs and to the HTTP API."""

from __future__ import annotations

from functools import cache
from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from imgsearch_pipeline.analysis.provider import AnalysisProvider
from imgsearch_pipeline.resources.analysis import AnalysisProviderResource
from imgsearch_pipeline.resources.opensearch import OpenSearchResource
from imgsearch_pipeline.resources.postgres import PostgresResource
from imgsearch_pipeline.search.backend import SearchBackend
from imgsearch_pipeline.search.llm_parser import LLMQueryParser
from imgsearch_pipeline.search.results import SearchResponse
from imgsearch_pipeline.search.service import SearchService


@cache
def _llm_parser(provider: AnalysisProvider, timeout_s: float) -> LLMQueryParser:
    # One per provider and process: it holds the thread pool that enforces the timeout.
    return LLMQueryParser(provider, timeout_s=timeout_s)


SEARCH_CONNECTIONS = 8  # searches at once per process (more wait for a connection)
LISTS_APART = 4  # k-NN lists at once beside their searches' lexical lists (more run after them)


@cache
def postgres_backend(dsn: str, model_version: str) -> SearchBackend:
    """One per database, version and process: it keeps connections open, and remembers counts and facets
    while the database is unchanged."""
    from imgsearch_pipeline.search.postgres_backend import PostgresBackend
    from imgsearch_pipeline.storage import postgres as pg

    with PostgresResource(dsn=dsn).connect():  # migrations first
        pass
    return PostgresBackend(pg.pool(dsn, SEARCH_CONNECTIONS).connection, model_version,
                           connect_apart=pg.pool(dsn, LISTS_APART).connection, lists_apart=LISTS_APART)


class SearchResource(ConfigurableResource):
    opensearch: OpenSearchResource
    postgres: PostgresResource
    analysis: AnalysisProviderResource
    backend: Literal["opensearch", "postgres"] = Field(
        default="opensearch", description="postgres: search without OpenSearch (pgvector + full-text)")
    query_parser: Literal["rules", "llm"] = Field(
        default="rules", description="llm: the analysis provider's model fills the plan (openai, bedrock)")
    llm_parser_timeout_s: float = Field(default=3.0, gt=0, description="slower answers fall back to the rules")

    def backend_impl(self) -> SearchBackend:
        if self.backend == "postgres":
            return postgres_backend(self.postgres.dsn, self.analysis.get().model_version)
        from imgsearch_pipeline.search.opensearch_backend import OpenSearchBackend

        return OpenSearchBackend(self.opensearch.client(), self.opensearch.alias)

    def service(self) -> SearchService:
        provider = self.analysis.get()
        parser = None
        if self.query_parser == "llm":
            if not hasattr(provider, "complete_json"):
                raise ValueError(f"query_parser 'llm' needs an LLM provider (openai, bedrock), not {provider.name!r}")
            parser = _llm_parser(provider, self.llm_parser_timeout_s).parse
        return SearchService(self.backend_impl(), provider, parser=parser)

    def search(self, query: str, size: int = 20) -> SearchResponse:
        return self.service().search(query, size=size)
