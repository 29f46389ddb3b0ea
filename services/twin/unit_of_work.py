"""The twin's unit of work: one scoped transaction with the twin repository bound to it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.db import Database, Scope
from muster.runtime.uow import UnitOfWork
from services.twin.repository import TwinRepository
from services.twin.tables import infrastructure

SOURCE = "twin"


class TwinUnitOfWork(UnitOfWork):
    twins: TwinRepository

    def _bind(self, conn: AsyncConnection) -> None:
        self.twins = TwinRepository(conn)


UnitOfWorkFactory = Callable[[Scope], TwinUnitOfWork]


def unit_of_work_factory(db: Database, published: asyncio.Event) -> UnitOfWorkFactory:
    def make(scope: Scope) -> TwinUnitOfWork:
        return TwinUnitOfWork(db, infrastructure, scope, source=SOURCE, published=published)

    return make
