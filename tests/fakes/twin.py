"""An in-memory twin unit of work for handler and inbox tests.

`FakeTwinStore` is the "database": committed twins, revisions and the events that went out with them.
Each unit of work works on a copy and writes it back only on `commit` (a handler that raises leaves the
store as it was, like a rolled-back transaction). Tenant scope hides other tenants' twins, as
row-level security does; platform scope sees every twin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self, cast

from google.protobuf.message import Message

from muster.events.v1.event_pb2 import Event
from muster.runtime.db import Scope
from services.twin.twin import Revision, Twin, new_twin
from services.twin.unit_of_work import SOURCE, TwinUnitOfWork, UnitOfWorkFactory

from .emitter import BufferedEmitter


@dataclass
class FakeTwinStore:
    twins: dict[str, Twin] = field(default_factory=dict)
    revisions: dict[tuple[str, int], Revision] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    commits: int = 0

    def add(self, tenant: str, device_id: str, now: datetime) -> Twin:
        self.twins[device_id] = new_twin(tenant, device_id, now)
        return self.twins[device_id]

    def payloads(self, kind: type[Message]) -> list[Any]:
        found = []
        for event in self.events:
            if event.type == kind.DESCRIPTOR.name:
                message = kind()
                event.payload.Unpack(message)
                found.append(message)
        return found

    def factory(self) -> UnitOfWorkFactory:
        return lambda scope: cast(TwinUnitOfWork, FakeTwinUnitOfWork(self, scope))


class FakeTwinRepository:
    def __init__(self, uow: FakeTwinUnitOfWork) -> None:
        self._uow = uow

    def _visible(self, twin: Twin | None) -> Twin | None:
        scope = self._uow.scope
        if twin is None or scope.platform or twin.tenant_id == scope.tenant:
            return twin
        return None

    async def get(self, device_id: str, *, for_update: bool = False) -> Twin | None:
        return self._visible(self._uow.rows.get(device_id))

    async def get_many_for_update(self, device_ids: list[str]) -> dict[str, Twin]:
        return {d: t for d in sorted(set(device_ids)) if (t := self._visible(self._uow.rows.get(d))) is not None}

    async def save(self, twin: Twin) -> None:
        assert self._visible(self._uow.rows.get(twin.device_id)) is not None, "row-level security"
        self._uow.rows[twin.device_id] = twin

    async def save_many(self, twins: list[Twin]) -> None:
        for twin in twins:
            await self.save(twin)

    async def add_revision(self, revision: Revision) -> None:
        key = (revision.device_id, revision.revision)
        assert key not in self._uow.revision_rows, "duplicate key"
        self._uow.revision_rows[key] = revision

    async def get_revision(self, device_id: str, revision: int) -> Revision | None:
        return self._uow.revision_rows.get((device_id, revision))

    async def list_revisions(self, device_id: str, *, before: int | None, limit: int) -> list[Revision]:
        found = sorted((r for (d, n), r in self._uow.revision_rows.items()
                        if d == device_id and (before is None or n < before)), key=lambda r: -r.revision)
        return found[:limit]


class FakeTwinUnitOfWork(BufferedEmitter):
    def __init__(self, store: FakeTwinStore, scope: Scope) -> None:
        super().__init__(SOURCE, scope)
        self._store = store
        self.committed = False
        self.rows: dict[str, Twin] = {}
        self.revision_rows: dict[tuple[str, int], Revision] = {}
        self.twins = FakeTwinRepository(self)

    async def __aenter__(self) -> Self:
        self.rows = dict(self._store.twins)
        self.revision_rows = dict(self._store.revisions)
        return self

    async def commit(self) -> None:
        self._store.twins = self.rows
        self._store.revisions = self.revision_rows
        self._store.events.extend(self.pending)
        self._store.commits += 1
        self.committed = True

