"""The timer worker against the real PostgreSQL and MQTT server: two workers on one database never
fire the same timer twice, and a device coming online gets its waiting commands oldest first."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import nats
import orjson
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from helpers import PlatformLike, unique_id
from nats.aio.msg import Msg

from muster.runtime.db import Scope
from muster.runtime.device_publisher import DevicePublisher
from muster.runtime.events import new_event
from muster.twin.v1 import events_pb2 as twin
from services.commands import presence
from services.commands.domain import CommandState
from services.commands.timers import TimerSettings, TimerWorker
from services.commands.unit_of_work import UnitOfWorkFactory

from .commands_delivery_support import (
    add_commands,
    commands_mqtt_url,
    commands_nats_url,
    get_command,
    new_command,
    new_device_id,
    set_presence,
)
from .commands_delivery_support import commands_db as commands_db  # fixture
from .commands_delivery_support import commands_uow as commands_uow  # fixture

pytestmark = pytest.mark.platform

ONLINE, OFFLINE = 2, 4
DEVICES, PER_DEVICE = 40, 10


@contextlib.asynccontextmanager
async def publisher(platform: PlatformLike) -> AsyncIterator[DevicePublisher]:
    pub = DevicePublisher.from_url(commands_mqtt_url(platform))
    await pub.start()
    try:
        yield pub
    finally:
        await pub.close()


@contextlib.asynccontextmanager
async def received(platform: PlatformLike, devices: list[str]) -> AsyncIterator[list[tuple[str, str]]]:
    """(device, command id) of every command published to these devices, in arrival order."""
    seen: list[tuple[str, str]] = []
    nc = await nats.connect(commands_nats_url(platform))

    async def on_message(msg: Msg) -> None:
        seen.append((msg.subject.split(".")[3], orjson.loads(msg.data)["id"]))

    try:
        for device in devices:
            await nc.subscribe(f"muster.v1.devices.{device}.commands.*", cb=on_message)
        await nc.flush()
        yield seen
    finally:
        await nc.close()


async def until(condition: object, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_two_workers_on_one_database_send_each_due_command_exactly_once(
        platform: PlatformLike, commands_uow: UnitOfWorkFactory) -> None:
    tenant, devices = unique_id("cmd"), [new_device_id() for _ in range(DEVICES)]
    for device in devices:
        await set_presence(commands_uow, tenant, device, ONLINE)
    now = datetime.now(UTC)
    commands = [new_command(tenant, d, now=now + timedelta(microseconds=i)) for i in range(PER_DEVICE)
                for d in devices]
    async with publisher(platform) as pub_a, publisher(platform) as pub_b, received(platform, devices) as seen:
        small = TimerSettings(batch_size=7, poll_interval=0.05)
        workers = [TimerWorker(commands_uow, pub_a, small), TimerWorker(commands_uow, pub_b, small)]
        claimed = [0, 0]

        async def run(i: int) -> None:
            while True:
                fired, _ = await workers[i].run_once()
                claimed[i] += fired
                await asyncio.sleep(0 if fired else 0.01)

        tasks = [asyncio.create_task(run(0)), asyncio.create_task(run(1))]
        try:
            await add_commands(commands_uow, tenant, commands)  # (the service's own worker races too)
            await until(lambda: len(seen) >= len(commands))
            await asyncio.sleep(1.0)  # a double send would arrive by now
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    counts = Counter(command_id for _, command_id in seen)
    assert set(counts) == {c.id for c in commands}
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]
    assert sum(claimed) > 0, "the test's workers never raced the service's"
    for command in commands[::37]:
        stored = await get_command(commands_uow, command.id)
        assert stored.state is CommandState.SENT and stored.attempts == 1
        assert [t.to_state for t in stored.history] == [CommandState.PENDING, CommandState.SENT]


async def test_a_device_coming_online_gets_its_waiting_commands_oldest_first(
        platform: PlatformLike, commands_uow: UnitOfWorkFactory) -> None:
    tenant, device = unique_id("cmd"), new_device_id()
    await set_presence(commands_uow, tenant, device, OFFLINE)
    start = datetime.now(UTC)
    commands = [new_command(tenant, device, now=start + timedelta(milliseconds=i)) for i in range(20)]
    async with publisher(platform) as pub, received(platform, [device]) as seen:
        worker = TimerWorker(commands_uow, pub, TimerSettings(batch_size=50, poll_interval=0.05))
        await add_commands(commands_uow, tenant, commands)
        await worker.run_once()
        await asyncio.sleep(0.5)
        assert seen == []  # offline: they wait
        assert (await get_command(commands_uow, commands[0].id)).state is CommandState.PENDING
        await _came_online(commands_uow, tenant, device)
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: len(seen) >= len(commands))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [command_id for _, command_id in seen] == [c.id for c in commands]


async def _came_online(uow: UnitOfWorkFactory, tenant: str, device: str) -> None:
    """What the presence consumer does with twin's DevicePresenceChanged(ONLINE)."""
    since = Timestamp()
    since.GetCurrentTime()
    event = new_event(twin.DevicePresenceChanged(device=f"devices/{device}", presence=twin.PRESENCE_ONLINE,
                                                 previous=twin.PRESENCE_OFFLINE, reason="connected", since=since),
                      source="twin", tenant=tenant, subject=f"devices/{device}")
    async with uow(Scope.platform_wide()) as work:
        await presence.apply_event(event, work.connection)
        await work.commit()
