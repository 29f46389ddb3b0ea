"""The commands unit of work: one scoped transaction with the commands repositories bound to it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.db import Database, Scope
from muster.runtime.uow import UnitOfWork
from services.commands.delivery_repository import DeliveryRepository
from services.commands.projection_repository import ProjectionRepository
from services.commands.repository import CommandRepository
from services.commands.tables import infrastructure

SOURCE = "commands"


class CommandsUnitOfWork(UnitOfWork):
    commands: CommandRepository
    projection: ProjectionRepository
    delivery: DeliveryRepository

    def _bind(self, conn: AsyncConnection) -> None:
        self.commands = CommandRepository(conn)
        self.projection = ProjectionRepository(conn)
        self.delivery = DeliveryRepository(conn)


UnitOfWorkFactory = Callable[[Scope], CommandsUnitOfWork]


def unit_of_work_factory(db: Database, published: asyncio.Event) -> UnitOfWorkFactory:
    def make(scope: Scope) -> CommandsUnitOfWork:
        return CommandsUnitOfWork(db, infrastructure, scope, source=SOURCE, published=published)

    return make
