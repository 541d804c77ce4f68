"""The SQS event sensor: parsing units, then S3 -> SQS notifications on the real (moto) server, evaluated with
Dagster's own sensor test API."""

import json
import logging
import time
import uuid
from dataclasses import dataclass

import boto3
import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context
from dagster_aws.s3 import S3Resource

from imgsearch_pipeline.resources import ImageStoreResource
from imgsearch_pipeline.resources.queue import QueueMessage, SqsQueueResource
from imgsearch_pipeline.sensors.s3_events import (
    CREATED,
    REMOVED,
    EventCursor,
    MalformedMessage,
    parse_body,
    plan_messages,
    s3_event_sensor,
)

CREDS = {"aws_access_key_id": "imgsearch", "aws_secret_access_key": "imgsearch"}


def _record(key: str, name: str = "ObjectCreated:Put", bucket: str = "shop", **obj) -> dict:
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": name,
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, **obj}}}


def _body(*records: dict) -> str:
    return json.dumps({"Records": list(records)})


def _sns(inner: str) -> str:
    return json.dumps({"Type": "Notification", "MessageId": str(uuid.uuid4()),
                       "TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Message": inner})


def _images(bucket: str = "shop", endpoint: str | None = None) -> ImageStoreResource:
    return ImageStoreResource(s3=S3Resource(endpoint_url=endpoint, region_name="us-east-1", **CREDS),
                              bucket=bucket, feed_key=None)


# --- parsing ---------------------------------------------------------------------------------------------


def test_keys_are_form_decoded_plus_is_space_and_percent_2b_is_plus():
    [event] = parse_body(_body(_record("catalog/a/b/p+1/x%2By%C3%BC.jpg", size=7, sequencer="00AB")))
    assert event.key == "catalog/a/b/p 1/x+yü.jpg"
    assert (event.kind, event.event_name, event.bucket, event.size, event.sequencer) == (
        CREATED, "ObjectCreated:Put", "shop", 7, "00AB")
    [removed] = parse_body(_body(_record("catalog%2Fa%2Fb%2Fc.jpg", "ObjectRemoved:DeleteMarkerCreated")))
    assert (removed.kind, removed.key, removed.size, removed.sequencer) == (REMOVED, "catalog/a/b/c.jpg", None, None)


def test_sns_wrapped_bodies_are_unwrapped():
    inner = _body(_record("catalog/a/b/p+1/1.jpg"), _record("catalog/a/b/p1/2.jpg", "ObjectRemoved:Delete"))
    events = parse_body(_sns(inner))
    assert [(e.kind, e.key) for e in events] == [(CREATED, "catalog/a/b/p 1/1.jpg"), (REMOVED, "catalog/a/b/p1/2.jpg")]
    assert parse_body(_sns(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "shop"}))) == []


def test_test_events_and_other_event_types_give_no_events():
    assert parse_body(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "shop"})) == []
    other = [_record("catalog/a/b/c.jpg", "ObjectRestore:Completed"), _record("catalog/a/b/c.jpg", "ObjectAcl:Put"),
             {**_record("catalog/a/b/c.jpg"), "eventSource": "aws:s3-outposts"}]
    assert parse_body(_body(*other)) == []
    [expired] = parse_body(_body(_record("catalog/a/b/c.jpg", "LifecycleExpiration:Delete")))
    assert expired.kind == REMOVED


@pytest.mark.parametrize("body, reason", [
    ("not json", "not JSON"),
    ("[1, 2]", "not an object"),
    ('{"hello": "world"}', "neither"),
    ('{"Records": "x"}', "neither"),
    ('{"Records": [42]}', "record 0"),
    (_body(_record("k.jpg"), {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "shop"}}}), "record 1"),
    (_body({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "shop"}, "object": {"key": 3}}}), "non-string"),
    (json.dumps({"Type": "Notification", "Message": "{oops"}), "SNS Message is not JSON"),
    (json.dumps({"Type": "SubscriptionConfirmation", "TopicArn": "arn", "SubscribeURL": "https://x"}), "Subscribe"),
])
def test_malformed_bodies_raise(body, reason):
    with pytest.raises(MalformedMessage, match=reason):
        parse_body(body)


def _msg(body: str, message_id: str | None = None) -> QueueMessage:
    message_id = message_id or str(uuid.uuid4())
    return QueueMessage(message_id, f"rh-{message_id}", body)


def test_plan_groups_by_partition_and_drops_what_cannot_run():
    images = _images()
    a = _msg(_body(_record("catalog/women/dress/d1/1.jpg"), _record("catalog/men/shirt/s1/1.jpg")))
    b = _msg(_body(_record("catalog/women/dress/d2/1.jpg", "ObjectRemoved:Delete")))
    outside = [_msg(_body(_record("catalog/women/dress/d1/1.jpg", bucket="other-bucket"))),
               _msg(_body(_record("feeds/catalog.jsonl"), _record("elsewhere/a/b/c.jpg"))),
               _msg(_body(_record("catalog/short.jpg"))),
               _msg(_body(_record("catalog/women/dress/notes.txt"))),
               _msg(json.dumps({"Event": "s3:TestEvent"}))]
    bad = _msg("{")
    plan = plan_messages([a, *outside, b, bad], images)
    assert sorted(plan.partitions) == ["catalog/men/shirt/", "catalog/women/dress/"]
    dress = plan.partitions["catalog/women/dress/"]
    assert dress.message_ids == {a.message_id, b.message_id}
    assert (dress.created, dress.removed) == ({"catalog/women/dress/d1/1.jpg"}, {"catalog/women/dress/d2/1.jpg"})
    assert plan.partitions["catalog/men/shirt/"].message_ids == {a.message_id}
    assert plan.confirm_after_commit == [a, b]
    assert plan.drop_now == outside
    assert [m for m, _ in plan.malformed] == [bad]


def test_run_keys_depend_on_the_message_ids_only():
    images = _images()
    a = _msg(_body(_record("catalog/w/d/1/1.jpg")), "m-a")
    b = _msg(_body(_record("catalog/w/d/2/1.jpg")), "m-b")
    key = plan_messages([a, b], images).partitions["catalog/w/d/"].run_key("catalog/w/d/")
    # Redelivered: new receipt handles, another order, a duplicate delivery in the same batch.
    again = [QueueMessage("m-b", "rh-2", b.body), QueueMessage("m-a", "rh-3", a.body),
             QueueMessage("m-a", "rh-4", a.body)]
    assert plan_messages(again, images).partitions["catalog/w/d/"].run_key("catalog/w/d/") == key
    assert plan_messages([a], images).partitions["catalog/w/d/"].run_key("catalog/w/d/") != key
    c = _msg(a.body, "m-c")
    assert plan_messages([c, b], images).partitions["catalog/w/d/"].run_key("catalog/w/d/") != key
    assert key.startswith("catalog/w/d/:")


# --- on the moto server ------------------------------------------------------------------------------------


class BrokenImages(ImageStoreResource):
    """Fails while planning, after the messages were received: simulates a tick that raises."""

    def partition_of(self, key: str) -> str | None:
        raise RuntimeError("partition mapping failed")


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]):
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Notified:
    """A bucket whose creations and removals notify a queue on the moto server."""

    endpoint: str
    bucket: str
    queue_url: str
    s3: object
    sqs: object
    instance: DagsterInstance

    def images(self, cls=ImageStoreResource) -> ImageStoreResource:
        return cls(s3=S3Resource(endpoint_url=self.endpoint, region_name="us-east-1", **CREDS), bucket=self.bucket,
                   feed_key=None)

    def queue(self, **kw) -> SqsQueueResource:
        return SqsQueueResource(queue_url=self.queue_url, endpoint_url=self.endpoint, wait_time_s=0, **CREDS, **kw)

    def tick(self, cursor: str | None = None, images: ImageStoreResource | None = None,
             log: list[logging.LogRecord] | None = None, **queue_kw):
        resources = {"images": images or self.images(), "s3_event_queue": self.queue(**queue_kw)}
        with build_sensor_context(instance=self.instance, resources=resources, cursor=cursor) as ctx:
            if log is not None:
                ctx.log.addHandler(_Collect(log))
            result = s3_event_sensor(ctx)
        assert isinstance(result, SensorResult)
        return result

    def counts(self) -> tuple[int, int]:
        """(visible, in flight) messages in the queue."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def put(self, *keys: str) -> None:
        for key in keys:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"x")


@pytest.fixture
def notified(s3_server) -> Notified:
    kw = {"endpoint_url": s3_server, "region_name": "us-east-1", **CREDS}
    s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
    suffix = uuid.uuid4().hex[:10]
    bucket = f"events-{suffix}"
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName=f"events-{suffix}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
    return Notified(s3_server, bucket, queue_url, s3, sqs, DagsterInstance.ephemeral())


def _parts(result: SensorResult) -> list[str]:
    return sorted(r.partition_key for r in result.run_requests)


def test_runs_for_exactly_the_affected_partitions_and_two_phase_delete(notified):
    notified.put("catalog/women/summer dresses/p 1/ü 1.jpg", "catalog/women/summer dresses/p+2/a%2Bb.jpg",
                 "catalog/men/shirts/s1/1.jpg", "catalog/men/shirts/s1/2.jpg")
    notified.put("feeds/catalog.jsonl", "elsewhere/a/b/c.jpg", "catalog/short.jpg")  # outside the catalogue
    # The test event and 7 object notifications are waiting.
    assert notified.counts() == (8, 0)

    # The planning step on the real messages: keys arrive decoded.
    received = notified.queue(visibility_timeout_s=1).receive()
    assert len(received) == 8
    plan = plan_messages(received, notified.images())
    assert plan.partitions["catalog/women/summer dresses/"].created == {
        "catalog/women/summer dresses/p 1/ü 1.jpg", "catalog/women/summer dresses/p+2/a%2Bb.jpg"}
    assert len(plan.drop_now) == 4 and plan.malformed == []
    time.sleep(1.2)  # the planning look made them invisible for a second

    first = notified.tick()
    assert _parts(first) == ["catalog/men/shirts/", "catalog/women/summer dresses/"]
    [add] = first.dynamic_partitions_requests
    assert sorted(add.partition_keys) == _parts(first)
    shirts = next(r for r in first.run_requests if r.partition_key == "catalog/men/shirts/")
    assert (shirts.tags["imgsearch/s3_created"], shirts.tags["imgsearch/sqs_messages"]) == ("2", "2")
    # The test event and the 3 outside the catalogue are gone at once; the 4 behind runs are only in flight.
    assert notified.counts() == (0, 4)
    assert len(EventCursor.model_validate_json(first.cursor).to_delete) == 4

    notified.instance.add_dynamic_partitions("image_prefixes", list(add.partition_keys))  # what the daemon does
    second = notified.tick(cursor=first.cursor)
    assert second.run_requests == [] and "no catalogue changes" in second.skip_reason.skip_message
    assert notified.counts() == (0, 0)
    assert EventCursor.model_validate_json(second.cursor).to_delete == []

    # A new image in a known partition: a run, no partition to add.
    notified.put("catalog/men/shirts/s2/1.jpg")
    third = notified.tick(cursor=second.cursor)
    assert _parts(third) == ["catalog/men/shirts/"] and third.dynamic_partitions_requests == []


def test_redelivered_messages_request_the_same_run_keys(notified):
    notified.put("catalog/women/dress/d1/1.jpg", "catalog/men/shirt/s1/1.jpg")
    first = notified.tick(visibility_timeout_s=1)
    keys = {r.partition_key: r.run_key for r in first.run_requests}
    assert len(keys) == 2 and len(set(keys.values())) == 2
    # The first tick's cursor is never saved (as if its result was lost): the messages come back.
    time.sleep(1.2)
    assert notified.counts() == (2, 0)
    again = notified.tick(visibility_timeout_s=1)
    assert {r.partition_key: r.run_key for r in again.run_requests} == keys
    notified.tick(cursor=again.cursor)
    assert notified.counts() == (0, 0)


def test_a_failing_tick_leaves_its_messages_in_the_queue(notified):
    notified.put("catalog/women/dress/d1/1.jpg", "catalog/women/dress/d1/2.jpg")
    with pytest.raises(Exception, match="partition mapping failed"):
        notified.tick(images=notified.images(BrokenImages), visibility_timeout_s=1)
    assert notified.counts() == (0, 3)  # test event included: nothing was deleted
    time.sleep(1.2)
    assert notified.counts() == (3, 0)
    result = notified.tick()
    assert _parts(result) == ["catalog/women/dress/"]
    assert result.run_requests[0].tags["imgsearch/sqs_messages"] == "2"


def test_a_failing_tick_still_deletes_what_the_previous_tick_committed(notified):
    notified.put("catalog/women/dress/d1/1.jpg")
    first = notified.tick()
    notified.put("catalog/women/dress/d1/2.jpg")
    with pytest.raises(Exception, match="partition mapping failed"):
        notified.tick(cursor=first.cursor, images=notified.images(BrokenImages))
    assert notified.counts() == (0, 1)  # only the new message, received by the failed tick, remains


def test_a_removal_requests_its_partition(notified):
    notified.put("catalog/women/dress/d1/1.jpg", "catalog/men/shirt/s1/1.jpg")
    first = notified.tick()
    [add] = first.dynamic_partitions_requests
    notified.instance.add_dynamic_partitions("image_prefixes", list(add.partition_keys))
    notified.s3.delete_object(Bucket=notified.bucket, Key="catalog/men/shirt/s1/1.jpg")
    second = notified.tick(cursor=first.cursor)
    assert _parts(second) == ["catalog/men/shirt/"]
    [run] = second.run_requests
    assert (run.tags["imgsearch/s3_removed"], run.tags["imgsearch/s3_created"]) == ("1", "0")
    assert second.dynamic_partitions_requests == []
    assert run.run_key not in {r.run_key for r in first.run_requests}


def test_malformed_messages_are_removed_and_reported(notified):
    notified.put("catalog/women/dress/d1/1.jpg")
    notified.sqs.send_message(QueueUrl=notified.queue_url, MessageBody="definitely not json")
    notified.sqs.send_message(QueueUrl=notified.queue_url, MessageBody=json.dumps({"Records": [{"eventName": 1}]}))
    log: list[logging.LogRecord] = []
    result = notified.tick(log=log)
    assert _parts(result) == ["catalog/women/dress/"]
    assert notified.counts() == (0, 1)  # the two malformed and the test event are gone; the image's waits
    warnings = [r.getMessage() for r in log if r.levelno >= logging.WARNING]
    assert sum("malformed message" in w for w in warnings) == 2
    assert any("definitely not json" in w and "not JSON" in w for w in warnings)


def test_objects_outside_the_catalogue_are_ignored(notified):
    notified.put("feeds/catalog.jsonl", "elsewhere/women/dress/d1/1.jpg", "catalog/short.jpg",
                 "catalog/women/dress/readme.txt")
    result = notified.tick()
    assert result.run_requests == [] and result.dynamic_partitions_requests in (None, [])
    assert "5 ignored" in result.skip_reason.skip_message  # the test event and the four objects
    assert notified.counts() == (0, 0)
    assert EventCursor.model_validate_json(result.cursor).to_delete == []


def test_receive_is_bounded_by_max_messages(notified):
    for i in range(23):
        notified.sqs.send_message(QueueUrl=notified.queue_url, MessageBody=f"m{i}")
    got = notified.queue(max_messages=12).receive()
    assert len(got) == 12 and len({m.message_id for m in got}) == 12
    rest = notified.queue(max_messages=100).receive()
    assert len(rest) == 24 - 12  # 23 sent plus the test event


def test_region_comes_from_an_aws_queue_url():
    assert SqsQueueResource(queue_url="https://sqs.eu-west-1.amazonaws.com/1/q").region() == "eu-west-1"
    assert SqsQueueResource(queue_url="https://sqs.eu-west-1.amazonaws.com/1/q", region_name="us-west-2").region() \
        == "us-west-2"
    assert SqsQueueResource(queue_url="http://127.0.0.1:4566/1/q").region() == "us-east-1"
