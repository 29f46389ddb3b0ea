"""Fake group repository (same interface as services/registry/group_repository.py): groups keyed by
(tenant, id), memberships by (tenant, group, device), both behind the scope's row-level security,
with the composite foreign keys' rules (a membership needs a group and a device of its own tenant;
deleting either drops it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from muster.runtime.errors import AlreadyExists
from muster.runtime.listing import Page
from services.registry.domain import Device
from services.registry.groups import Group, GroupType

from .registry_state import Repository, RowLevelSecurityViolation, paged, stale


class FakeGroupRepository(Repository):
    def _mine(self) -> list[Group]:
        return [g for g in self._state.groups.values() if self._visible(g.tenant_id)]

    def _member_ids(self, group_id: str) -> set[str]:
        return {d for (t, g, d) in self._state.group_members if g == group_id and self._visible(t)}

    async def get(self, group_id: str) -> Group | None:
        found = [g for g in self._mine() if g.id == group_id]
        return found[0] if found else None

    async def add(self, group: Group) -> None:
        self._check(group.tenant_id)
        if group.tenant_id not in self._state.tenants:
            raise RowLevelSecurityViolation(f"foreign key: tenant {group.tenant_id!r} does not exist")
        if (group.tenant_id, group.id) in self._state.groups:
            raise AlreadyExists(f"group {group.id!r} already exists", reason="GROUP_EXISTS")
        self._state.groups[(group.tenant_id, group.id)] = group

    async def save(self, group: Group, expected_version: int) -> None:
        self._check(group.tenant_id)
        current = await self.get(group.id)
        if current is None or current.version != expected_version:
            raise stale(group.name, expected_version)
        self._state.groups[(group.tenant_id, group.id)] = group

    async def remove(self, group_id: str) -> None:
        for group in [g for g in self._mine() if g.id == group_id]:
            del self._state.groups[(group.tenant_id, group.id)]
            for key in [k for k in self._state.group_members if k[:2] == (group.tenant_id, group.id)]:
                del self._state.group_members[key]  # ON DELETE CASCADE

    async def existing_devices(self, device_ids: Sequence[str]) -> set[str]:
        return {d for d in device_ids if (device := self._state.devices.get(d)) is not None
                and self._visible(device.tenant_id)}

    async def add_members(self, tenant_id: str, group_id: str, device_ids: Sequence[str],
                          now: datetime) -> list[str]:
        self._check(tenant_id)
        added = []
        for device_id in device_ids:
            device = self._state.devices.get(device_id)
            if (tenant_id, group_id) not in self._state.groups or device is None or device.tenant_id != tenant_id:
                raise RowLevelSecurityViolation(f"foreign key: group {group_id!r} or device {device_id!r} of "
                                                f"tenant {tenant_id!r} does not exist")
            if (tenant_id, group_id, device_id) not in self._state.group_members:
                self._state.group_members[(tenant_id, group_id, device_id)] = now
                added.append(device_id)
        return added

    async def remove_members(self, group_id: str, device_ids: Sequence[str]) -> list[str]:
        removed = set()
        for key in [k for k in self._state.group_members if k[1] == group_id and self._visible(k[0])]:
            if key[2] in device_ids:
                del self._state.group_members[key]
                removed.add(key[2])
        return [d for d in device_ids if d in removed]

    async def list_members(self, group_id: str, query: Page) -> list[Device]:
        members = self._member_ids(group_id)
        return paged([d for d in self._state.devices.values() if d.id in members and self._visible(d.tenant_id)],
                     query)

    async def list(self, query: Page, *, group_type: GroupType | None = None,
                   member: str | None = None) -> list[Group]:
        chosen = [g for g in self._mine() if group_type is None or g.type is group_type]
        if member is not None:
            chosen = [g for g in chosen if (g.tenant_id, g.id, member) in self._state.group_members]
        return paged(chosen, query)
