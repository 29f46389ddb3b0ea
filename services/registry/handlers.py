"""Use cases of the registry: each opens one unit of work, applies domain rules, emits its events.

Handlers see plain commands and a `Principal`, never protobuf requests or gRPC contexts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.protobuf.field_mask_pb2 import FieldMask

from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb
from muster.runtime.auth import Principal, Role, TokenCodec
from muster.runtime.db import Scope
from muster.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from muster.runtime.listing import Listing, Page
from muster.runtime.pagination import OrderTerm, PageTokens
from services.registry import commands as cmd
from services.registry import listings
from services.registry.device_reads import DeviceReads
from services.registry.domain import (
    Device,
    Site,
    Tenant,
    check_etag,
    new_device_id,
    new_site_id,
    validate_device,
    validate_site,
    validate_tenant,
)
from services.registry.mapping import device_to_proto, site_to_proto, tenant_to_proto
from services.registry.template_handlers import add_template_sensors
from services.registry.unit_of_work import RegistryUnitOfWork, UnitOfWorkFactory

T = TypeVar("T", Tenant, Site, Device)
Clock = Callable[[], datetime]

DEFAULT_TOKEN_TTL = timedelta(hours=24)

# Update-mask path -> domain attribute, where they differ.
_DEVICE_ATTRS = {"site": "site_id", "template": "template_id"}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _apply(current: T, update: cmd.Update, attrs: Mapping[str, str], now: datetime) -> T:
    changes: dict[str, Any] = {attrs.get(path, path): update.values[path] for path in update.mask}
    return replace(current, **changes, update_time=now, version=current.version + 1)


def _tenant_scope(principal: Principal) -> Scope:
    return Scope.of_tenant(principal.require_tenant())


class RegistryHandlers:
    def __init__(self, uow: UnitOfWorkFactory, page_tokens: PageTokens, tokens: TokenCodec,
                 clock: Clock = _utcnow, *, reads: DeviceReads) -> None:
        self._uow = uow
        self._reads = reads
        self._pages = page_tokens
        self._tokens = tokens
        self._now = clock

    # --- tenants (platform admins; a tenant's own users may read their tenant) -------------------

    async def create_tenant(self, command: cmd.CreateTenant) -> Tenant:
        now = self._now()
        tenant = Tenant(id=command.tenant_id, display_name=command.display_name, create_time=now, update_time=now)
        validate_tenant(tenant)
        async with self._uow(Scope.platform_wide()) as uow:
            await uow.tenants.add(tenant)
            uow.emit(ev.TenantCreated(tenant=tenant_to_proto(tenant)), subject=tenant.name, tenant=tenant.id)
            await uow.commit()
        return tenant

    async def get_tenant(self, principal: Principal, tenant_id: str) -> Tenant:
        scope = Scope.platform_wide() if principal.is_platform_admin else _tenant_scope(principal)
        async with self._uow(scope) as uow:
            return _found(await uow.tenants.get(tenant_id), f"tenants/{tenant_id}")

    async def list_tenants(self, params: cmd.ListParams) -> tuple[list[Tenant], str]:
        page = self._page(listings.TENANTS, params, scope="platform")
        async with self._uow(Scope.platform_wide()) as uow:
            rows = await uow.tenants.list(page)
        return Listing.finish(self._pages, page, rows, lambda t: _keyset(t, page.order, t.id))

    async def update_tenant(self, update: cmd.Update) -> Tenant:
        async with self._uow(Scope.platform_wide()) as uow:
            current = _found(await uow.tenants.get(update.id), f"tenants/{update.id}")
            check_etag(update.etag, current.version, current.name)
            tenant = _apply(current, update, {}, self._now())
            validate_tenant(tenant)
            await uow.tenants.save(tenant, current.version)
            uow.emit(ev.TenantUpdated(tenant=tenant_to_proto(tenant), update_mask=_mask(update)),
                     subject=tenant.name, tenant=tenant.id)
            await uow.commit()
        return tenant

    async def delete_tenant(self, delete: cmd.Delete) -> None:
        async with self._uow(Scope.platform_wide()) as uow:
            current = _found(await uow.tenants.get(delete.id), f"tenants/{delete.id}")
            check_etag(delete.etag, current.version, current.name)
            if await uow.tenants.owns_anything(delete.id):
                raise FailedPrecondition(f"tenant {delete.id!r} still has sites or devices: delete them first",
                                         reason="TENANT_NOT_EMPTY")
            await uow.tenants.remove(delete.id)
            uow.emit(ev.TenantDeleted(name=current.name), subject=current.name, tenant=current.id)
            await uow.commit()

    # --- sites -------------------------------------------------------------------------------

    async def create_site(self, principal: Principal, command: cmd.CreateSite) -> Site:
        tenant = principal.require_tenant()
        now = self._now()
        site = Site(tenant_id=tenant, id=command.site_id or new_site_id(), display_name=command.display_name,
                    address=command.address, time_zone=command.time_zone or "UTC", location=command.location,
                    labels=dict(command.labels), create_time=now, update_time=now)
        validate_site(site)
        async with self._uow(_tenant_scope(principal)) as uow:
            await uow.sites.add(site)
            uow.emit(ev.SiteCreated(site=site_to_proto(site)), subject=site.name)
            await uow.commit()
        return site

    async def get_site(self, principal: Principal, site_id: str) -> Site:
        async with self._uow(_tenant_scope(principal)) as uow:
            return _found(await uow.sites.get(site_id), f"sites/{site_id}")

    async def list_sites(self, principal: Principal, params: cmd.ListParams) -> tuple[list[Site], str]:
        page = self._page(listings.SITES, params, scope=principal.require_tenant())
        async with self._uow(_tenant_scope(principal)) as uow:
            rows = await uow.sites.list(page)
        return Listing.finish(self._pages, page, rows, lambda s: _keyset(s, page.order, s.id))

    async def update_site(self, principal: Principal, update: cmd.Update) -> Site:
        async with self._uow(_tenant_scope(principal)) as uow:
            current = _found(await uow.sites.get(update.id), f"sites/{update.id}")
            check_etag(update.etag, current.version, current.name)
            site = _apply(current, update, {}, self._now())
            validate_site(site)
            await uow.sites.save(site, current.version)
            uow.emit(ev.SiteUpdated(site=site_to_proto(site), update_mask=_mask(update)),
                     subject=site.name)
            await uow.commit()
        return site

    async def delete_site(self, principal: Principal, delete: cmd.Delete) -> None:
        async with self._uow(_tenant_scope(principal)) as uow:
            current = _found(await uow.sites.get(delete.id), f"sites/{delete.id}")
            check_etag(delete.etag, current.version, current.name)
            installed = await uow.devices.count_at_site(delete.id)
            if installed:
                raise FailedPrecondition(f"{installed} device(s) are installed at {current.name}: move or delete "
                                         "them first", reason="SITE_IN_USE", metadata={"devices": str(installed)})
            await uow.sites.remove(delete.id)
            uow.emit(ev.SiteDeleted(name=current.name), subject=current.name)
            await uow.commit()

    # --- devices -----------------------------------------------------------------------------

    async def create_device(self, principal: Principal, command: cmd.CreateDevice) -> Device:
        tenant = principal.require_tenant()
        now = self._now()
        device = Device(tenant_id=tenant, id=new_device_id(), display_name=command.display_name,
                        site_id=command.site_id or None, labels=dict(command.labels), serial=command.serial,
                        notes=command.notes, location=command.location, template_id=command.template_id or None,
                        transports=command.transports, create_time=now, update_time=now)
        validate_device(device)
        async with self._uow(_tenant_scope(principal)) as uow:
            await insert_device(uow, device, now)
            await uow.commit()
        return device

    async def get_device(self, principal: Principal, device_id: str) -> Device:
        return _found(await self._reads.get(_tenant_scope(principal), device_id), f"devices/{device_id}")

    async def list_devices(self, principal: Principal, params: cmd.ListParams) -> tuple[list[Device], str]:
        page = self._page(listings.DEVICES, params, scope=principal.require_tenant())
        async with self._uow(_tenant_scope(principal)) as uow:
            rows = await uow.devices.list(page)
        return Listing.finish(self._pages, page, rows, lambda d: _keyset(d, page.order, d.id))

    async def update_device(self, principal: Principal, update: cmd.Update) -> Device:
        async with self._uow(_tenant_scope(principal)) as uow:
            current = _found(await uow.devices.get(update.id), f"devices/{update.id}")
            check_etag(update.etag, current.version, current.name)
            device = _apply(current, update, _DEVICE_ATTRS, self._now())
            validate_device(device)
            if "site" in update.mask and device.site_id is not None:
                await self._require_site(uow.sites.get, device.site_id, "device.site")
            await uow.devices.save(device, current.version)
            uow.emit(ev.DeviceUpdated(device=device_to_proto(device), update_mask=_mask(update)),
                     subject=device.name)
            if "template" in update.mask:
                await add_template_sensors(uow, device, device.update_time)
            await uow.commit()
        return device

    async def delete_device(self, principal: Principal, delete: cmd.Delete) -> None:
        async with self._uow(_tenant_scope(principal)) as uow:
            current = _found(await uow.devices.get(delete.id), f"devices/{delete.id}")
            check_etag(delete.etag, current.version, current.name)
            await uow.devices.remove(delete.id)
            uow.emit(ev.DeviceDeleted(name=current.name, serial=current.serial), subject=current.name)
            await uow.commit()

    async def change_device_state(self, principal: Principal, change: cmd.ChangeDeviceState) -> Device:
        async with self._uow(_tenant_scope(principal)) as uow:
            current = _found(await uow.devices.get(change.device_id), f"devices/{change.device_id}")
            check_etag(change.etag, current.version, current.name)
            device = current.transition(change.to, self._now())
            await uow.devices.save(device, current.version)
            uow.emit(ev.DeviceStateChanged(device=device_to_proto(device),
                                           previous_state=pb.DeviceState.ValueType(int(current.state)),
                                           reason=change.reason), subject=device.name)
            await uow.commit()
        return device

    # --- operator tokens ---------------------------------------------------------------------

    async def issue_operator_token(self, principal: Principal, command: cmd.IssueOperatorToken) -> tuple[str, datetime]:
        principal.require(Role.ADMIN)
        principal.require(command.role)  # nobody hands out more than they have
        if command.role is Role.PLATFORM_ADMIN:
            if command.tenant_id:
                raise InvalidArgument.field("tenant", "must be empty for a platform admin token")
            tenant = None
        else:
            tenant = command.tenant_id or principal.tenant
            if tenant is None:
                raise InvalidArgument.field("tenant", "is required for a tenant role")
            if not principal.is_platform_admin and tenant != principal.tenant:
                raise NotFound(f"tenants/{tenant} not found")
            async with self._uow(Scope.of_tenant(tenant)) as uow:
                _found(await uow.tenants.get(tenant), f"tenants/{tenant}")
        ttl = DEFAULT_TOKEN_TTL if command.ttl is None else command.ttl  # an explicit 0 is refused
        if ttl <= timedelta(0) or ttl > timedelta(days=365):
            raise InvalidArgument.field("ttl", "must be positive and at most 365 days")
        return self._tokens.issue(subject=command.subject, role=command.role, tenant=tenant, ttl=ttl,
                                  now=self._now())

    # --- helpers -----------------------------------------------------------------------------

    def _page(self, listing: Listing, params: cmd.ListParams, *, scope: str) -> Page:
        return listing.page(self._pages, filter_text=params.filter, order_by=params.order_by,
                            size=params.page_size, token=params.page_token, scope=scope)

    @staticmethod
    async def _require_site(get: Callable[[str], Any], site_id: str, field: str) -> None:
        if await get(site_id) is None:
            raise InvalidArgument.field(field, f"site sites/{site_id} does not exist")


async def insert_device(uow: RegistryUnitOfWork, device: Device, now: datetime) -> None:
    """Add a validated new device in `uow`: its site and template must exist; emits DeviceCreated and
    gives it its template's required sensors. The one path every way of creating a device takes."""
    if device.site_id is not None:
        await RegistryHandlers._require_site(uow.sites.get, device.site_id, "device.site")
    if device.template_id is not None and await uow.templates.get(device.template_id) is None:
        raise InvalidArgument.field("device.template", f"template templates/{device.template_id} does not exist")
    await uow.devices.add(device)
    uow.emit(ev.DeviceCreated(device=device_to_proto(device)), subject=device.name)
    await add_template_sensors(uow, device, now)


def _mask(update: cmd.Update) -> FieldMask:
    return FieldMask(paths=sorted(update.mask))


def _found(value: T | None, name: str) -> T:
    if value is None:
        raise NotFound(f"{name} not found")
    return value


_KEY_ATTRS = {"site": "site_id", "template": "template_id"}


def _keyset(item: Any, order: Sequence[OrderTerm], unique: str) -> list[Any]:
    return [getattr(item, _KEY_ATTRS.get(term.field, term.field)) for term in order] + [unique]
