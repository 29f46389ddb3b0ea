"""Use cases of device groups: CRUD, static membership in bulk, and membership resolved for reading
(a DYNAMIC group's members are the devices its filter matches now). One unit of work each."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.auth import Principal
from muster.runtime.db import Scope
from muster.runtime.errors import InvalidArgument
from muster.runtime.filtering import And, Expr, matches
from muster.runtime.listing import Listing, Page
from muster.runtime.pagination import PageTokens, compare_keysets
from services.registry import commands as cmd
from services.registry import listings
from services.registry.domain import Device, check_etag
from services.registry.group_mapping import group_to_proto
from services.registry.groups import (
    Group,
    GroupType,
    device_filter_record,
    missing_members,
    new_group_id,
    unique_members,
    validate_group,
)
from services.registry.handlers import _keyset
from services.registry.template_handlers import Clock, _found, _mask, _utcnow
from services.registry.unit_of_work import RegistryUnitOfWork, UnitOfWorkFactory

GROUP_FIELDS = frozenset({"display_name", "description", "labels", "filter"})
DYNAMIC_SCAN = 200
"""DYNAMIC groups read per query while looking for those matching one device."""


@dataclass(frozen=True)
class CreateGroup:
    display_name: str
    group_id: str = ""
    type: GroupType = GroupType.STATIC
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    filter: str = ""


def _combine(*exprs: Expr | None) -> Expr | None:
    present = tuple(e for e in exprs if e is not None)
    return None if not present else present[0] if len(present) == 1 else And(present)


class GroupHandlers:
    def __init__(self, uow: UnitOfWorkFactory, page_tokens: PageTokens, clock: Clock = _utcnow) -> None:
        self._uow = uow
        self._pages = page_tokens
        self._now = clock

    def _page(self, listing: Listing, params: cmd.ListParams, scope: str) -> Page:
        return listing.page(self._pages, filter_text=params.filter, order_by=params.order_by,
                            size=params.page_size, token=params.page_token, scope=scope)

    # --- groups ------------------------------------------------------------------------------

    async def create_group(self, principal: Principal, command: CreateGroup) -> Group:
        tenant = principal.require_tenant()
        now = self._now()
        group = Group(tenant_id=tenant, id=command.group_id or new_group_id(), display_name=command.display_name,
                      type=command.type, description=command.description, labels=dict(command.labels),
                      filter=command.filter, create_time=now, update_time=now)
        validate_group(group)
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            await uow.groups.add(group)
            uow.emit(ev.GroupCreated(group=group_to_proto(group)), subject=group.name)
            await uow.commit()
        return group

    async def get_group(self, principal: Principal, group_id: str) -> Group:
        async with self._uow(Scope.of_tenant(principal.require_tenant())) as uow:
            return _found(await uow.groups.get(group_id), f"groups/{group_id}")

    async def list_groups(self, principal: Principal, params: cmd.ListParams) -> tuple[list[Group], str]:
        tenant = principal.require_tenant()
        page = self._page(listings.GROUPS, params, f"groups:{tenant}")
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            rows = await uow.groups.list(page)
        return Listing.finish(self._pages, page, rows, lambda g: _keyset(g, page.order, g.id))

    async def update_group(self, principal: Principal, update: cmd.Update) -> Group:
        unknown = update.mask - GROUP_FIELDS
        if unknown:
            raise InvalidArgument.field("update_mask", f"cannot change {', '.join(sorted(unknown))}")
        async with self._uow(Scope.of_tenant(principal.require_tenant())) as uow:
            current = _found(await uow.groups.get(update.id), f"groups/{update.id}")
            check_etag(update.etag, current.version, current.name)
            changes: dict[str, Any] = {path: update.values[path] for path in update.mask}
            group = replace(current, **changes, update_time=self._now(), version=current.version + 1)
            validate_group(group)
            await uow.groups.save(group, current.version)
            uow.emit(ev.GroupUpdated(group=group_to_proto(group), update_mask=_mask(update)), subject=group.name)
            await uow.commit()
        return group

    async def delete_group(self, principal: Principal, delete: cmd.Delete) -> None:
        async with self._uow(Scope.of_tenant(principal.require_tenant())) as uow:
            current = _found(await uow.groups.get(delete.id), f"groups/{delete.id}")
            check_etag(delete.etag, current.version, current.name)
            await uow.groups.remove(delete.id)  # memberships cascade
            uow.emit(ev.GroupDeleted(name=current.name), subject=current.name)
            await uow.commit()

    # --- membership --------------------------------------------------------------------------

    async def add_members(self, principal: Principal, group_id: str, device_ids: Sequence[str]) -> list[str]:
        """All or nothing: an unknown device refuses the whole call. Returns the devices that are new members."""
        tenant = principal.require_tenant()
        wanted = unique_members(device_ids)
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            group = _found(await uow.groups.get(group_id), f"groups/{group_id}")
            group.require_static()
            missing_members(device_ids, await uow.groups.existing_devices(wanted))
            added = await uow.groups.add_members(tenant, group_id, wanted, self._now())
            if added:
                uow.emit(ev.GroupMembersAdded(group=group.name, devices=[f"devices/{d}" for d in added]),
                         subject=group.name)
            await uow.commit()
        return added

    async def remove_members(self, principal: Principal, group_id: str, device_ids: Sequence[str]) -> list[str]:
        """Devices that are not members are ignored. Returns the devices that were members."""
        wanted = unique_members(device_ids)
        async with self._uow(Scope.of_tenant(principal.require_tenant())) as uow:
            group = _found(await uow.groups.get(group_id), f"groups/{group_id}")
            group.require_static()
            removed = await uow.groups.remove_members(group_id, wanted)
            if removed:
                uow.emit(ev.GroupMembersRemoved(group=group.name, devices=[f"devices/{d}" for d in removed]),
                         subject=group.name)
            await uow.commit()
        return removed

    async def list_members(self, principal: Principal, group_id: str,
                           params: cmd.ListParams) -> tuple[list[Device], str]:
        """A STATIC group's members, or the devices a DYNAMIC group's filter matches now, narrowed by the
        request's filter and paged like ListDevices."""
        tenant = principal.require_tenant()
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            group = _found(await uow.groups.get(group_id), f"groups/{group_id}")
            # A changed filter invalidates the tokens of the old one.
            page = self._page(listings.DEVICES, params, f"group-members:{tenant}:{group_id}:{group.filter}")
            if group.is_dynamic:
                rows = await uow.devices.list(replace(page, filter=_combine(group.membership(), page.filter)))
            else:
                rows = await uow.groups.list_members(group_id, page)
        return Listing.finish(self._pages, page, rows, lambda d: _keyset(d, page.order, d.id))

    async def list_device_groups(self, principal: Principal, device_id: str,
                                 params: cmd.ListParams) -> tuple[list[Group], str]:
        """The STATIC groups listing the device and the DYNAMIC groups whose filter matches it, as one
        list in the requested order."""
        tenant = principal.require_tenant()
        page = self._page(listings.GROUPS, params, f"device-groups:{tenant}:{device_id}")
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            device = _found(await uow.devices.get(device_id), f"devices/{device_id}")
            static = await uow.groups.list(page, member=device_id)
            dynamic = await self._matching_dynamic_groups(uow, device, page)
        def cmp(a: Group, b: Group) -> int:
            return compare_keysets(page.order, _keyset(a, page.order, a.id), _keyset(b, page.order, b.id))

        rows = sorted([*static, *dynamic], key=functools.cmp_to_key(cmp))[: page.fetch]
        return Listing.finish(self._pages, page, rows, lambda g: _keyset(g, page.order, g.id))

    @staticmethod
    async def _matching_dynamic_groups(uow: RegistryUnitOfWork, device: Device, page: Page) -> list[Group]:
        """Up to `page.fetch` DYNAMIC groups (after the page's keyset) whose filter matches `device`,
        scanning the tenant's dynamic groups DYNAMIC_SCAN at a time."""
        record = device_filter_record(device)
        found: list[Group] = []
        scan = replace(page, limit=DYNAMIC_SCAN)
        while len(found) < page.fetch:
            chunk = await uow.groups.list(scan, group_type=GroupType.DYNAMIC)
            found += [g for g in chunk if matches(g.membership(), record)]
            if len(chunk) < scan.fetch:
                break
            scan = replace(scan, after=_keyset(chunk[-1], page.order, chunk[-1].id))
        return found[: page.fetch]
