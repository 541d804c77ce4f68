"""Where the analysis frames (image_attributes, image_embeddings) live between steps, one file per partition.

Dagster's filesystem IO manager refuses an output that spans several partitions, which is exactly what a
backfill run over a range of prefixes produces. This one splits such a frame by its `partition_key` column
and stores each partition on its own, so a partition written by a backfill run reads back like any other.
"""

from dagster import ConfigurableIOManagerFactory, InitResourceContext, OutputContext
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager
from pydantic import Field

PARTITION_COLUMN = "partition_key"


class _PartitionedFrames(PickledObjectFilesystemIOManager):
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
