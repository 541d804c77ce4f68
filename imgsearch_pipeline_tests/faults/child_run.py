"""Ingest one partition in a process of its own, so that a test can SIGKILL it mid-run.

    python -m imgsearch_pipeline_tests.faults.child_run PARTITION DAGSTER_DIR
    (settings as JSON in IMGSEARCH_FAULTS_SETTINGS; DAGSTER_DIR holds the run's Dagster instance)

Exits 0 when the run succeeded, 1 when it failed; a killed process exits with -9, which is the point.
"""

from __future__ import annotations

import os
import sys

from dagster import instance_for_test

from imgsearch_pipeline.config import Settings
from imgsearch_pipeline.definitions import build_definitions
from imgsearch_pipeline.partitions import image_prefixes
from imgsearch_pipeline.resources import AnalysisProviderResource
from imgsearch_pipeline_tests.faults.support import replace_resources

SETTINGS_ENV = "IMGSEARCH_FAULTS_SETTINGS"
BATCH_SIZE = 2  # small read batches: the partition goes through the model in several calls


def main(partition: str, dagster_dir: str) -> int:
    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    defs = build_definitions(settings)
    analysis = AnalysisProviderResource(**{**defs.resources["analysis"].model_dump(), "batch_size": BATCH_SIZE})
    defs = replace_resources(defs, analysis=analysis)
    with instance_for_test(temp_dir=dagster_dir) as instance:
        instance.add_dynamic_partitions(image_prefixes.name, [partition])
        result = defs.resolve_job_def("ingest_partition").execute_in_process(
            partition_key=partition, instance=instance, raise_on_error=False)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
