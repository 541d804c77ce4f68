"""The Dagster code location: assets, jobs, sensors and resources, configured from the environment.

Resource settings come from `imgsearch_pipeline.config.load_settings()`: IMGSEARCH_* variables, else the
local stack's state file, so `dagster dev` and the CLI always talk to the same servers.
"""

from __future__ import annotations

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    ScheduleDefinition,
    map_asset_specs,
)
from dagster_aws.s3 import S3Resource

from imgsearch_pipeline.assets import analysis, inventory, search_index
from imgsearch_pipeline.assets.checks import ALL_CHECKS, catalogue_checks_job
from imgsearch_pipeline.config import Settings, load_settings
from imgsearch_pipeline.jobs import backfill_job, ingest_job, rebuild_index_job, replay_failures_job
from imgsearch_pipeline.resources import (
    AnalysisProviderResource,
    ImageStoreResource,
    OpenSearchResource,
    PostgresResource,
    SearchResource,
)
from imgsearch_pipeline.resources.frames import PartitionedFramesIOManager
from imgsearch_pipeline.resources.queue import SqsQueueResource
from imgsearch_pipeline.sensors.new_images import new_images_sensor
from imgsearch_pipeline.sensors.s3_events import s3_event_sensor

catalogue_checks_schedule = ScheduleDefinition(
    job=catalogue_checks_job, cron_schedule="*/30 * * * *", default_status=DefaultScheduleStatus.RUNNING,
    description="Postgres vs OpenSearch and orphans over the whole catalogue, every half hour.",
)

# Dagster's built-in automation sensor starts stopped; this one runs, so model upgrades reprocess by themselves.
automation_sensor = AutomationConditionSensorDefinition(
    "model_upgrade_automation", target=AssetSelection.all(), default_status=DefaultSensorStatus.RUNNING,
    description="Reprocesses partitions made stale by a new model version, and follows new upstream data.",
)


def build_resources(settings: Settings) -> dict:
    """Resources for a settings object; tests build their own settings pointing at their servers."""
    local = bool(settings.s3_endpoint_url)
    s3 = S3Resource(
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        # A local endpoint (moto, MinIO) accepts any credentials; AWS uses the default credential chain.
        aws_access_key_id="imgsearch" if local else None,
        aws_secret_access_key="imgsearch" if local else None,
    )
    opensearch = OpenSearchResource(
        url=settings.opensearch_url or "http://127.0.0.1:9200",
        user=settings.opensearch_user,
        password=settings.opensearch_password.get_secret_value() if settings.opensearch_password else None,
        verify_certs=settings.opensearch_verify_certs,
        index_prefix=settings.index_prefix,
    )
    analysis_provider = AnalysisProviderResource(
        provider=settings.provider, options=settings.provider_options, max_in_flight=settings.max_in_flight,
        max_images_per_second=settings.max_images_per_second, max_attempts=settings.max_attempts,
        base_delay_s=settings.retry_base_delay_s, max_delay_s=settings.retry_max_delay_s,
    )
    postgres = PostgresResource(dsn=settings.postgres_dsn or "")
    resources = {
        "frames_io_manager": PartitionedFramesIOManager(),
        "postgres": postgres,
        "images": ImageStoreResource(s3=s3, bucket=settings.s3_bucket),
        "opensearch": opensearch,
        "analysis": analysis_provider,
        "search": SearchResource(opensearch=opensearch, postgres=postgres, analysis=analysis_provider,
                                 backend=settings.search_backend, query_parser=settings.query_parser),
    }
    if settings.sqs_queue_url:
        sqs_endpoint = settings.sqs_endpoint_url or settings.s3_endpoint_url
        resources["s3_event_queue"] = SqsQueueResource(
            queue_url=settings.sqs_queue_url,
            endpoint_url=sqs_endpoint,
            aws_access_key_id="imgsearch" if sqs_endpoint else None,
            aws_secret_access_key="imgsearch" if sqs_endpoint else None,
        )
    return resources


def build_definitions(settings: Settings) -> Definitions:
    resources = build_resources(settings)
    # Everything derived from the model carries its model_version as code version: after an upgrade the UI shows
    # exactly those partitions as stale, and the automation sensor reprocesses them.
    model_version = resources["analysis"].get().model_version
    model_assets = map_asset_specs(lambda spec: spec.replace_attributes(code_version=model_version),
                                   [analysis.image_attributes_and_embeddings, analysis.image_analysis,
                                    search_index.search_index])
    return Definitions(
        assets=[inventory.image_inventory, *model_assets],
        asset_checks=ALL_CHECKS,
        jobs=[ingest_job, backfill_job, rebuild_index_job, replay_failures_job, catalogue_checks_job],
        # The event-driven sensor exists only where a queue is configured (its ticks need the queue resource).
        schedules=[catalogue_checks_schedule],
        sensors=[new_images_sensor, automation_sensor, *([s3_event_sensor] if "s3_event_queue" in resources else [])],
        resources=resources,
    )


defs = build_definitions(load_settings())
