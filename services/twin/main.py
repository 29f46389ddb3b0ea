"""The twin process: the twin API, the registry projection, the device inbox (twin/reported, twin/get)
and the pushes of desired state to devices, wired from settings in one bootstrap."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial

from muster.runtime.auth import TokenCodec, derive_key
from muster.runtime.bus import EventConsumer, OutboxRelay, connect, ensure_events_stream
from muster.runtime.db import Database, create_engine
from muster.runtime.device_inbox import DeviceInbox, InboxMetrics, InboxSettings
from muster.runtime.device_publisher import DevicePublisher
from muster.runtime.event_batches import BatchApply
from muster.runtime.grpc_server import ServiceBinding, run_grpc_server
from muster.runtime.logging import configure_logging
from muster.runtime.metrics import GrpcMetrics
from muster.runtime.pagination import PageTokens
from muster.twin.v1 import twin_service_pb2_grpc
from services.twin import projection, streams
from services.twin.access import ACCESS_POLICY
from services.twin.config import TwinSettings
from services.twin.connectivity_main import connectivity_parts
from services.twin.handlers import TwinHandlers
from services.twin.inbox import TwinInbox
from services.twin.pusher import DesiredPusher, SqlPushStore
from services.twin.servicer import TwinServicer
from services.twin.tables import infrastructure
from services.twin.unit_of_work import unit_of_work_factory


def inbox_settings(settings: TwinSettings) -> InboxSettings:
    return InboxSettings(durable=streams.REPORTS_DURABLE, filter_subjects=streams.REPORT_SUBJECTS,
                         batch_max_messages=settings.twin_batch_max_messages,
                         batch_max_wait_seconds=settings.twin_batch_max_wait_seconds,
                         max_ack_pending=settings.twin_max_ack_pending,
                         ack_wait_seconds=settings.twin_ack_wait_seconds)


async def serve(settings: TwinSettings) -> None:
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    if settings.device_mqtt_url is None:
        raise SystemExit("MUSTER_DEVICE_MQTT_URL is not set: the twin pushes desired state to devices over MQTT")
    secret = settings.token_secret()
    db = Database(create_engine(settings.database_url.get_secret_value(), pool_size=settings.database_pool_size))
    nc = await connect(settings.nats_url.get_secret_value(), name=settings.service_name)
    js = nc.jetstream()
    await ensure_events_stream(js)
    publisher = DevicePublisher.from_url(settings.device_mqtt_url.get_secret_value(),
                                         ack_timeout=settings.twin_push_timeout_seconds)
    await publisher.start()

    async def retained(device_id: str, levels: str, payload: bytes) -> None:
        await publisher.publish(device_id, levels, payload, qos=1, retain=True)

    async def answer(device_id: str, levels: str, payload: bytes) -> None:
        await publisher.publish(device_id, levels, payload, qos=1)

    metrics = GrpcMetrics()
    published = asyncio.Event()
    uow = unit_of_work_factory(db, published)
    pusher = DesiredPusher(retained, SqlPushStore(db), sweep_interval=settings.twin_push_sweep_interval_seconds)
    handlers = TwinHandlers(uow, PageTokens(derive_key(secret, "page-tokens")), settings.limits,
                            on_desired=pusher.submit)
    inbox_metrics = InboxMetrics(metrics.registry)
    connectivity = await connectivity_parts(settings, nc, js, db, PageTokens(derive_key(secret, "page-tokens")),
                                            inbox_metrics)
    inbox = DeviceInbox(nc, js, streams.TWIN_INBOX,
                        connectivity.last_seen.wrap(TwinInbox(uow, answer, settings.limits,
                                                              unknown=settings.unknown_devices()).handle),
                        inbox_settings(settings), inbox_metrics)
    registry_events = EventConsumer(js, db, infrastructure, durable=projection.DURABLE,
                                    filter_subjects=projection.FILTER_SUBJECTS, handler=projection.apply_event,
                                    batch_size=256,
                                    batch=BatchApply(projection.BATCHED, projection.apply_device_events))
    relay = OutboxRelay(db, infrastructure, js, wakeup=published)
    bindings = [ServiceBinding("muster.twin.v1.TwinService",
                               partial(twin_service_pb2_grpc.add_TwinServiceServicer_to_server,
                                       TwinServicer(handlers)))]
    background = [registry_events.run, inbox.run, pusher.run, relay.run, *connectivity.background]
    bindings += connectivity.bindings

    async def close() -> None:
        await publisher.close()
        for closer in connectivity.closers:
            with contextlib.suppress(Exception):
                await closer()
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)
        await nc.close()
        await db.close()

    await run_grpc_server(settings, bindings, access_policy=ACCESS_POLICY, token_codec=TokenCodec(secret),
                          metrics=metrics, background=background, on_stop=[close])


def main() -> None:
    settings = TwinSettings(service_name="twin")  # the rest from MUSTER_* env
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
