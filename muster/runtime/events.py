"""Building and reading the event envelope (muster.events.v1.Event)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf.message import Message

from muster.events.v1.event_pb2 import Event
from muster.runtime.context import current_request_id
from muster.runtime.timestamps import seconds_nanos

EVENT_SUBJECT_PREFIX = "muster.events"
PLATFORM_TENANT_SEGMENT = "_"


def new_event(payload: Message, *, source: str, tenant: str | None, subject: str,
              time: datetime | None = None) -> Event:
    """Wrap a domain event payload in the envelope, with a fresh id."""
    event = Event(id=str(uuid.uuid4()), type=payload.DESCRIPTOR.name, tenant=tenant or "",
                  subject=subject, source=source, request_id=current_request_id())
    event.time.seconds, event.time.nanos = seconds_nanos(time or datetime.now(UTC))
    event.payload.Pack(payload)
    return event


def nats_subject(event: Event) -> str:
    """muster.events.<source>.<tenant or _>.<type>: consumers filter by context, tenant or type."""
    return f"{EVENT_SUBJECT_PREFIX}.{event.source}.{event.tenant or PLATFORM_TENANT_SEGMENT}.{event.type}"
