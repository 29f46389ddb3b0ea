"""The ingest process: capture-stream consumers, the registry projection, partition maintenance and
the telemetry query API, wired from settings in one bootstrap."""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial
from typing import Any

from muster.ingest.v1 import log_service_pb2_grpc, telemetry_service_pb2_grpc
from muster.runtime.auth import TokenCodec, derive_key
from muster.runtime.bus import EventConsumer, OutboxRelay, connect, ensure_events_stream
from muster.runtime.db import Database, create_engine
from muster.runtime.device_inbox import DeviceInbox, InboxMetrics, InboxSettings
from muster.runtime.device_topics import HEARTBEAT
from muster.runtime.event_batches import BatchApply
from muster.runtime.grpc_server import ServiceBinding, run_grpc_server
from muster.runtime.logging import configure_logging
from muster.runtime.metrics import GrpcMetrics
from muster.runtime.pagination import PageTokens
from services.ingest import projection
from services.ingest.access import ACCESS_POLICY
from services.ingest.capture import LOGS, TELEMETRY
from services.ingest.config import IngestSettings
from services.ingest.handlers import TelemetryHandlers
from services.ingest.heartbeats import HeartbeatProcessor
from services.ingest.latest_notifier import LatestNotifier
from services.ingest.log_servicer import DeviceLogServicer
from services.ingest.logs import LogProcessor
from services.ingest.metrics import IngestMetrics
from services.ingest.partitions import PartitionMaintenance, RetentionPolicy
from services.ingest.payloads import Limits
from services.ingest.pipeline import Pipeline
from services.ingest.processing import BatchProcessor, TelemetryProcessor
from services.ingest.profiles import ProfileCache, ProjectionProfiles
from services.ingest.ratelimit import RateLimiter
from services.ingest.servicer import TelemetryServicer
from services.ingest.store import LogStore, TelemetryStore, create_pool
from services.ingest.tables import infrastructure

HEARTBEAT_DURABLE = "ingest-heartbeat"
"""Ingest's consumer of the heartbeat stream (the twin has its own: an interest stream keeps a heartbeat
until both acked it)."""


def retention_policies(settings: IngestSettings) -> list[RetentionPolicy]:
    return [
        RetentionPolicy("telemetry", settings.ingest_retention_days, settings.max_past.days,
                        settings.ingest_partitions_ahead_days, settings.ingest_tenant_retention_days),
        RetentionPolicy("device_logs", settings.ingest_log_retention_days, settings.max_past.days,
                        settings.ingest_partitions_ahead_days, {}),
    ]


def pipelines(settings: IngestSettings, pool: object,
              metrics: IngestMetrics) -> tuple[Pipeline[Any], Pipeline[Any], Pipeline[Any]]:
    """The telemetry, device-log and heartbeat pipelines: shared limits and profile cache, a rate limit each
    (heartbeats are stored as telemetry)."""
    limits = Limits(max_payload_bytes=settings.ingest_max_payload_bytes,
                    max_batch_entries=settings.ingest_max_batch_entries,
                    max_future=settings.max_future, max_past=settings.max_past)  # capped by the retention

    def processor(kind: type[BatchProcessor[Any]]) -> BatchProcessor[Any]:
        limiter = RateLimiter(settings.ingest_rate_per_second, settings.ingest_rate_burst,
                              settings.ingest_rate_notice_seconds)
        return kind(limits, limiter, unknown_device_retries=settings.ingest_unknown_device_retries,
                    monotonic=time.monotonic)

    profiles = ProfileCache(ProjectionProfiles(pool), ttl=settings.ingest_profile_ttl_seconds,
                            monotonic=time.monotonic)
    return (Pipeline(TELEMETRY.name, processor(TelemetryProcessor), profiles, TelemetryStore(pool), metrics),
            Pipeline(LOGS.name, processor(LogProcessor), profiles, LogStore(pool), metrics),
            Pipeline(HEARTBEAT.name, processor(HeartbeatProcessor), profiles, TelemetryStore(pool), metrics))


def inbox_settings(settings: IngestSettings, durable: str) -> InboxSettings:
    # Two batches in flight: one is written (PostgreSQL's CPU) while the next is parsed (ours). Order
    # between batches does not matter: rows are keyed, latest values only move forward.
    return InboxSettings(durable=durable, batch_max_messages=settings.ingest_batch_max_messages,
                         batch_max_wait_seconds=settings.ingest_batch_max_wait_seconds,
                         max_ack_pending=settings.ingest_max_ack_pending,
                         ack_wait_seconds=settings.ingest_ack_wait_seconds, batches_in_flight=2)


async def serve(settings: IngestSettings) -> None:
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    secret = settings.token_secret()
    tokens = TokenCodec(secret)
    url = settings.database_url.get_secret_value()
    db = Database(create_engine(url, pool_size=settings.database_pool_size))
    pool = await create_pool(url)
    nc = await connect(settings.nats_url.get_secret_value(), name=settings.service_name)
    js = nc.jetstream()
    await ensure_events_stream(js)
    maintenance = PartitionMaintenance(pool, retention_policies(settings),
                                       interval=settings.ingest_maintenance_interval_seconds)
    await maintenance.run_once()  # partitions exist before the first write
    metrics = GrpcMetrics()
    inbox_metrics = InboxMetrics(metrics.registry)
    telemetry_pipeline, log_pipeline, heartbeat_pipeline = pipelines(settings, pool, IngestMetrics(metrics.registry))
    telemetry = DeviceInbox(nc, js, TELEMETRY, telemetry_pipeline, inbox_settings(settings, "ingest-telemetry"),
                            inbox_metrics)
    device_logs = DeviceInbox(nc, js, LOGS, log_pipeline, inbox_settings(settings, "ingest-logs"), inbox_metrics)
    heartbeats = DeviceInbox(nc, js, HEARTBEAT, heartbeat_pipeline, inbox_settings(settings, HEARTBEAT_DURABLE),
                             inbox_metrics)
    registry_events = EventConsumer(js, db, infrastructure, durable=projection.DURABLE,
                                    filter_subjects=projection.FILTER_SUBJECTS, handler=projection.apply_event,
                                    batch_size=256, batch=BatchApply(projection.DEVICE_UPSERTS,
                                                                     projection.apply_device_events))
    published = asyncio.Event()
    relay = OutboxRelay(db, infrastructure, js, wakeup=published)
    notifier = LatestNotifier(db, infrastructure, interval=settings.ingest_latest_notify_interval_seconds,
                              max_readings=settings.ingest_latest_notify_max_readings, published=published)
    handlers = TelemetryHandlers(db, PageTokens(derive_key(secret, "page-tokens")))
    bindings = [ServiceBinding("muster.ingest.v1.TelemetryService",
                               partial(telemetry_service_pb2_grpc.add_TelemetryServiceServicer_to_server,
                                       TelemetryServicer(handlers))),
                ServiceBinding("muster.ingest.v1.DeviceLogService",
                               partial(log_service_pb2_grpc.add_DeviceLogServiceServicer_to_server,
                                       DeviceLogServicer(handlers)))]

    async def close() -> None:
        # Not drain(): the push subscriptions would wait out its timeout. Unacked messages are simply
        # redelivered; acks already written are flushed first.
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)
        await nc.close()
        await pool.close()
        await db.close()

    await run_grpc_server(settings, bindings, access_policy=ACCESS_POLICY, token_codec=tokens, metrics=metrics,
                          background=[telemetry.run, device_logs.run, heartbeats.run, registry_events.run,
                                      maintenance.run, notifier.run, relay.run],
                          on_stop=[close])


def main() -> None:
    settings = IngestSettings(service_name="ingest")  # the rest from MUSTER_* env
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
