"""The device contract's subjects, and the JetStream streams that capture what devices publish.

MQTT topic `muster/v1/devices/{id}/telemetry` is NATS subject `muster.v1.devices.{id}.telemetry`.
Each context captures the device-to-platform topics it consumes in its own stream, so a crash or
restart of the consumer loses nothing; subjects of one stream may not overlap another's. A work-queue
stream keeps a message until its (one) consumer acks it; a topic read by two contexts goes in an
interest stream instead, which keeps it until every consumer has acked. When the backlog hits its
size limit the stream refuses new messages (discard NEW) rather than silently dropping accepted ones:
publishers see the failure and retry.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

DEVICE_SUBJECT_PREFIX = "muster.v1.devices"
DEVICE_TOPIC_PREFIX = "muster/v1/devices"
_PREFIX_TOKENS = DEVICE_SUBJECT_PREFIX.count(".") + 1


@dataclass(frozen=True)
class CaptureStream:
    name: str
    topics: tuple[str, ...]  # subject tokens after the device id, e.g. ("twin.reported", "status")
    max_bytes: int
    max_age_seconds: float
    retention: RetentionPolicy = RetentionPolicy.WORK_QUEUE
    max_msg_size: int = 1024 * 1024

    @property
    def subjects(self) -> list[str]:
        return [device_subject("*", topic) for topic in self.topics]

    @property
    def subject(self) -> str:
        """The one subject of a single-topic stream."""
        if len(self.topics) != 1:
            raise ValueError(f"stream {self.name} captures {len(self.topics)} topics")
        return self.subjects[0]

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name, subjects=self.subjects, retention=self.retention, storage=StorageType.FILE,
            discard=DiscardPolicy.NEW, max_bytes=self.max_bytes, max_age=self.max_age_seconds,
            max_msg_size=self.max_msg_size, duplicate_window=120.0,
        )


GIB = 1024 ** 3
DAY_SECONDS = 24 * 3600

HEARTBEAT = CaptureStream("MUSTER_HEARTBEAT", ("heartbeat",), max_bytes=GIB, max_age_seconds=7 * DAY_SECONDS,
                          retention=RetentionPolicy.INTEREST, max_msg_size=64 * 1024)
"""Devices' heartbeats: read by two contexts (twin keeps the latest health, ingest the history as
telemetry), so an interest stream: a message stays until both durables acked it."""


async def ensure_stream(js: JetStreamContext, stream: CaptureStream) -> None:
    """Create the stream, or bring an existing one to this config."""
    try:
        await js.stream_info(stream.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(stream.config())
        return
    await js.update_stream(stream.config())


def device_subject(device_id: str, *levels: str) -> str:
    """`muster.v1.devices.{id}.<levels...>` (a level may itself hold dots: "twin.reported")."""
    return ".".join((DEVICE_SUBJECT_PREFIX, device_id, *levels))


def device_topic(device_id: str, *levels: str) -> str:
    """The MQTT form of `device_subject`: `muster/v1/devices/{id}/<levels...>`."""
    return mqtt_topic(device_subject(device_id, *levels))


def device_of(subject: str) -> str | None:
    """`muster.v1.devices.{id}.<topic...>` -> id (None if the subject is not a device subject)."""
    parts = subject.split(".", _PREFIX_TOKENS + 1)
    if len(parts) <= _PREFIX_TOKENS + 1 or ".".join(parts[:_PREFIX_TOKENS]) != DEVICE_SUBJECT_PREFIX \
            or not parts[_PREFIX_TOKENS]:
        return None
    return parts[_PREFIX_TOKENS]


def levels_of(subject: str) -> tuple[str, ...]:
    """The tokens after the device id: `muster.v1.devices.d1.commands.c9.ack` -> ("commands", "c9", "ack")."""
    return tuple(subject.split(".")[_PREFIX_TOKENS + 1:])


def mqtt_topic(subject: str) -> str:
    return subject.replace(".", "/")


def errors_subject(device_id: str) -> str:
    """Where a device hears about refused messages: MQTT topic `muster/v1/devices/{id}/errors`."""
    return device_subject(device_id, "errors")
