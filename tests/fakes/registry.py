"""An in-memory registry unit of work for handler tests.

`FakeRegistryStore` is the "database": committed tenants, sites, devices and the events that went
out with them. Each `FakeRegistryUnitOfWork` works on a private copy of that state and writes it
back only on `commit`, so a handler that raises half-way leaves the store exactly as it found it
(like a rolled-back transaction). The fake repositories keep the real repositories' interface and
the semantics the handlers rely on:

- tenant isolation by scope, as row-level security does it: a tenant-scoped unit of work sees only
  that tenant's rows, and writing a row of another tenant fails like RLS's WITH CHECK;
- optimistic concurrency: `save(item, expected_version)` raises Aborted when the stored version moved;
- uniqueness (tenant id, site id per tenant, device serial per tenant) and the device -> site
  reference, raising the same error types the SQL repositories map their integrity errors to;
- listing: filters evaluated with `muster.runtime.filtering.matches` and keyset order with
  `muster.runtime.pagination.compare_keysets`, the in-memory twins of the SQL the real ones run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from google.protobuf.message import Message

from muster.events.v1.event_pb2 import Event
from muster.runtime.auth import TokenCodec
from muster.runtime.db import Scope
from muster.runtime.errors import Aborted, AlreadyExists, InvalidArgument
from muster.runtime.events import new_event
from muster.runtime.filtering import matches
from muster.runtime.listing import Page
from muster.runtime.pagination import PageTokens, compare_keysets
from services.registry import repository
from services.registry.domain import Device, Site, Tenant, etag_of
from services.registry.handlers import RegistryHandlers
from services.registry.unit_of_work import SOURCE, UnitOfWorkFactory

T = TypeVar("T", Tenant, Site, Device)

TOKEN_SECRET = b"unit-test-token-secret-0123456789abcdef"
PAGE_SECRET = b"unit-test-page-token-secret-0123"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

# Filter column -> domain attribute, where they differ (the SQL repositories' column maps).
_RECORD_ATTRS = {"site": "site_id"}
# order_by field -> domain attribute (as the handlers build keysets).
_KEY_ATTRS = {"site": "site_id"}


class RowLevelSecurityViolation(Exception):
    """What PostgreSQL raises when a row fails the policy's WITH CHECK (a handler bug if ever seen)."""


@dataclass
class RegistryState:
    tenants: dict[str, Tenant] = field(default_factory=dict)
    sites: dict[tuple[str, str], Site] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)

    def copy(self) -> RegistryState:
        # Domain objects are frozen dataclasses: copying the dicts is a full snapshot.
        return RegistryState(dict(self.tenants), dict(self.sites), dict(self.devices))


def _stale(name: str, version: int) -> Aborted:
    return Aborted(f"{name} was changed concurrently (expected etag {etag_of(version)})", reason="ETAG_MISMATCH")


def _record(item: Tenant | Site | Device) -> dict[str, Any]:
    """The row as the filter sees it: filter column key -> value (enums as stored ints)."""
    record: dict[str, Any] = {"display_name": item.display_name, "create_time": item.create_time,
                              "update_time": item.update_time}
    if isinstance(item, Site):
        record.update(time_zone=item.time_zone, labels=dict(item.labels))
    if isinstance(item, Device):
        record.update(serial=item.serial, site=item.site_id, state=int(item.state), labels=dict(item.labels))
    return record


def _paged(items: list[T], query: Page) -> list[T]:
    """Filter, order and cut like `repository._page`: rows after `query.after`, `query.fetch` of them."""

    def key(item: T) -> list[Any]:
        return [getattr(item, _KEY_ATTRS.get(t.field, t.field)) for t in query.order] + [item.id]

    def cmp(a: T, b: T) -> int:
        return compare_keysets(query.order, key(a), key(b))

    chosen = [item for item in items if matches(query.filter, _record(item))]
    if query.after is not None:
        after = list(query.after)
        chosen = [item for item in chosen if compare_keysets(query.order, key(item), after) > 0]
    chosen.sort(key=functools.cmp_to_key(cmp))
    return chosen[: query.fetch]


class _Repository:
    def __init__(self, state: RegistryState, scope: Scope) -> None:
        self._state = state
        self._scope = scope

    def _visible(self, tenant_id: str) -> bool:
        return self._scope.platform or tenant_id == self._scope.tenant

    def _check(self, tenant_id: str) -> None:
        if not self._visible(tenant_id):
            raise RowLevelSecurityViolation(
                f"new row violates row-level security policy (tenant {tenant_id!r}, scope {self._scope})")


class FakeTenantRepository(_Repository):
    async def get(self, tenant_id: str) -> Tenant | None:
        tenant = self._state.tenants.get(tenant_id)
        return tenant if tenant is not None and self._visible(tenant.id) else None

    async def add(self, tenant: Tenant) -> None:
        self._check(tenant.id)
        if tenant.id in self._state.tenants:
            raise AlreadyExists(f"tenant {tenant.id!r} already exists", reason="TENANT_EXISTS")
        self._state.tenants[tenant.id] = tenant

    async def save(self, tenant: Tenant, expected_version: int) -> None:
        self._check(tenant.id)
        current = await self.get(tenant.id)
        if current is None or current.version != expected_version:
            raise _stale(tenant.name, expected_version)
        self._state.tenants[tenant.id] = tenant

    async def remove(self, tenant_id: str) -> None:
        if await self.get(tenant_id) is not None:
            del self._state.tenants[tenant_id]

    async def list(self, query: Page) -> list[Tenant]:
        return _paged([t for t in self._state.tenants.values() if self._visible(t.id)], query)

    async def owns_anything(self, tenant_id: str) -> bool:
        return any(s.tenant_id == tenant_id and self._visible(s.tenant_id) for s in self._state.sites.values()) \
            or any(d.tenant_id == tenant_id and self._visible(d.tenant_id) for d in self._state.devices.values())


class FakeSiteRepository(_Repository):
    def _mine(self) -> list[Site]:
        return [s for s in self._state.sites.values() if self._visible(s.tenant_id)]

    async def get(self, site_id: str) -> Site | None:
        found = [s for s in self._mine() if s.id == site_id]
        return found[0] if found else None

    async def add(self, site: Site) -> None:
        self._check(site.tenant_id)
        if site.tenant_id not in self._state.tenants:
            raise RowLevelSecurityViolation(f"foreign key: tenant {site.tenant_id!r} does not exist")
        if (site.tenant_id, site.id) in self._state.sites:
            raise AlreadyExists(f"site {site.id!r} already exists", reason="SITE_EXISTS")
        self._state.sites[(site.tenant_id, site.id)] = site

    async def save(self, site: Site, expected_version: int) -> None:
        self._check(site.tenant_id)
        current = self._state.sites.get((site.tenant_id, site.id))
        if current is None or current.version != expected_version:
            raise _stale(site.name, expected_version)
        self._state.sites[(site.tenant_id, site.id)] = site

    async def remove(self, site_id: str) -> None:
        for site in self._mine():
            if site.id == site_id:
                del self._state.sites[(site.tenant_id, site.id)]

    async def list(self, query: Page) -> list[Site]:
        return _paged(self._mine(), query)


class FakeDeviceRepository(_Repository):
    def _mine(self) -> list[Device]:
        return [d for d in self._state.devices.values() if self._visible(d.tenant_id)]

    def _check_references(self, device: Device) -> None:
        self._check(device.tenant_id)
        if device.site_id is not None and (device.tenant_id, device.site_id) not in self._state.sites:
            raise InvalidArgument.field("device.site", f"site {device.site_id!r} does not exist")
        if device.serial and any(d.serial == device.serial and d.tenant_id == device.tenant_id and d.id != device.id
                                 for d in self._state.devices.values()):
            raise AlreadyExists(f"a device with serial {device.serial!r} already exists in this tenant",
                                reason="SERIAL_EXISTS", metadata={"serial": device.serial})

    async def get(self, device_id: str) -> Device | None:
        device = self._state.devices.get(device_id)
        return device if device is not None and self._visible(device.tenant_id) else None

    async def add(self, device: Device) -> None:
        self._check_references(device)
        if device.id in self._state.devices:
            raise AlreadyExists(f"device {device.id!r} already exists", reason="DEVICE_EXISTS")
        self._state.devices[device.id] = device

    async def save(self, device: Device, expected_version: int) -> None:
        self._check_references(device)
        current = await self.get(device.id)
        if current is None or current.version != expected_version:
            raise _stale(device.name, expected_version)
        self._state.devices[device.id] = device

    async def remove(self, device_id: str) -> None:
        if await self.get(device_id) is not None:
            del self._state.devices[device_id]

    async def list(self, query: Page) -> list[Device]:
        return _paged(self._mine(), query)

    async def count_at_site(self, site_id: str) -> int:
        return sum(1 for d in self._mine() if d.site_id == site_id)


class FakeRegistryUnitOfWork:
    """Same surface as RegistryUnitOfWork: `async with`, repositories, `emit`, `commit`."""

    tenants: FakeTenantRepository
    sites: FakeSiteRepository
    devices: FakeDeviceRepository

    def __init__(self, store: FakeRegistryStore, scope: Scope) -> None:
        self._store = store
        self.scope = scope
        self.emitted: list[Event] = []
        self.committed = False
        self._open = False
        self._working: RegistryState | None = None

    async def __aenter__(self) -> Self:
        if self._open:
            raise RuntimeError("a unit of work is entered once")
        self._open = True
        self._working = self._store.state.copy()
        self.tenants = FakeTenantRepository(self._working, self.scope)
        self.sites = FakeSiteRepository(self._working, self.scope)
        self.devices = FakeDeviceRepository(self._working, self.scope)
        return self

    def emit(self, payload: Message, *, subject: str, tenant: str | None = None) -> Event:
        if not self._open or self.committed:
            raise RuntimeError("emit outside an open, uncommitted unit of work")
        event = new_event(payload, source=SOURCE, tenant=tenant if tenant is not None else self.scope.tenant,
                          subject=subject)
        self.emitted.append(event)
        return event

    async def commit(self) -> None:
        if not self._open or self.committed or self._working is None:
            raise RuntimeError("commit outside an open, uncommitted unit of work")
        self._store.state = self._working
        self._store.events.extend(self.emitted)
        self._store.commits += 1
        self.committed = True

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._open = False
        self._working = None  # uncommitted changes are dropped, like a rollback


class FakeRegistryStore:
    """The committed state shared by every unit of work it makes; call it with a scope for one."""

    def __init__(self) -> None:
        self.state = RegistryState()
        self.events: list[Event] = []
        self.commits = 0
        self.units: list[FakeRegistryUnitOfWork] = []

    def __call__(self, scope: Scope) -> FakeRegistryUnitOfWork:
        uow = FakeRegistryUnitOfWork(self, scope)
        self.units.append(uow)
        return uow

    def events_of_type(self, name: str) -> list[Event]:
        return [e for e in self.events if e.type == name]

    def seed_tenant(self, tenant_id: str, *, display_name: str = "Seeded tenant") -> Tenant:
        tenant = Tenant(id=tenant_id, display_name=display_name, create_time=EPOCH, update_time=EPOCH)
        self.state.tenants[tenant_id] = tenant
        return tenant


class FakeClock:
    """Time that moves exactly 1 ms on every reading, so create_time values are distinct and ordered."""

    def __init__(self, start: datetime | None = None, step: timedelta = timedelta(milliseconds=1)) -> None:
        # Near the real time, so the tokens it stamps are not already expired when verified.
        self.now = start or datetime.now(UTC).replace(microsecond=0)
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


def make_handlers(store: FakeRegistryStore, clock: Callable[[], datetime] | None = None,
                  *, tokens: TokenCodec | None = None) -> RegistryHandlers:
    """Handlers over the fake store (the fake is structurally a RegistryUnitOfWork factory)."""
    return RegistryHandlers(cast(UnitOfWorkFactory, store), PageTokens(PAGE_SECRET),
                            tokens or TokenCodec(TOKEN_SECRET), clock=clock or FakeClock())


def repository_interfaces() -> Mapping[str, tuple[type, type]]:
    """Fake -> real repository pairs, for a test that keeps their public methods in step."""
    return {"tenants": (FakeTenantRepository, repository.TenantRepository),
            "sites": (FakeSiteRepository, repository.SiteRepository),
            "devices": (FakeDeviceRepository, repository.DeviceRepository)}
