"""Event-driven alternative to the polling sensor: S3 event notifications from an SQS queue -> prefix runs.

The bucket notifies the queue (directly, or S3 -> SNS -> SQS) of `s3:ObjectCreated:*` and `s3:ObjectRemoved:*`.
Each tick receives a bounded batch of messages, maps their keys to prefix partitions and requests one ingest
run per affected partition. Removals request a run too: the inventory marks the object deleted and the index
drops it.

A message is deleted only after its run request has been committed, in two phases: a tick keeps the receipt
handles of the messages behind its run requests in its cursor, and the next tick deletes them first (Dagster
saves a tick's cursor only with its result). If a tick fails, its cursor is not saved, the messages reappear
after the visibility timeout and are planned again; the run key is derived from the message ids, so a message
that comes back cannot start a second run for the runs that were already requested. Messages that can never
produce a run (the `s3:TestEvent` sent when notifications are configured, other buckets, keys outside the
catalogue root, malformed bodies) are deleted in the tick that reads them; malformed ones are logged.
"""

import hashlib
import json
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, sensor
from pydantic import BaseModel

from imgsearch_pipeline.jobs import ingest_job
from imgsearch_pipeline.partitions import image_prefixes
from imgsearch_pipeline.resources import ImageStoreResource
from imgsearch_pipeline.resources.queue import QueueMessage, SqsQueueResource
from imgsearch_pipeline.storage.s3 import IMAGE_SUFFIXES

CREATED = "created"
REMOVED = "removed"
# eventName prefix -> kind. Lifecycle expirations remove objects as well.
_KINDS = {"ObjectCreated:": CREATED, "ObjectRemoved:": REMOVED, "LifecycleExpiration:": REMOVED}
# SNS messages that are not notifications (cross-account subscriptions must be confirmed by hand).
_SNS_NON_NOTIFICATIONS = {"SubscriptionConfirmation", "UnsubscribeConfirmation"}


class MalformedMessage(ValueError):
    """A message body that is not an S3 event notification: retrying it can never succeed."""


@dataclass(frozen=True)
class S3Event:
    kind: str  # CREATED or REMOVED
    event_name: str  # e.g. "ObjectCreated:Put"
    bucket: str
    key: str  # URL-decoded
    size: int | None = None
    sequencer: str | None = None


def _event_kind(event_name: str) -> str | None:
    name = event_name.removeprefix("s3:")
    return next((kind for prefix, kind in _KINDS.items() if name.startswith(prefix)), None)


def parse_record(record: object) -> S3Event | None:
    """One S3 event record; None for records that are not object creations/removals (restores, ACLs, ...)."""
    if not isinstance(record, dict):
        raise MalformedMessage(f"record is a {type(record).__name__}, not an object")
    if record.get("eventSource", "aws:s3") != "aws:s3":
        return None
    event_name = record.get("eventName")
    if not isinstance(event_name, str):
        raise MalformedMessage("record without an eventName")
    kind = _event_kind(event_name)
    if kind is None:
        return None
    try:
        s3 = record["s3"]
        bucket = s3["bucket"]["name"]
        obj = s3["object"]
        raw_key = obj["key"]
    except (KeyError, TypeError) as e:
        raise MalformedMessage(f"{event_name} record without s3.bucket.name / s3.object.key ({e!r})") from e
    if not isinstance(bucket, str) or not isinstance(raw_key, str) or not raw_key:
        raise MalformedMessage(f"{event_name} record with a non-string bucket or key")
    size = obj.get("size")
    sequencer = obj.get("sequencer")
    return S3Event(
        kind=kind,
        event_name=event_name.removeprefix("s3:"),
        bucket=bucket,
        # S3 form-encodes keys in notifications: "+" is a space, "%2B" a literal plus.
        key=unquote_plus(raw_key),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        sequencer=sequencer if isinstance(sequencer, str) else None,
    )


def _load_json(text: object, what: str) -> object:
    if not isinstance(text, str):
        raise MalformedMessage(f"{what} is not a string")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise MalformedMessage(f"{what} is not JSON: {e.msg} at {e.pos}") from e


def parse_body(body: str) -> list[S3Event]:
    """The S3 events of an SQS message body: S3 -> SQS, or S3 -> SNS -> SQS (a "Notification" whose "Message"
    holds the S3 event JSON; raw message delivery gives the plain shape).

    `s3:TestEvent` and records that are not creations/removals give no event. Raises MalformedMessage for
    anything else; S3 sends one record per message, so a bad record condemns its whole message.
    """
    doc = _load_json(body, "body")
    if isinstance(doc, dict) and ("TopicArn" in doc or doc.get("Type") == "Notification"):
        sns_type = doc.get("Type")
        if sns_type in _SNS_NON_NOTIFICATIONS:
            raise MalformedMessage(f"SNS {sns_type} message, not an S3 event (confirm it via its SubscribeURL)")
        if sns_type != "Notification":
            raise MalformedMessage(f"SNS message of type {sns_type!r}, not a Notification")
        doc = _load_json(doc.get("Message"), "SNS Message")
    if not isinstance(doc, dict):
        raise MalformedMessage(f"body is a JSON {type(doc).__name__}, not an object")
    if doc.get("Event") == "s3:TestEvent":
        return []
    records = doc.get("Records")
    if not isinstance(records, list):
        raise MalformedMessage("neither an S3 event (Records) nor an s3:TestEvent")
    events = []
    for i, record in enumerate(records):
        try:
            event = parse_record(record)
        except MalformedMessage as e:
            raise MalformedMessage(f"record {i}: {e}") from e
        if event is not None:
            events.append(event)
    return events


@dataclass
class PartitionChanges:
    """What a tick's messages say about one partition: the messages behind its run and the keys they name."""

    message_ids: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)

    def run_key(self, partition: str) -> str:
        """Stable for the same messages, so a redelivered batch cannot start the same run twice."""
        digest = hashlib.sha256("\n".join(sorted(self.message_ids)).encode()).hexdigest()[:16]
        return f"{partition}:sqs:{digest}"


@dataclass
class EventPlan:
    partitions: dict[str, PartitionChanges] = field(default_factory=dict)
    confirm_after_commit: list[QueueMessage] = field(default_factory=list)  # behind a run: delete next tick
    drop_now: list[QueueMessage] = field(default_factory=list)  # no run can come of them: delete now
    malformed: list[tuple[QueueMessage, str]] = field(default_factory=list)  # delete now and report


def is_catalogue_image(event: S3Event, images: ImageStoreResource) -> bool:
    return event.bucket == images.bucket and event.key.lower().endswith(IMAGE_SUFFIXES)


def plan_messages(messages: list[QueueMessage], images: ImageStoreResource) -> EventPlan:
    """Group received messages by the partitions they affect (pure: tested without Dagster or SQS)."""
    plan = EventPlan()
    for msg in messages:
        try:
            events = parse_body(msg.body)
        except MalformedMessage as e:
            plan.malformed.append((msg, str(e)))
            continue
        affects_a_partition = False
        for event in events:
            if not is_catalogue_image(event, images):
                continue
            part = images.partition_of(event.key)
            if part is None:
                continue
            changes = plan.partitions.setdefault(part, PartitionChanges())
            changes.message_ids.add(msg.message_id)
            (changes.created if event.kind == CREATED else changes.removed).add(event.key)
            affects_a_partition = True
        (plan.confirm_after_commit if affects_a_partition else plan.drop_now).append(msg)
    return plan


class PendingDelete(BaseModel):
    message_id: str
    receipt_handle: str


class EventCursor(BaseModel):
    """Receipt handles of the messages behind the previous tick's run requests, deleted at the next tick."""

    to_delete: list[PendingDelete] = []


def _delete(context: SensorEvaluationContext, queue: SqsQueueResource, client, messages: list, why: str) -> None:
    if not messages:
        return
    failures = queue.delete([m.receipt_handle for m in messages], client)
    for failure in failures:
        # An expired handle: the message was (or will be) received again and its run key dedupes the run.
        context.log.warning(f"could not delete a message ({why}): {failure.code} {failure.message}")
    context.log.info(f"deleted {len(messages) - len(failures)} of {len(messages)} messages ({why})")


@sensor(job=ingest_job, minimum_interval_seconds=30, default_status=DefaultSensorStatus.STOPPED)
def s3_event_sensor(context: SensorEvaluationContext, images: ImageStoreResource, s3_event_queue: SqsQueueResource):
    """Requests ingest runs for the prefixes named by S3 event notifications read from SQS.

    Starts STOPPED: the polling `new_images_sensor` is the default. To switch: point the bucket's event
    notifications (s3:ObjectCreated:*, s3:ObjectRemoved:*; through SNS works too) at an SQS queue, set
    IMGSEARCH_SQS_QUEUE_URL (plus IMGSEARCH_SQS_ENDPOINT_URL for a local endpoint) so the code location defines
    the `s3_event_queue` resource and this sensor, then start `s3_event_sensor` and stop `new_images_sensor`
    in the UI (or `dagster sensor start s3_event_sensor` / `dagster sensor stop new_images_sensor`). Keep the
    queue's visibility timeout (`visibility_timeout_s`) above the sensor interval plus one tick.
    """
    cursor = EventCursor.model_validate_json(context.cursor) if context.cursor else EventCursor()
    client = s3_event_queue.client()
    # Phase two of the previous tick: its cursor was saved, so its run requests were committed.
    _delete(context, s3_event_queue, client, cursor.to_delete, "their runs were requested by the previous tick")

    messages = s3_event_queue.receive(client)
    plan = plan_messages(messages, images)
    for msg, reason in plan.malformed:
        context.log.warning(f"deleting malformed message {msg.message_id}: {reason}; body: {msg.body[:300]!r}")
    _delete(context, s3_event_queue, client, plan.drop_now + [m for m, _ in plan.malformed],
            "test events, malformed or outside the catalogue")

    next_cursor = EventCursor(to_delete=[PendingDelete(message_id=m.message_id, receipt_handle=m.receipt_handle)
                                         for m in plan.confirm_after_commit]).model_dump_json()
    summary = (f"{len(messages)} messages: {len(plan.confirm_after_commit)} for catalogue images, "
               f"{len(plan.drop_now)} ignored, {len(plan.malformed)} malformed")
    if not plan.partitions:
        return SensorResult(skip_reason=f"no catalogue changes ({summary})", cursor=next_cursor)

    known = set(context.instance.get_dynamic_partitions(image_prefixes.name))
    new_parts = sorted(set(plan.partitions) - known)
    requests = [
        RunRequest(
            partition_key=part,
            run_key=changes.run_key(part),
            tags={
                "imgsearch/s3_created": str(len(changes.created)),
                "imgsearch/s3_removed": str(len(changes.removed)),
                "imgsearch/sqs_messages": str(len(changes.message_ids)),
            },
        )
        for part, changes in sorted(plan.partitions.items())
    ]
    context.log.info(f"{summary}; runs for {len(requests)} partitions")
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[image_prefixes.build_add_request(new_parts)] if new_parts else [],
        cursor=next_cursor,
    )
