"""Dagster resources: thin, configurable wrappers over the plain modules that do the work."""

from imgsearch_pipeline.resources.analysis import AnalysisProviderResource
from imgsearch_pipeline.resources.images import ImageStoreResource
from imgsearch_pipeline.resources.opensearch import OpenSearchResource
from imgsearch_pipeline.resources.postgres import PostgresResource
from imgsearch_pipeline.resources.search import SearchResource

__all__ = ["AnalysisProviderResource", "ImageStoreResource", "OpenSearchResource", "PostgresResource",
           "SearchResource"]
