"""An in-memory commands unit of work for handler tests.

`FakeCommandsStore` is the "database": committed commands, the registry projection (devices and
templates) and the events that went out. A `FakeCommandsUnitOfWork` works on a private copy and writes
it back only on `commit` (a handler that raises leaves the store as it was). The fake repositories keep
the real ones' interface and the semantics handlers rely on: tenant isolation like row-level security
(system templates, tenant '', readable from any tenant), the unique request id per tenant
(`DuplicateRequest`), optimistic versions on `save`, terminal saves waking `Waiters` at commit (the
NOTIFY), listing with `matches` and `compare_keysets` like the SQL.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from muster.events.v1.event_pb2 import Event
from muster.runtime.db import Scope
from muster.runtime.errors import Aborted
from muster.runtime.filtering import matches
from muster.runtime.listing import Page
from muster.runtime.pagination import PageTokens, compare_keysets
from services.commands.creation import CommandDefinition
from services.commands.domain import Command
from services.commands.handlers import CommandHandlers
from services.commands.limits import DEFAULT_LIMITS, Limits
from services.commands.projection_repository import DeviceCommands
from services.commands.repository import DuplicateRequest
from services.commands.unit_of_work import SOURCE
from services.commands.waiting import Waiters

from .emitter import BufferedEmitter

PAGE_SECRET = b"unit-test-page-token-secret-0123"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class CommandsState:
    commands: dict[str, Command] = field(default_factory=dict)
    devices: dict[str, tuple[str, int, str | None]] = field(default_factory=dict)  # id -> (tenant, state, template)
    templates: dict[str, tuple[str, dict[str, CommandDefinition]]] = field(default_factory=dict)  # id -> (tenant, ...)

    def copy(self) -> CommandsState:
        return CommandsState(dict(self.commands), dict(self.devices), dict(self.templates))


class FakeCommandsStore:
    def __init__(self) -> None:
        self.state = CommandsState()
        self.events: list[Event] = []
        self.waiters = Waiters()
        self.stale_lookups = 0
        """How many next request-id lookups miss: a concurrent create with the same key committing
        between the lookup and the insert (the SQL side's unique index then fires)."""

    def add_device(self, tenant: str, device_id: str, template_id: str | None, state: int = 2) -> None:
        self.state.devices[device_id] = (tenant, state, template_id)

    def add_template(self, tenant: str, template_id: str, *definitions: CommandDefinition) -> None:
        self.state.templates[template_id] = (tenant, {d.name: d for d in definitions})

    def events_of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]


class _Repository:
    def __init__(self, state: CommandsState, scope: Scope) -> None:
        self._state = state
        self._scope = scope

    def _visible(self, tenant: str) -> bool:
        return self._scope.platform or (tenant != "" and tenant == self._scope.tenant)


def _record(command: Command) -> dict[str, Any]:
    return {"state": int(command.state), "command": command.command, "creator": command.creator,
            "create_time": command.create_time, "update_time": command.update_time,
            "finish_time": command.finish_time}


class FakeCommandRepository(_Repository):
    def __init__(self, store: FakeCommandsStore, state: CommandsState, scope: Scope, finished: list[str]) -> None:
        super().__init__(state, scope)
        self._store = store
        self._finished = finished

    async def get(self, command_id: str, *, device_id: str | None = None, lock: bool = False) -> Command | None:
        command = self._state.commands.get(command_id)
        if command is None or not self._visible(command.tenant_id):
            return None
        return command if device_id is None or command.device_id == device_id else None

    async def unfinished(self, tenant_id: str, device_id: str) -> list[Command]:
        found = [c for c in self._state.commands.values() if self._visible(c.tenant_id) and not c.terminal
                 and c.tenant_id == tenant_id and c.device_id == device_id]
        return sorted(found, key=lambda c: (c.create_time, c.id))

    async def find_by_request_id(self, request_id: str) -> Command | None:
        if self._store.stale_lookups > 0:
            self._store.stale_lookups -= 1
            return None
        found = [c for c in self._state.commands.values() if self._visible(c.tenant_id) and c.request_id == request_id]
        return found[0] if found else None

    async def add(self, command: Command) -> None:
        assert self._visible(command.tenant_id), "row-level security: WITH CHECK failed"
        if command.request_id and any(c.tenant_id == command.tenant_id and c.request_id == command.request_id
                                      for c in self._state.commands.values()):
            raise DuplicateRequest(command.request_id)
        self._state.commands[command.id] = command

    async def save(self, command: Command) -> Command:
        current = await self.get(command.id)
        if current is None or current.version != command.version:
            raise Aborted(f"{command.name} was changed concurrently", reason="COMMAND_CHANGED")
        saved = replace(command, version=command.version + 1)
        self._state.commands[command.id] = saved
        if saved.terminal:
            self._finished.append(saved.id)
        return saved

    async def list(self, query: Page, *, device_id: str | None) -> list[Command]:
        rows = [c for c in self._state.commands.values() if self._visible(c.tenant_id)
                and (device_id is None or c.device_id == device_id) and matches(query.filter, _record(c))]

        def key(c: Command) -> list[Any]:
            return [_record(c)[t.field] for t in query.order] + [c.id]

        if query.after is not None:
            after = list(query.after)
            rows = [c for c in rows if compare_keysets(query.order, key(c), after) > 0]
        rows.sort(key=functools.cmp_to_key(lambda a, b: compare_keysets(query.order, key(a), key(b))))
        return rows[: query.fetch]


class FakeProjectionRepository(_Repository):
    async def lock_device(self, device_id: str) -> None:
        """One unit of work at a time runs here: there is nothing to serialise."""

    async def device_commands(self, device_id: str) -> DeviceCommands | None:
        device = self._state.devices.get(device_id)
        if device is None or not self._visible(device[0]):
            return None
        _tenant, state, template_id = device
        template = self._state.templates.get(template_id) if template_id else None
        visible = template is not None and (template[0] == "" or self._visible(template[0]))
        return DeviceCommands(device_id, state, template_id, dict(template[1]) if template and visible else {})


class FakeCommandsUnitOfWork(BufferedEmitter):
    def __init__(self, store: FakeCommandsStore, scope: Scope) -> None:
        super().__init__(SOURCE, scope)
        self._store = store
        self._finished: list[str] = []
        self.committed = False

    async def __aenter__(self) -> Self:
        self._state = self._store.state.copy()
        self.commands = FakeCommandRepository(self._store, self._state, self.scope, self._finished)
        self.projection = FakeProjectionRepository(self._state, self.scope)
        return self

    async def commit(self) -> None:
        self._store.state = self._state
        self._store.events.extend(self.pending)
        self.committed = True
        for command_id in self._finished:  # NOTIFY is delivered at commit
            self._store.waiters.notify(command_id)


class FakeClock:
    def __init__(self, start: datetime = EPOCH) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def make_handlers(store: FakeCommandsStore, *, clock: FakeClock | None = None, limits: Limits = DEFAULT_LIMITS,
                  wait_poll_seconds: float = 5.0) -> CommandHandlers:
    def uow(scope: Scope) -> Any:
        return FakeCommandsUnitOfWork(store, scope)

    return CommandHandlers(uow, PageTokens(PAGE_SECRET), limits, store.waiters, clock=clock or FakeClock(),
                           wait_poll_seconds=wait_poll_seconds)
