"""What devices send on `status` (birth and will) and `heartbeat`, a batch at a time from the capture
streams, in one transaction per batch. A malformed message becomes a `DeviceError` (answered on the
device's `errors` topic) and changes nothing; a message from a device without a twin is retried a few
times (the registry projection may lag) before it is refused.

    status:    {"online": true, "firmware": "1.4.2", "heartbeat_interval": 60}   (birth, sent after connect)
               {"online": false}                                                (the MQTT will)
    heartbeat: {"battery": 81, "rssi": -67, ...}                                (see `health`)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from muster.runtime.db import Database, Scope
from muster.runtime.device_inbox import DeviceError, DeviceMessage, InboxResult, UnknownDevices
from muster.runtime.outbox import OutboxTables
from services.twin.health import Refusal, parse_heartbeat
from services.twin.presence_writer import Input, PresenceWriter, Traffic, Will

MAX_STATUS_BYTES = 4096
STALE_INTERVALS = 2.0
"""A device that announced its heartbeat interval is STALE after missing this many."""


def parse_status(data: bytes) -> tuple[bool, timedelta | None] | Refusal:
    """(online, stale_after) of a birth or will message."""
    if len(data) > MAX_STATUS_BYTES:
        return Refusal("PAYLOAD_TOO_LARGE", f"the status is {len(data)} bytes, over the limit of {MAX_STATUS_BYTES}")
    try:
        document: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return Refusal("NOT_JSON", f"the status is not UTF-8 JSON: {exc}")
    if not isinstance(document, dict):
        return Refusal("NOT_OBJECT", f"the status must be a JSON object, not {type(document).__name__}")
    online = document.get("online")
    if not isinstance(online, bool):
        return Refusal("INVALID_VALUE", 'online: must be true (birth) or false (will)')
    interval = document.get("heartbeat_interval")
    if interval is None:
        return online, None
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not math.isfinite(interval) \
            or not 0 < interval <= 7 * 24 * 3600:
        return Refusal("INVALID_VALUE", "heartbeat_interval: must be a number of seconds, above 0, at most a week")
    return online, timedelta(seconds=interval * STALE_INTERVALS)


class StatusInbox:
    """Handlers for the `status` and `heartbeat` inboxes (one `DeviceInbox` each)."""

    def __init__(self, db: Database, outbox: OutboxTables, *, unknown: UnknownDevices,
                 max_heartbeat_bytes: int = 4096, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._db = db
        self._outbox = outbox
        self._unknown_devices = unknown
        self._now = clock
        self._max_heartbeat = max_heartbeat_bytes

    async def status(self, messages: Sequence[DeviceMessage]) -> InboxResult:
        errors: list[DeviceError] = []
        inputs: list[tuple[int, Input]] = []
        for position, message in enumerate(messages):
            parsed = parse_status(message.data)
            if isinstance(parsed, Refusal):
                errors.append(DeviceError(message.device_id, message.topic, parsed.code, parsed.message))
            elif parsed[0]:
                inputs.append((position, Traffic(message.device_id, message.received, birth=True,
                                                 stale_after=parsed[1])))
            else:
                inputs.append((position, Will(message.device_id, message.received, message.stream_seq)))
        async with self._db.transaction(Scope.platform_wide()) as conn:
            unknown = await PresenceWriter(conn, self._outbox).apply([item for _, item in inputs])
        return self._unknown(messages, [p for p, item in inputs if item.device_id in unknown], errors)

    async def heartbeat(self, messages: Sequence[DeviceMessage]) -> InboxResult:
        errors: list[DeviceError] = []
        beats: list[tuple[int, DeviceMessage, dict[str, float]]] = []
        for position, message in enumerate(messages):
            parsed = parse_heartbeat(message.data, self._max_heartbeat)
            if isinstance(parsed, Refusal):
                errors.append(DeviceError(message.device_id, message.topic, parsed.code, parsed.message))
            else:
                beats.append((position, message, parsed))
        async with self._db.transaction(Scope.platform_wide()) as conn:
            writer = PresenceWriter(conn, self._outbox)
            tenants = await writer.repo.tenants_of(m.device_id for _, m, _ in beats)
            latest: dict[str, dict[str, Any]] = {}
            for _, message, values in beats:
                tenant = tenants.get(message.device_id)
                row = latest.get(message.device_id)
                if tenant is not None and (row is None or row["stream_seq"] < message.stream_seq):
                    latest[message.device_id] = {"device_id": message.device_id, "tenant_id": tenant,
                                                 "report_time": message.received, "stream_seq": message.stream_seq,
                                                 "health": values}
            await writer.repo.save_health([latest[d] for d in sorted(latest)])
            await writer.apply([Traffic(m.device_id, m.received) for _, m, _ in beats if m.device_id in tenants])
        return self._unknown(messages, [p for p, m, _ in beats if m.device_id not in tenants], errors)

    def _unknown(self, messages: Sequence[DeviceMessage], positions: Sequence[int],
                 errors: list[DeviceError]) -> InboxResult:
        retry: set[int] = set()
        self._unknown_devices.sort(messages, positions, self._now(), errors, retry)
        return InboxResult(errors=errors, retry=retry)
