"""Fixtures for tests that drive the registry's repositories against the platform's real PostgreSQL,
connected as the service role (so row-level security applies exactly as in production)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from helpers import PlatformLike, service_db_url

from muster.runtime.db import Database, Scope, create_engine
from services.registry.unit_of_work import RegistryUnitOfWork, unit_of_work_factory

UowFactory = Callable[[Scope], RegistryUnitOfWork]

POOL_SIZE = 8
"""Enough connections for the concurrency tests (several transactions racing on one row)."""


@pytest.fixture(scope="module")
async def db(platform: PlatformLike) -> AsyncIterator[Database]:
    database = Database(create_engine(service_db_url(platform), pool_size=POOL_SIZE))
    yield database
    await database.close()


@pytest.fixture
def uow(db: Database) -> UowFactory:
    return unit_of_work_factory(db, asyncio.Event())
