"""Use cases of the commands API: each opens one unit of work, applies the domain, emits its events.

Handlers see plain values and a `Principal`, never protobuf requests or gRPC contexts. Delivery, device
replies and timers (the device side) live in their own modules and use the same domain and repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from muster.runtime.auth import Principal
from muster.runtime.db import Scope
from muster.runtime.errors import AlreadyExists, FailedPrecondition, NotFound
from muster.runtime.listing import Listing
from muster.runtime.pagination import OrderTerm, PageTokens
from services.commands import creation, listings
from services.commands.creation import CreateCommand
from services.commands.domain import Command
from services.commands.events import emit_created, emit_transitions
from services.commands.limits import Limits
from services.commands.repository import DuplicateRequest
from services.commands.unit_of_work import CommandsUnitOfWork, UnitOfWorkFactory
from services.commands.waiting import Waiters

Clock = Callable[[], datetime]

SENDABLE_DEVICE_STATES = frozenset({1, 2})  # muster.registry.v1.DeviceState PROVISIONED, ACTIVE
MAX_WAIT = timedelta(seconds=60)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _scope(principal: Principal) -> Scope:
    return Scope.of_tenant(principal.require_tenant())


def _found(command: Command | None, device_id: str, command_id: str) -> Command:
    if command is None:
        raise NotFound(f"devices/{device_id}/commands/{command_id} not found")
    return command


class CommandHandlers:
    def __init__(self, uow: UnitOfWorkFactory, page_tokens: PageTokens, limits: Limits, waiters: Waiters, *,
                 clock: Clock = _utcnow, wait_poll_seconds: float = 5.0) -> None:
        self._uow = uow
        self._pages = page_tokens
        self._limits = limits
        self._waiters = waiters
        self._now = clock
        self._poll = wait_poll_seconds

    async def create_command(self, principal: Principal, request: CreateCommand) -> Command:
        creation.check_request(request, self._limits)
        tenant = principal.require_tenant()
        async with self._uow(_scope(principal)) as uow:
            if request.request_id:
                existing = await uow.commands.find_by_request_id(request.request_id)
                if existing is not None:
                    return self._same_request(existing, request)
            command = await self._new(uow, request, tenant, principal.subject)
            try:
                await uow.commands.add(command)
            except DuplicateRequest:
                # A concurrent create with the same key committed first: answer as if we had come second.
                return self._same_request(_found(await uow.commands.find_by_request_id(request.request_id),
                                                 request.device_id, request.request_id), request)
            emit_created(uow, command)
            await uow.commit()
        return command

    async def _new(self, uow: CommandsUnitOfWork, request: CreateCommand, tenant: str, creator: str) -> Command:
        await uow.projection.lock_device(request.device_id)  # a deletion/suspension cannot miss this command
        device = await uow.projection.device_commands(request.device_id)
        if device is None:
            raise NotFound(f"devices/{request.device_id} not found")
        if device.state not in SENDABLE_DEVICE_STATES:
            raise FailedPrecondition(f"devices/{request.device_id} is suspended or retired: it takes no commands",
                                     reason="DEVICE_NOT_ACTIVE")
        definition = device.definitions.get(request.command)
        if definition is None:
            raise creation.unknown_command(request, list(device.definitions))
        creation.check_parameters(request, definition)
        return creation.new_command(request, definition, self._limits, tenant_id=tenant, creator=creator,
                                    now=self._now())

    @staticmethod
    def _same_request(existing: Command, request: CreateCommand) -> Command:
        if existing.request_hash != request.digest():
            raise AlreadyExists(
                f"request_id {request.request_id!r} was already used for {existing.name} with a different "
                "request; use a new request_id for a new command", reason="REQUEST_ID_REUSED",
                metadata={"command": existing.name})
        return existing

    async def get_command(self, principal: Principal, device_id: str, command_id: str) -> Command:
        async with self._uow(_scope(principal)) as uow:
            return _found(await uow.commands.get(command_id, device_id=device_id), device_id, command_id)

    async def list_commands(self, principal: Principal, device_id: str | None, *, filter_text: str = "",
                            order_by: str = "", page_size: int = 0, page_token: str = "") -> tuple[list[Command], str]:
        """`device_id` None: every device of the tenant (parent `devices/-`)."""
        tenant = principal.require_tenant()
        page = listings.COMMANDS.page(self._pages, filter_text=filter_text, order_by=order_by, size=page_size,
                                      token=page_token, scope=f"{tenant}/{device_id or '-'}")
        async with self._uow(_scope(principal)) as uow:
            rows = await uow.commands.list(page, device_id=device_id)
        return Listing.finish(self._pages, page, rows, lambda c: _keyset(c, page.order))

    async def cancel_command(self, principal: Principal, device_id: str, command_id: str, reason: str) -> Command:
        async with self._uow(_scope(principal)) as uow:
            current = _found(await uow.commands.get(command_id, device_id=device_id, lock=True), device_id, command_id)
            canceled = current.cancel(principal.subject, reason, self._now())
            saved = await uow.commands.save(canceled)
            emit_transitions(uow, current, saved)
            await uow.commit()
        return saved

    async def wait_command(self, principal: Principal, device_id: str, command_id: str,
                           wait: timedelta) -> Command:
        """The command once it is terminal, or as it is when `wait` has passed (at most MAX_WAIT)."""
        give_up = time.monotonic() + min(wait, MAX_WAIT).total_seconds()
        with self._waiters.watch(command_id) as finished:
            while True:
                finished.clear()  # before the read: a finish after it sets the event again
                command = await self.get_command(principal, device_id, command_id)
                left = give_up - time.monotonic()
                if command.terminal or left <= 0:
                    return command
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), min(left, self._poll))


def _keyset(command: Command, order: Sequence[OrderTerm]) -> list[Any]:
    return [getattr(command, term.field) for term in order] + [command.id]
