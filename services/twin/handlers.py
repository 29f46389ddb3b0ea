"""Operator use cases of the twin: read it, change desired (with history), roll back.

Each opens one unit of work in the caller's tenant, applies the domain rules and emits its events in
the same transaction. After a desired change commits, `on_desired` hands the twin to the pusher, which
sends it to the device at once (the pusher's sweep sends it anyway if this process dies first).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from muster.runtime.auth import Principal
from muster.runtime.db import Scope
from muster.runtime.errors import InvalidArgument, NotFound
from muster.runtime.pagination import PageTokens, fingerprint, page_size
from services.twin import mapping
from services.twin.documents import Limits, diff_patch
from services.twin.twin import Revision, Twin, check_etag, update_desired
from services.twin.unit_of_work import TwinUnitOfWork, UnitOfWorkFactory

Clock = Callable[[], datetime]
DesiredListener = Callable[[Twin], None]
PatchOf = Callable[[Twin, TwinUnitOfWork], Awaitable[tuple[Mapping[str, Any], int | None]]]
"""The merge patch to apply to the locked twin, and the revision it rolls back to (None: not a rollback)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class UpdateDesired:
    device_id: str
    patch: Mapping[str, Any]
    etag: str = ""
    force: bool = False


@dataclass(frozen=True)
class Rollback:
    device_id: str
    revision: int
    etag: str = ""
    force: bool = False


def _scope(principal: Principal) -> Scope:
    return Scope.of_tenant(principal.require_tenant())


def _not_found(device_id: str) -> NotFound:
    return NotFound(f"devices/{device_id}/twin not found: no such device in this tenant (a device created "
                    "a moment ago may take a second to get its twin)", reason="TWIN_NOT_FOUND")


async def _twin(uow: TwinUnitOfWork, device_id: str, *, for_update: bool = False) -> Twin:
    twin = await uow.twins.get(device_id, for_update=for_update)
    if twin is None:
        raise _not_found(device_id)
    return twin


class TwinHandlers:
    def __init__(self, uow: UnitOfWorkFactory, page_tokens: PageTokens, limits: Limits, *,
                 clock: Clock = _utcnow, on_desired: DesiredListener | None = None) -> None:
        self._uow = uow
        self._pages = page_tokens
        self._limits = limits
        self._now = clock
        self._on_desired = on_desired

    async def get_twin(self, principal: Principal, device_id: str) -> Twin:
        async with self._uow(_scope(principal)) as uow:
            return await _twin(uow, device_id)

    async def update_desired(self, principal: Principal, command: UpdateDesired) -> Twin:
        if not command.patch:
            raise InvalidArgument.field("patch", "is empty: send the keys to change (null deletes a key)")
        async def patch(_twin: Twin, _uow: TwinUnitOfWork) -> tuple[Mapping[str, Any], int | None]:
            return command.patch, None

        return await self._write(principal, command.device_id, command.etag, command.force, patch)

    async def rollback(self, principal: Principal, command: Rollback) -> Twin:
        if command.revision < 1:
            raise InvalidArgument.field("revision", f"must be 1 or later (got {command.revision})")

        async def target(twin: Twin, uow: TwinUnitOfWork) -> tuple[Mapping[str, Any], int | None]:
            revision = await uow.twins.get_revision(twin.device_id, command.revision)
            if revision is None:
                raise NotFound(f"{twin.name}/revisions/{command.revision} not found (the twin is at revision "
                               f"{twin.desired_version})", reason="REVISION_NOT_FOUND")
            return diff_patch(twin.desired, revision.desired), command.revision

        return await self._write(principal, command.device_id, command.etag, command.force, target)

    async def _write(self, principal: Principal, device_id: str, etag: str, force: bool,
                     patch_of: PatchOf) -> Twin:
        now = self._now()
        async with self._uow(_scope(principal)) as uow:
            twin = await _twin(uow, device_id, for_update=True)
            check_etag(twin, etag, force=force)
            patch, rollback_of = await patch_of(twin, uow)
            change = update_desired(twin, patch, limits=self._limits, now=now)
            after = change.twin
            await uow.twins.save(after)
            await uow.twins.add_revision(Revision(
                tenant_id=after.tenant_id, device_id=after.device_id, revision=after.desired_version,
                patch=change.applied, desired=after.desired, actor=principal.subject, create_time=now,
                rollback_of=rollback_of))
            uow.emit(mapping.desired_changed(after, change.applied, principal.subject, rollback_of),
                     subject=after.device)
            if change.sync_changed:
                uow.emit(mapping.sync_changed(after), subject=after.device)
            await uow.commit()
        if self._on_desired is not None:
            self._on_desired(after)
        return after

    async def list_revisions(self, principal: Principal, device_id: str, *, size: int,
                             token: str) -> tuple[list[Revision], str]:
        tenant = principal.require_tenant()
        limit = page_size(size)
        bound = fingerprint(tenant, device_id)
        after = self._pages.decode(token, fingerprint=bound)
        async with self._uow(_scope(principal)) as uow:
            await _twin(uow, device_id)
            rows = await uow.twins.list_revisions(device_id, before=int(after[0]) if after else None, limit=limit + 1)
        items = rows[:limit]
        next_token = self._pages.encode(last=[items[-1].revision], fingerprint=bound) if len(rows) > limit else ""
        return items, next_token
