"""The commands process: the CommandService API, the registry projection, the outbox relay and the
WaitCommand listener, wired from settings in one bootstrap."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial

from muster.commands.v1 import command_service_pb2_grpc
from muster.runtime.auth import TokenCodec, derive_key
from muster.runtime.bus import EventConsumer, OutboxRelay, connect, ensure_events_stream
from muster.runtime.db import Database, create_engine
from muster.runtime.event_batches import BatchApply
from muster.runtime.grpc_server import ServiceBinding, run_grpc_server
from muster.runtime.logging import configure_logging
from muster.runtime.metrics import GrpcMetrics
from muster.runtime.pagination import PageTokens
from services.commands import projection
from services.commands.access import ACCESS_POLICY
from services.commands.config import CommandsSettings
from services.commands.delivery_service import start_delivery
from services.commands.handlers import CommandHandlers
from services.commands.servicer import CommandServicer
from services.commands.tables import infrastructure
from services.commands.unit_of_work import unit_of_work_factory
from services.commands.waiting import FinishedListener, Waiters


def listener_dsn(database_url: str) -> str:
    """The service's SQLAlchemy URL in the plain libpq form asyncpg's own connect takes."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def serve(settings: CommandsSettings) -> None:
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    secret = settings.token_secret()
    url = settings.database_url.get_secret_value()
    db = Database(create_engine(url, pool_size=settings.database_pool_size))
    nc = await connect(settings.nats_url.get_secret_value(), name=settings.service_name)
    js = nc.jetstream()
    await ensure_events_stream(js)
    published = asyncio.Event()
    uow = unit_of_work_factory(db, published)
    waiters = Waiters()
    metrics = GrpcMetrics()
    delivery = await start_delivery(settings, nc, js, db, uow, metrics.registry)
    listener = FinishedListener(listener_dsn(url), waiters, channels=delivery.channels())
    registry_events = EventConsumer(js, db, infrastructure, durable=projection.DURABLE,
                                    filter_subjects=projection.FILTER_SUBJECTS, handler=projection.apply_event,
                                    batch_size=256, batch=BatchApply(projection.BATCHED,
                                                                     projection.apply_created_devices))
    relay = OutboxRelay(db, infrastructure, js, wakeup=published)
    handlers = CommandHandlers(uow, PageTokens(derive_key(secret, "page-tokens")), settings.limits(), waiters,
                               wait_poll_seconds=settings.commands_wait_poll_seconds)
    bindings = [ServiceBinding("muster.commands.v1.CommandService",
                               partial(command_service_pb2_grpc.add_CommandServiceServicer_to_server,
                                       CommandServicer(handlers)))]

    async def close() -> None:
        await delivery.close()
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)
        await nc.close()
        await db.close()

    await run_grpc_server(settings, bindings, access_policy=ACCESS_POLICY, token_codec=TokenCodec(secret),
                          metrics=metrics, background=[registry_events.run, relay.run, listener.run,
                                                       *delivery.background()],
                          on_stop=[close])


def main() -> None:
    settings = CommandsSettings(service_name="commands")  # the rest from MUSTER_* env
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
