"""Finds new and re-written images in S3 and requests runs for exactly the partitions they fall in.

The cursor is the newest LastModified seen plus the keys seen at that instant: an object written later in
the same second is still new, and a re-written key (new LastModified) is seen again, which a bare
"since key" cursor would miss.
"""


import hashlib
import json
from datetime import datetime

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor
from pydantic import BaseModel

from imgsearch_pipeline.jobs import ingest_job
from imgsearch_pipeline.partitions import image_prefixes
from imgsearch_pipeline.resources import ImageStoreResource
from imgsearch_pipeline.storage.s3 import S3Object, list_objects


class ListingCursor(BaseModel):
    last_modified: datetime | None = None
    keys_at_last: list[str] = []

    def is_new(self, obj: S3Object) -> bool:
        if self.last_modified is None or obj.last_modified > self.last_modified:
            return True
        return obj.last_modified == self.last_modified and obj.key not in self.keys_at_last

    def advanced(self, new: list[S3Object]) -> "ListingCursor":
        latest = max(o.last_modified for o in new)
        if self.last_modified is not None and latest < self.last_modified:
            return self
        keys = {o.key for o in new if o.last_modified == latest}
        if latest == self.last_modified:
            keys |= set(self.keys_at_last)
        return ListingCursor(last_modified=latest, keys_at_last=sorted(keys))


def plan_ticks(objects: list[S3Object], cursor: ListingCursor, images: ImageStoreResource
               ) -> tuple[dict[str, list[S3Object]], ListingCursor]:
    """New objects grouped by partition, and the cursor after them (pure: tested without Dagster)."""
    new = [o for o in objects if cursor.is_new(o)]
    by_partition: dict[str, list[S3Object]] = {}
    for obj in new:
        part = images.partition_of(obj.key)
        if part is not None:
            by_partition.setdefault(part, []).append(obj)
    return by_partition, (cursor.advanced(new) if new else cursor)


@sensor(job=ingest_job, minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING)
def new_images_sensor(context: SensorEvaluationContext, images: ImageStoreResource):
    cursor = ListingCursor.model_validate_json(context.cursor) if context.cursor else ListingCursor()
    objects = list(list_objects(images.client(), images.bucket, images.root_prefix))
    by_partition, next_cursor = plan_ticks(objects, cursor, images)
    if not by_partition:
        return SkipReason(f"no new images among {len(objects)} objects")
    known = set(context.instance.get_dynamic_partitions(image_prefixes.name))
    new_parts = sorted(set(by_partition) - known)
    requests = []
    for part, objs in sorted(by_partition.items()):
        digest = hashlib.sha256(json.dumps(sorted((o.key, o.etag) for o in objs)).encode()).hexdigest()[:16]
        requests.append(RunRequest(partition_key=part, run_key=f"{part}:{digest}",
                                   tags={"imgsearch/new_objects": str(len(objs))}))
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[image_prefixes.build_add_request(new_parts)] if new_parts else [],
        cursor=next_cursor.model_dump_json(),
    )
