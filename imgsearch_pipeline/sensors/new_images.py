"""Finds new, re-written and deleted images in S3 and requests runs for exactly the partitions they fall in.

The cursor is the newest LastModified seen plus the keys seen at that instant: an object written later in
the same second is still new, and a re-written key (new LastModified) is seen again, which a bare
"since key" cursor would miss. Objects Postgres already holds with the same ETag are not new (a catalogue
ingested before the sensor first ran causes no runs), and live keys missing from the listing are deletions.
"""


import hashlib
import json
from datetime import datetime

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor
from pydantic import BaseModel

from imgsearch_pipeline.jobs import ingest_job
from imgsearch_pipeline.partitions import image_prefixes
from imgsearch_pipeline.resources import ImageStoreResource, PostgresResource
from imgsearch_pipeline.storage import postgres as pg
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


class Plan(BaseModel):
    """What one tick found: per partition, the new or changed objects and the deleted keys."""

    changed: dict[str, list[S3Object]] = {}
    deleted: dict[str, list[str]] = {}

    @property
    def partitions(self) -> list[str]:
        return sorted(set(self.changed) | set(self.deleted))


def plan_ticks(objects: list[S3Object], cursor: ListingCursor, images: ImageStoreResource,
               known: dict[str, str | None] | None = None) -> tuple[Plan, ListingCursor]:
    """Group what changed by partition, and the cursor after it (pure: tested without Dagster).

    `known` is Postgres' key -> ETag of live images; without it only the cursor decides what is new."""
    new = [o for o in objects if cursor.is_new(o)]
    plan = Plan()
    for obj in new:
        part = images.partition_of(obj.key)
        if part is not None and (known is None or known.get(obj.key) != obj.etag):
            plan.changed.setdefault(part, []).append(obj)
    if known is not None:
        listed = {o.key for o in objects}
        for key in sorted(set(known) - listed):
            if (part := images.partition_of(key)) is not None:
                plan.deleted.setdefault(part, []).append(key)
    return plan, (cursor.advanced(new) if new else cursor)


@sensor(job=ingest_job, minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING)
def new_images_sensor(context: SensorEvaluationContext, images: ImageStoreResource, postgres: PostgresResource):
    cursor = ListingCursor.model_validate_json(context.cursor) if context.cursor else ListingCursor()
    objects = list(list_objects(images.client(), images.bucket, images.root_prefix))
    with postgres.connect() as conn:
        known = pg.live_etags(conn, images.root_prefix)
    plan, next_cursor = plan_ticks(objects, cursor, images, known)
    if not plan.partitions:
        return SensorResult(skip_reason=SkipReason(f"nothing new, changed or deleted among {len(objects)} objects"),
                            cursor=next_cursor.model_dump_json())
    existing = set(context.instance.get_dynamic_partitions(image_prefixes.name))
    new_parts = sorted(set(plan.changed) - existing)
    requests = []
    for part in plan.partitions:
        changed, deleted = plan.changed.get(part, []), plan.deleted.get(part, [])
        state = sorted((o.key, o.etag) for o in changed) + sorted((k, "deleted") for k in deleted)
        digest = hashlib.sha256(json.dumps(state).encode()).hexdigest()[:16]
        requests.append(RunRequest(partition_key=part, run_key=f"{part}:{digest}",
                                   tags={"imgsearch/new_objects": str(len(changed)),
                                         "imgsearch/deleted_objects": str(len(deleted))}))
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[image_prefixes.build_add_request(new_parts)] if new_parts else [],
        cursor=next_cursor.model_dump_json(),
    )
