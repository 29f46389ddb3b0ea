"""The JetStream streams that capture what devices publish, and the subjects involved.

MQTT topic `muster/v1/devices/{id}/telemetry` is NATS subject `muster.v1.devices.{id}.telemetry`.
Each device-to-platform topic ingest stores gets its own work-queue stream: a message is kept until
ingest acks it (after its rows are committed), so a crash or restart of ingest loses nothing, and the
stream holds only the backlog. When the backlog hits its size limit the stream refuses new messages
(discard NEW) instead of silently dropping accepted ones: publishers see the failure and retry.
Twin (twin/reported, twin/get, status, heartbeat) and command/OTA replies get their own streams in
their own contexts; subjects of one stream may not overlap another's.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

DEVICE_SUBJECT_PREFIX = "muster.v1.devices"
DEVICE_TOPIC_PREFIX = "muster/v1/devices"


@dataclass(frozen=True)
class CaptureStream:
    name: str
    topic: str  # the last topic level, e.g. "telemetry"
    max_bytes: int
    max_age_seconds: float

    @property
    def subject(self) -> str:
        return f"{DEVICE_SUBJECT_PREFIX}.*.{self.topic}"

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name, subjects=[self.subject], retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE, discard=DiscardPolicy.NEW, max_bytes=self.max_bytes,
            max_age=self.max_age_seconds, max_msg_size=1024 * 1024, duplicate_window=120.0,
        )


GIB = 1024 ** 3
TELEMETRY = CaptureStream("MUSTER_TELEMETRY", "telemetry", max_bytes=8 * GIB, max_age_seconds=7 * 24 * 3600)
LOGS = CaptureStream("MUSTER_DEVICE_LOGS", "logs", max_bytes=2 * GIB, max_age_seconds=7 * 24 * 3600)
STREAMS = (TELEMETRY, LOGS)


async def ensure_stream(js: JetStreamContext, stream: CaptureStream) -> None:
    """Create the stream, or bring an existing one to this config."""
    try:
        await js.stream_info(stream.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(stream.config())
        return
    await js.update_stream(stream.config())


def device_of(subject: str) -> str | None:
    """`muster.v1.devices.{id}.<topic...>` -> id (None if the subject is not a device subject)."""
    parts = subject.split(".", 4)
    if len(parts) < 5 or ".".join(parts[:3]) != DEVICE_SUBJECT_PREFIX or not parts[3]:
        return None
    return parts[3]


def mqtt_topic(subject: str) -> str:
    return subject.replace(".", "/")


def errors_subject(device_id: str) -> str:
    """Where a device hears about refused messages: MQTT topic `muster/v1/devices/{id}/errors`."""
    return f"{DEVICE_SUBJECT_PREFIX}.{device_id}.errors"
