"""NATS's own connect/disconnect advisories, made durable, applied, and reconciled with the server.

NATS publishes `$SYS.ACCOUNT.<account>.CONNECT` / `.DISCONNECT` as core messages to the system account:
whoever does not listen at that moment never sees them. Every twin replica listens (as the system
user) and republishes each MQTT device's advisory into the events stream as a
`ConnectionAdvisoryObserved`, with an event id derived from the advisory id, so JetStream keeps one
copy however many replicas saw it; a durable `EventConsumer` then applies it (idempotent by event id).
What happened while no replica listened is found by `reconcile`: the server's CONNZ against the
sessions the twin believes open (missed disconnects close as NOT_CONNECTED, missed connects open).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.runtime.db import Database, Scope
from muster.runtime.events import nats_subject, new_event
from muster.runtime.outbox import OutboxTables
from muster.twin.v1 import events_pb2 as tev
from services.twin.connectivity import (
    ConnectionEvent,
    DisconnectReason,
    Kind,
    NotADeviceEvent,
    Session,
    parse_system_event,
    parse_time,
)
from services.twin.presence_writer import SOURCE, PresenceWriter

log = structlog.get_logger(__name__)

ACCOUNT = "MUSTER"
ADVISORY_SUBJECTS = (f"$SYS.ACCOUNT.{ACCOUNT}.CONNECT", f"$SYS.ACCOUNT.{ACCOUNT}.DISCONNECT",
                     "$SYS.ACCOUNT.$G.DISCONNECT")  # a refused connect never joins MUSTER
DURABLE = "twin-connections"
FILTER_SUBJECTS = (f"muster.events.{SOURCE}.*.ConnectionAdvisoryObserved",)
_NAMESPACE = uuid.UUID("6f1d1f7c-7a43-4c59-9d1e-1f5b4c0e2a77")
UNKNOWN_DEVICE_GRACE = timedelta(seconds=30)
"""An advisory about a device without a twin is retried this long (the registry projection may lag),
then dropped (a device that does not exist: a refused connect with a made-up name)."""


def advisory_event(document: dict[str, Any], raw: bytes) -> Event | None:
    """The envelope for one advisory, or None when it is not about an MQTT device."""
    try:
        parsed = parse_system_event(document)
    except NotADeviceEvent:
        return None
    payload = tev.ConnectionAdvisoryObserved(device=f"devices/{parsed.device_id}", advisory=raw)
    event = new_event(payload, source=SOURCE, tenant=None, subject=payload.device, time=parsed.time)
    event.id = str(uuid.uuid5(_NAMESPACE, str(document.get("id"))))
    return event


class AdvisoryRelay:
    """Listens to the advisories (system account) and republishes them into JetStream (our account)."""

    def __init__(self, system_nc: NATS, js: JetStreamContext, *, max_batch: int = 500) -> None:
        self._sys = system_nc
        self._js = js
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._max_batch = max_batch

    async def subscribe(self) -> None:
        for subject in ADVISORY_SUBJECTS:
            await self._sys.subscribe(subject, cb=self._received, pending_msgs_limit=200_000)
        await self._sys.flush()

    async def _received(self, msg: Msg) -> None:
        try:
            document = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            return
        event = advisory_event(document, msg.data) if isinstance(document, dict) else None
        if event is not None:
            self._queue.put_nowait(event)

    async def run(self) -> None:
        """Republish what `subscribe` queues (call that first, before the process reports healthy)."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._publish(batch)

    async def _publish(self, batch: Sequence[Event]) -> None:
        """Publish until JetStream has them all (a duplicate id is dropped by the stream)."""
        delay = 0.2
        while True:
            try:
                acks = [await self._js.publish_async(nats_subject(e), e.SerializeToString(),
                                                     headers={"Nats-Msg-Id": e.id}) for e in batch]
                async with asyncio.timeout(5.0):
                    await asyncio.gather(*acks)
                return
            except Exception as exc:  # NATS away: keep them, try again
                log.warning("advisory_republish_retry", events=len(batch), error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


def handler(outbox: OutboxTables) -> Any:
    """The `EventConsumer` handler for `ConnectionAdvisoryObserved`."""

    async def apply(event: Event, conn: AsyncConnection) -> None:
        payload = tev.ConnectionAdvisoryObserved()
        if not event.payload.Unpack(payload):
            raise ValueError(f"event {event.id}: not a ConnectionAdvisoryObserved")
        try:
            parsed = parse_system_event(orjson.loads(payload.advisory))
        except (NotADeviceEvent, orjson.JSONDecodeError):
            log.warning("advisory_unreadable", event_id=event.id)
            return
        unknown = await PresenceWriter(conn, outbox).apply([parsed])
        if unknown and datetime.now(UTC) - parsed.time < UNKNOWN_DEVICE_GRACE:
            raise LookupError(f"device {parsed.device_id} has no twin yet")  # rolled back, redelivered

    return apply


async def connz(system_nc: NATS, *, page: int = 1024) -> tuple[dict[str, tuple[str, Session]], datetime]:
    """The MQTT connections open now in our account (session id -> device id, session), and the time.
    `auth` asks for `authorized_user` (the device id), which CONNZ leaves out otherwise: without it every
    session would look gone and be closed."""
    sessions: dict[str, tuple[str, Session]] = {}
    offset, now = 0, datetime.now(UTC)
    while True:
        reply = await system_nc.request(f"$SYS.REQ.ACCOUNT.{ACCOUNT}.CONNZ",
                                        orjson.dumps({"offset": offset, "limit": page, "auth": True}), timeout=5.0)
        data = orjson.loads(reply.data)["data"]
        connections = data.get("connections") or []
        for c in connections:
            if c.get("type") != "mqtt" or not c.get("authorized_user"):
                continue
            sid = f"{data['server_id']}/{c['cid']}"
            sessions[sid] = (str(c["authorized_user"]), Session(
                sid, str(c.get("mqtt_client", "")), f"{c.get('ip', '')}:{c.get('port', '')}", "mqtt",
                parse_time(c["start"])))
        offset += len(connections)
        if offset >= int(data.get("total", 0)) or not connections:
            return sessions, now


async def reconcile(system_nc: NATS, db: Database, outbox: OutboxTables) -> tuple[int, int]:
    """Close the sessions the server no longer has; open the ones it has that we missed."""
    live, now = await connz(system_nc)
    async with db.transaction(Scope.platform_wide()) as conn:
        writer = PresenceWriter(conn, outbox)
        believed = [state for _, state in await writer.repo.open_sessions(started_before=now)]
        gone = [ConnectionEvent(f"reconcile/{s.session_id}", state.device_id, Kind.DISCONNECTED, now,
                                replace(s, disconnected_at=now, reason=DisconnectReason.NOT_CONNECTED,
                                        detail="not connected at reconciliation"))
                for state in believed if (s := state.session) is not None and s.session_id not in live]
        known = {state.session.session_id for state in believed if state.session}
        missed = [ConnectionEvent(f"reconcile/{sid}", device, Kind.CONNECTED, session.connected_at, session)
                  for sid, (device, session) in live.items() if sid not in known]
        await writer.apply([*gone, *missed])
    if gone or missed:
        log.info("connections_reconciled", closed=len(gone), opened=len(missed))
    return len(gone), len(missed)


async def reconcile_forever(system_nc: NATS, db: Database, outbox: OutboxTables, *, delay: float,
                            interval: float) -> None:
    """After `delay` (the stream's backlog applies first), then every `interval`."""
    await asyncio.sleep(delay)
    while True:
        try:
            await reconcile(system_nc, db, outbox)
        except Exception as exc:
            log.warning("reconcile_failed", error=repr(exc))
        await asyncio.sleep(interval)

