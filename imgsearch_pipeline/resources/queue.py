"""The SQS queue that receives the bucket's S3 event notifications (directly, or through an SNS topic).

Only `s3_event_sensor` reads it. Set a redrive policy (dead-letter queue) on the queue in production: a message
whose tick keeps failing is then moved aside after a few receives instead of being retried forever.
"""

import re
from dataclasses import dataclass

import boto3
from botocore.config import Config
from dagster import ConfigurableResource
from pydantic import Field

SQS_BATCH = 10  # ReceiveMessage and DeleteMessageBatch take at most 10 messages per call
_AWS_QUEUE_HOST = re.compile(r"^https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com(\.cn)?/")


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str


@dataclass(frozen=True)
class DeleteFailure:
    receipt_handle: str
    code: str
    message: str


class SqsQueueResource(ConfigurableResource):
    queue_url: str = Field(description="the queue's URL, e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/name")
    endpoint_url: str | None = Field(default=None, description="None means AWS SQS itself; set for moto/ElasticMQ")
    region_name: str | None = Field(default=None, description="None: taken from an AWS queue URL, else us-east-1")
    aws_access_key_id: str | None = Field(
        default=None, description="None: the default credential chain (dummy credentials for a local endpoint)"
    )
    aws_secret_access_key: str | None = None
    wait_time_s: int = Field(
        default=5, ge=0, le=10,
        description="long-poll wait of a tick's first receive; capped well under the sensor tick timeout",
    )
    max_messages: int = Field(
        default=100, ge=1, le=500, description="messages received per tick (their receipt handles go in the cursor)"
    )
    visibility_timeout_s: int = Field(
        default=300, ge=1, le=43200,
        description="how long received messages stay hidden; must exceed the sensor interval plus a tick",
    )

    def region(self) -> str:
        if self.region_name:
            return self.region_name
        match = _AWS_QUEUE_HOST.match(self.queue_url)
        return match.group(1) if match else "us-east-1"

    def client(self):
        config = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=10,
                        read_timeout=max(30, self.wait_time_s + 20))
        kwargs: dict = {"region_name": self.region(), "config": config}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.aws_access_key_id:
            kwargs |= {"aws_access_key_id": self.aws_access_key_id,
                       "aws_secret_access_key": self.aws_secret_access_key}
        elif self.endpoint_url and boto3.session.Session().get_credentials() is None:
            # A local endpoint (moto, ElasticMQ) accepts any credentials; AWS uses the default chain.
            kwargs |= {"aws_access_key_id": "imgsearch", "aws_secret_access_key": "imgsearch"}
        return boto3.client("sqs", **kwargs)

    def receive(self, client=None) -> list[QueueMessage]:
        """Up to `max_messages`: the first call long-polls `wait_time_s`, the rest only take what is there."""
        client = client or self.client()
        messages: list[QueueMessage] = []
        wait = self.wait_time_s
        while len(messages) < self.max_messages:
            response = client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(SQS_BATCH, self.max_messages - len(messages)),
                WaitTimeSeconds=wait,
                VisibilityTimeout=self.visibility_timeout_s,
            )
            batch = response.get("Messages", [])
            if not batch:
                break
            messages += [QueueMessage(m["MessageId"], m["ReceiptHandle"], m.get("Body", "")) for m in batch]
            wait = 0
        return messages

    def delete(self, receipt_handles: list[str], client=None) -> list[DeleteFailure]:
        """Delete by receipt handle, 10 per call; returns the handles SQS refused (e.g. expired handles)."""
        client = client or self.client()
        handles = list(dict.fromkeys(receipt_handles))
        failures: list[DeleteFailure] = []
        for start in range(0, len(handles), SQS_BATCH):
            chunk = handles[start:start + SQS_BATCH]
            response = client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)],
            )
            for failed in response.get("Failed", []):
                failures.append(DeleteFailure(chunk[int(failed["Id"])], failed.get("Code", ""),
                                              failed.get("Message", "")))
        return failures
