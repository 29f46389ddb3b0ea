"""Wiring of the connectivity and health slice into the twin process (called from `main.serve`): the
ConnectivityService binding, the status and heartbeat inboxes, the system-event relay and consumer,
reconciliation, last_seen and the stale sweep."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from muster.runtime.bus import EventConsumer, connect
from muster.runtime.db import Database
from muster.runtime.device_inbox import DeviceInbox, InboxMetrics, InboxSettings
from muster.runtime.device_topics import HEARTBEAT, device_subject
from muster.runtime.grpc_server import ServiceBinding
from muster.runtime.pagination import PageTokens
from muster.twin.v1 import connectivity_service_pb2_grpc
from services.twin import last_seen, system_events
from services.twin.config import TwinSettings
from services.twin.connectivity_handlers import ConnectivityHandlers
from services.twin.connectivity_servicer import ConnectivityServicer
from services.twin.health import thresholds_from
from services.twin.status_inbox import StatusInbox
from services.twin.streams import STATUS, TWIN_INBOX
from services.twin.tables import infrastructure

STATUS_DURABLE = "twin-status"
HEARTBEAT_DURABLE = "twin-heartbeat"


@dataclass
class ConnectivityParts:
    bindings: list[ServiceBinding]
    background: list[Callable[[], Awaitable[None]]]
    last_seen: last_seen.LastSeenBuffer
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def _inbox(settings: TwinSettings, durable: str, subjects: tuple[str, ...] = ()) -> InboxSettings:
    return InboxSettings(durable=durable, filter_subjects=subjects, batch_max_messages=settings.twin_batch_max_messages,
                         batch_max_wait_seconds=settings.twin_batch_max_wait_seconds,
                         max_ack_pending=settings.twin_max_ack_pending, ack_wait_seconds=settings.twin_ack_wait_seconds)


async def connectivity_parts(settings: TwinSettings, nc: NATS, js: JetStreamContext, db: Database,
                             pages: PageTokens, metrics: InboxMetrics) -> ConnectivityParts:
    if settings.system_nats_url is None:
        raise SystemExit("MUSTER_SYSTEM_NATS_URL is not set: the twin reads NATS's connect/disconnect events")
    stale_after = timedelta(seconds=settings.twin_stale_after_seconds)
    handlers = ConnectivityHandlers(db, pages, default_stale_after=stale_after,
                                    thresholds=thresholds_from(settings.twin_health_thresholds))
    bindings = [ServiceBinding("muster.twin.v1.ConnectivityService",
                               partial(connectivity_service_pb2_grpc.add_ConnectivityServiceServicer_to_server,
                                       ConnectivityServicer(handlers)))]
    status = StatusInbox(db, infrastructure, unknown=settings.unknown_devices(),
                         max_heartbeat_bytes=settings.twin_max_heartbeat_bytes)
    status_inbox = DeviceInbox(nc, js, TWIN_INBOX, status.status,
                               _inbox(settings, STATUS_DURABLE, (device_subject("*", STATUS),)), metrics)
    heartbeat_inbox = DeviceInbox(nc, js, HEARTBEAT, status.heartbeat, _inbox(settings, HEARTBEAT_DURABLE), metrics)
    advisories = EventConsumer(js, db, infrastructure, durable=system_events.DURABLE,
                               filter_subjects=system_events.FILTER_SUBJECTS,
                               handler=system_events.handler(infrastructure))
    telemetry = EventConsumer(js, db, infrastructure, durable=last_seen.TELEMETRY_DURABLE,
                              filter_subjects=last_seen.TELEMETRY_SUBJECTS,
                              handler=last_seen.telemetry_handler(infrastructure))
    system_nc = await connect(settings.system_nats_url.get_secret_value(), name=f"{settings.service_name}-system")
    relay = system_events.AdvisoryRelay(system_nc, js)
    await relay.subscribe()  # listening before the process reports healthy
    buffer = last_seen.LastSeenBuffer()

    async def reconcile() -> None:
        await system_events.reconcile_forever(system_nc, db, infrastructure,
                                              delay=settings.twin_reconcile_delay_seconds,
                                              interval=settings.twin_reconcile_interval_seconds)

    async def maintain() -> None:
        await last_seen.run_periodically(db, infrastructure, buffer,
                                         flush_interval=settings.twin_last_seen_flush_seconds,
                                         sweep_interval=settings.twin_presence_sweep_interval_seconds,
                                         default_stale_after=stale_after)

    return ConnectivityParts(bindings, [relay.run, advisories.run, telemetry.run, status_inbox.run,
                                        heartbeat_inbox.run, reconcile, maintain], buffer, [system_nc.close])
