"""Wiring of command delivery for the commands process: the platform's MQTT publisher, the timer
worker, the device-reply inbox, the presence projection's consumer and the applied-replies pruning,
built from settings; `main` runs their `background` tasks next to the API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from muster.runtime.bus import EventConsumer
from muster.runtime.db import Database, Scope, is_transient
from muster.runtime.device_inbox import DeviceInbox, InboxMetrics, InboxSettings
from muster.runtime.device_publisher import DevicePublisher
from services.commands import presence
from services.commands.config import CommandsSettings
from services.commands.delivery_repository import DUE_CHANNEL
from services.commands.reply_handler import ReplyHandler
from services.commands.streams import COMMAND_REPLIES
from services.commands.tables import infrastructure
from services.commands.timers import TimerSettings, TimerWorker
from services.commands.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)

REPLIES_DURABLE = "commands-replies"
APPLIED_REPLIES_KEPT = timedelta(days=2)  # longer than the replies stream keeps a message (1 day)
PRUNE_INTERVAL_SECONDS = 3600.0


@dataclass
class Delivery:
    publisher: DevicePublisher
    worker: TimerWorker
    inbox: DeviceInbox
    presence: EventConsumer
    uow: UnitOfWorkFactory

    def channels(self) -> dict[str, Callable[[str], None]]:
        """NOTIFY channels for the process's listening connection."""
        return {DUE_CHANNEL: self.worker.on_notify}

    def background(self) -> list[Callable[[], Awaitable[None]]]:
        return [self.worker.run, self.inbox.run, self.presence.run, self._prune]

    async def close(self) -> None:
        await self.publisher.close()

    async def _prune(self) -> None:
        """Forget applied replies older than the replies stream could redeliver."""
        while True:
            try:
                async with self.uow(Scope.platform_wide()) as uow:
                    pruned = await uow.delivery.prune_applied_replies(datetime.now(UTC) - APPLIED_REPLIES_KEPT)
                    await uow.commit()
                log.debug("applied_replies_pruned", count=pruned)
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("applied_replies_prune_failed")
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)


async def start_delivery(settings: CommandsSettings, nc: NATS, js: JetStreamContext, db: Database,
                         uow: UnitOfWorkFactory, registry: CollectorRegistry) -> Delivery:
    """Connect the publisher (waits for the MQTT server) and build the rest; nothing runs yet."""
    if settings.device_mqtt_url is None:
        raise RuntimeError("MUSTER_DEVICE_MQTT_URL is not set: the commands service publishes to devices "
                           "over its own MQTT login (the launcher sets it for device_publisher services)")
    publisher = DevicePublisher.from_url(settings.device_mqtt_url.get_secret_value(),
                                         client_id=f"muster-commands-{uuid.uuid4().hex[:12]}",
                                         ack_timeout=settings.commands_publish_ack_timeout_seconds)
    await publisher.start()
    worker = TimerWorker(uow, publisher, TimerSettings(batch_size=settings.commands_timer_batch_size,
                                                       poll_interval=settings.commands_timer_poll_seconds))
    inbox = DeviceInbox(nc, js, COMMAND_REPLIES, ReplyHandler(uow), InboxSettings(
        durable=REPLIES_DURABLE, batch_max_messages=settings.commands_reply_batch_max_messages,
        batch_max_wait_seconds=settings.commands_reply_batch_max_wait_seconds), InboxMetrics(registry))
    consumer = EventConsumer(js, db, infrastructure, durable=presence.DURABLE,
                             filter_subjects=presence.FILTER_SUBJECTS, handler=presence.apply_event)
    return Delivery(publisher, worker, inbox, consumer, uow)
