"""Fixtures for command-delivery tests against the platform's real PostgreSQL (as the commands
service's own role, so row-level security applies) and its real NATS/MQTT: commands written
straight through the repository, devices marked connected in the presence projection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from helpers import PlatformLike, secrets

from muster.runtime.db import Database, Scope, create_engine
from services.commands.domain import Command, RetryPolicy
from services.commands.unit_of_work import UnitOfWorkFactory, unit_of_work_factory

SERVICE = "commands"
HOUR = timedelta(hours=1)
RETRY = RetryPolicy(max_attempts=3, initial_backoff=timedelta(seconds=1), multiplier=2.0,
                    max_backoff=timedelta(seconds=30))


def commands_db_url(platform: PlatformLike) -> str:
    password = secrets(platform)["postgres"]["services"][SERVICE]
    return f"postgresql+asyncpg://muster_{SERVICE}:{password}@{platform.endpoints['postgres']}/muster"


def commands_mqtt_url(platform: PlatformLike) -> str:
    """The commands service's own MQTT login (the launcher's platform MQTT user)."""
    password = secrets(platform)["nats"]["services"][SERVICE]
    host, port = str(platform.endpoints["mqtt"]).rsplit(":", 1)
    return f"mqtt://muster_{SERVICE}_mqtt:{password}@{host.split('//')[-1]}:{port}"


def commands_nats_url(platform: PlatformLike) -> str:
    password = secrets(platform)["nats"]["services"][SERVICE]
    host = str(platform.endpoints["nats"]).removeprefix("nats://")
    return f"nats://muster_{SERVICE}:{password}@{host}"


@pytest.fixture(scope="module")
async def commands_db(platform: PlatformLike) -> AsyncIterator[Database]:
    database = Database(create_engine(commands_db_url(platform), pool_size=8))
    yield database
    await database.close()


@pytest.fixture
def commands_uow(commands_db: Database) -> UnitOfWorkFactory:
    return unit_of_work_factory(commands_db, asyncio.Event())


def new_device_id() -> str:
    return f"dev{uuid.uuid4().hex[:17]}"


def new_command(tenant: str, device_id: str, *, now: datetime | None = None, ttl: timedelta = HOUR,
                delivery_timeout: timedelta = HOUR) -> Command:
    return Command.create(tenant_id=tenant, device_id=device_id, command="reboot", parameters={"delay": 1},
                          creator="it@test", request_id="", request_hash="", ttl=ttl,
                          delivery_timeout=delivery_timeout, execution_timeout=HOUR, retry=RETRY,
                          now=now or datetime.now(UTC))


async def add_commands(uow: UnitOfWorkFactory, tenant: str, commands: list[Command]) -> None:
    async with uow(Scope.of_tenant(tenant)) as work:
        for command in commands:
            await work.commands.add(command)
        await work.commit()


async def set_presence(uow: UnitOfWorkFactory, tenant: str, device_id: str, presence: int,
                       since: datetime | None = None) -> bool:
    async with uow(Scope.platform_wide()) as work:
        stored = await work.delivery.record_presence(tenant_id=tenant, device_id=device_id, presence=presence,
                                                     since=since or datetime.now(UTC), session_id="")
        await work.commit()
    return stored


async def get_command(uow: UnitOfWorkFactory, command_id: str) -> Command:
    async with uow(Scope.platform_wide()) as work:
        command = await work.commands.get(command_id)
    assert command is not None
    return command
