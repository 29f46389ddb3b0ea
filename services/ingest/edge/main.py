"""The edge process: the auth callout responder, the credentials projection consumer and the pruning
of expired connection records, with gRPC health and Prometheus metrics like every service.

Run as several replicas: the callout subscription is a queue group (NATS gives each connect to one
replica) and the projection consumer is one durable JetStream consumer shared by all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import structlog

from muster.runtime.auth import TokenCodec
from muster.runtime.bus import EventConsumer, connect, ensure_events_stream
from muster.runtime.db import Database, Scope, create_engine, is_transient
from muster.runtime.event_batches import BatchApply
from muster.runtime.grpc_server import run_grpc_server
from muster.runtime.logging import configure_logging
from muster.runtime.metrics import GrpcMetrics
from services.ingest.edge import repository as repo
from services.ingest.edge.config import EdgeSettings
from services.ingest.edge.kicker import Kicker
from services.ingest.edge.metrics import EdgeMetrics
from services.ingest.edge.nats_jwt import Signer
from services.ingest.edge.projection import BATCHED, DURABLE, SUBJECTS, CredentialsProjection
from services.ingest.edge.responder import CalloutResponder, ResponderConfig
from services.ingest.tables import infrastructure

log = structlog.get_logger(__name__)


async def prune_forever(db: Database, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            async with db.transaction(Scope.platform_wide()) as conn:
                pruned = await repo.prune_connections(conn)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("connection_prune_retry", error=repr(exc))
            continue
        if pruned:
            log.info("connections_pruned", count=pruned)


async def serve(settings: EdgeSettings) -> None:
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    db = Database(create_engine(settings.database_url.get_secret_value(), pool_size=settings.database_pool_size))
    name = f"{settings.service_name}-{os.getpid()}"
    nc = await connect(settings.nats_url.get_secret_value(), name=name)
    system_nc = await connect(settings.edge_system_nats_url.get_secret_value(), name=f"{name}-kicks")
    js = nc.jetstream()
    await ensure_events_stream(js)
    grpc_metrics = GrpcMetrics()
    metrics = EdgeMetrics(grpc_metrics.registry)
    projection = CredentialsProjection(Kicker(system_nc, metrics), metrics)
    consumer = EventConsumer(js, db, infrastructure, durable=DURABLE, filter_subjects=SUBJECTS,
                             handler=projection.apply, batch_size=256,
                             batch=BatchApply(BATCHED, projection.apply_created))
    responder = CalloutResponder(
        nc, db, Signer(settings.edge_issuer_seed.get_secret_value()), settings.device_secret_key_bytes(),
        ResponderConfig(device_account=settings.edge_device_account, jwt_ttl_seconds=settings.edge_jwt_ttl_seconds,
                        max_batch=settings.edge_max_batch),
        metrics)
    await responder.subscribe()

    async def prune() -> None:
        await prune_forever(db, settings.edge_prune_interval_seconds)

    async def close() -> None:
        for conn in (nc, system_nc):
            with contextlib.suppress(Exception):
                await conn.drain()
        await db.close()

    await run_grpc_server(settings, [], access_policy={}, token_codec=TokenCodec(settings.token_secret()),
                          background=[responder.run, consumer.run, prune], on_stop=[close], metrics=grpc_metrics)


def main() -> None:
    asyncio.run(serve(EdgeSettings(service_name="edge")))  # the rest from MUSTER_* env


if __name__ == "__main__":
    main()
