"""Where the analysis frames (image_attributes, image_embeddings) live between steps, one file per partition.

Dagster's filesystem IO manager refuses an output that spans several partitions, which is exactly what a
backfill run over a range of prefixes produces. This one splits such a frame by its `partition_key` column
and stores each partition on its own, so a partition written by a backfill run reads back like any other.

Partition keys become paths below the storage folder, segment by segment. Ordinary segments stay as they are;
any other (empty, '.', '..', control characters, '%', longer than a file name) is percent-encoded, and hashed
when still too long, so no key can leave the folder, alias another key's file or exceed a file name's length.
"""

import hashlib
from urllib.parse import quote

from dagster import ConfigurableIOManagerFactory, InitResourceContext, OutputContext
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager
from pydantic import Field

from imgsearch_pipeline.partitions import CONTROL, MAX_SEGMENT_BYTES

PARTITION_COLUMN = "partition_key"


def safe_segment(segment: str) -> str:
    """A file name for one segment of a partition key; distinct segments give distinct names."""
    if segment and segment not in (".", "..") and "%" not in segment and not CONTROL.search(segment) \
            and len(segment.encode("utf-8")) <= MAX_SEGMENT_BYTES:
        return segment
    encoded = quote(segment, safe="") if segment else "%"  # quote never yields a lone "%" (nor "." or "..")
    encoded = {".": "%2E", "..": "%2E%2E"}.get(encoded, encoded)
    if len(encoded) > MAX_SEGMENT_BYTES:
        # "%~" appears in no other name: plain names hold no "%", encoded ones only "%" + two hex digits.
        digest = hashlib.sha256(segment.encode("utf-8", "replace")).hexdigest()
        encoded = f"{encoded[:MAX_SEGMENT_BYTES - 66]}%~{digest}"
    return encoded


class _PartitionedFrames(PickledObjectFilesystemIOManager):
    def make_safe_partition_path(self, base_path, partition: str):
        return base_path.joinpath(*(safe_segment(s) for s in partition.removesuffix("/").split("/")))

    def handle_output(self, context: OutputContext, obj) -> None:
        if not context.has_asset_partitions or len(context.asset_partition_keys) <= 1:
            super().handle_output(context, obj)
            return
        for key, path in self._get_paths_for_partitions(context).items():
            self.make_directory(path.parent)
            self.dump_to_path(context, obj[obj[PARTITION_COLUMN] == key].reset_index(drop=True), path)
        context.add_output_metadata({"partitions_written": len(context.asset_partition_keys)})


class PartitionedFramesIOManager(ConfigurableIOManagerFactory):
    """Pickled pandas frames per asset partition; multi-partition outputs are split by `partition_key`."""

    base_dir: str | None = Field(default=None, description="default: the Dagster instance's storage folder")

    def create_io_manager(self, context: InitResourceContext) -> _PartitionedFrames:
        return _PartitionedFrames(base_dir=self.base_dir or context.instance.storage_directory())
