"""An in-memory registry unit of work for handler tests.

`FakeRegistryStore` is the "database": committed tenants, sites, devices, templates, sensors and the
events that went out with them. Each `FakeRegistryUnitOfWork` works on a private copy of that state and writes it
back only on `commit`, so a handler that raises half-way leaves the store exactly as it found it
(like a rolled-back transaction). The fake repositories keep the real repositories' interface and
the semantics the handlers rely on:

- tenant isolation by scope, as row-level security does it: a tenant-scoped unit of work sees only
  that tenant's rows, and writing a row of another tenant fails like RLS's WITH CHECK; system
  templates (tenant '') are readable from any tenant scope and writable only from platform scope;
- optimistic concurrency: `save(item, expected_version)` raises Aborted when the stored version moved;
- uniqueness (tenant id, site id per tenant, device serial per tenant) and the device -> site
  reference, raising the same error types the SQL repositories map their integrity errors to;
- listing: filters evaluated with `muster.runtime.filtering.matches` and keyset order with
  `muster.runtime.pagination.compare_keysets`, the in-memory twins of the SQL the real ones run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, cast

from google.protobuf.message import Message

from muster.events.v1.event_pb2 import Event
from muster.runtime.auth import TokenCodec
from muster.runtime.db import Scope
from muster.runtime.errors import AlreadyExists, InvalidArgument
from muster.runtime.events import new_event
from muster.runtime.listing import Page
from muster.runtime.pagination import PageTokens
from services.registry import (
    bulk_repository,
    group_repository,
    provisioning_repository,
    repository,
    template_repository,
)
from services.registry.domain import Device, Site, Tenant
from services.registry.group_handlers import GroupHandlers
from services.registry.handlers import RegistryHandlers
from services.registry.module_handlers import ModuleHandlers
from services.registry.provisioning import SecretHasher
from services.registry.provisioning_handlers import MqttEndpoint, ProvisioningHandlers
from services.registry.template_handlers import TemplateHandlers
from services.registry.templates import SYSTEM_TENANT, DeviceTemplate
from services.registry.transports import iccids_of
from services.registry.unit_of_work import SOURCE, UnitOfWorkFactory

from .registry_bulk import FakeBulkDeviceRepository
from .registry_groups import FakeGroupRepository
from .registry_provisioning import (
    FakeDeviceSecretRepository,
    FakeProvisioningTokenRepository,
    FakeRegistrationRepository,
)
from .registry_state import RegistryState, Repository, RowLevelSecurityViolation, paged, stale
from .registry_templates import FakeModuleRepository, FakeSensorRepository, FakeTemplateRepository

__all__ = [
    "DEVICE_SECRET_KEY",
    "EPOCH",
    "MQTT_ENDPOINT",
    "PAGE_SECRET",
    "TOKEN_SECRET",
    "FakeClock",
    "FakeModuleRepository",
    "FakeRegistryStore",
    "FakeRegistryUnitOfWork",
    "FakeSensorRepository",
    "FakeTemplateRepository",
    "RegistryState",
    "RowLevelSecurityViolation",
    "make_group_handlers",
    "make_handlers",
    "make_module_handlers",
    "make_provisioning_handlers",
    "make_template_handlers",
    "repository_interfaces",
]

TOKEN_SECRET = b"unit-test-token-secret-0123456789abcdef"
PAGE_SECRET = b"unit-test-page-token-secret-0123"
DEVICE_SECRET_KEY = b"unit-test-device-secret-key-0123456789"
MQTT_ENDPOINT = MqttEndpoint("mqtt.test.example", 8883)
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeTenantRepository(Repository):
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
            raise stale(tenant.name, expected_version)
        self._state.tenants[tenant.id] = tenant

    async def remove(self, tenant_id: str) -> None:
        if await self.get(tenant_id) is not None:
            del self._state.tenants[tenant_id]

    async def list(self, query: Page) -> list[Tenant]:
        return paged([t for t in self._state.tenants.values() if self._visible(t.id)], query)

    async def owns_anything(self, tenant_id: str) -> bool:
        return any(s.tenant_id == tenant_id and self._visible(s.tenant_id) for s in self._state.sites.values()) \
            or any(d.tenant_id == tenant_id and self._visible(d.tenant_id) for d in self._state.devices.values())


class FakeSiteRepository(Repository):
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
            raise stale(site.name, expected_version)
        self._state.sites[(site.tenant_id, site.id)] = site

    async def remove(self, site_id: str) -> None:
        for site in self._mine():
            if site.id == site_id:
                del self._state.sites[(site.tenant_id, site.id)]

    async def list(self, query: Page) -> list[Site]:
        return paged(self._mine(), query)


class FakeDeviceRepository(Repository):
    def _mine(self) -> list[Device]:
        return [d for d in self._state.devices.values() if self._visible(d.tenant_id)]

    def _check_references(self, device: Device) -> None:
        self._check(device.tenant_id)
        if device.site_id is not None and (device.tenant_id, device.site_id) not in self._state.sites:
            raise InvalidArgument.field("device.site", f"site {device.site_id!r} does not exist")
        if device.template_id is not None and device.template_id not in self._state.templates:
            raise InvalidArgument.field("device.template", f"template {device.template_id!r} does not exist")
        if device.serial and any(d.serial == device.serial and d.tenant_id == device.tenant_id and d.id != device.id
                                 for d in self._state.devices.values()):
            raise AlreadyExists(f"a device with serial {device.serial!r} already exists in this tenant",
                                reason="SERIAL_EXISTS", metadata={"serial": device.serial})
        for iccid in iccids_of(device.transports):  # device_iccids' primary key (tenant, iccid)
            if any(iccid in iccids_of(d.transports) for d in self._state.devices.values()
                   if d.tenant_id == device.tenant_id and d.id != device.id):
                raise AlreadyExists(f"SIM {iccid} is already in another device", reason="ICCID_IN_USE",
                                    metadata={"iccid": iccid})

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
            raise stale(device.name, expected_version)
        self._state.devices[device.id] = device

    async def remove(self, device_id: str) -> None:
        if await self.get(device_id) is not None:
            del self._state.devices[device_id]
            for key in [k for k in self._state.sensors if k[0] == device_id]:  # ON DELETE CASCADE
                del self._state.sensors[key]
            for key in [k for k in self._state.modules if k[0] == device_id]:
                del self._state.modules[key]
            for member in [k for k in self._state.group_members if k[2] == device_id]:
                del self._state.group_members[member]
            for key in [k for k in self._state.device_secrets if k[0] == device_id]:
                del self._state.device_secrets[key]
            self._state.registrations.pop(device_id, None)

    async def list(self, query: Page) -> list[Device]:
        return paged(self._mine(), query)

    async def count_at_site(self, site_id: str) -> int:
        return sum(1 for d in self._mine() if d.site_id == site_id)

    async def count_with_template(self, template_id: str) -> int:
        return sum(1 for d in self._mine() if d.template_id == template_id)


class FakeRegistryUnitOfWork:
    """Same surface as RegistryUnitOfWork: `async with`, repositories, `emit`, `commit`."""

    tenants: FakeTenantRepository
    sites: FakeSiteRepository
    devices: FakeDeviceRepository
    templates: FakeTemplateRepository
    sensors: FakeSensorRepository
    modules: FakeModuleRepository
    provisioning_tokens: FakeProvisioningTokenRepository
    device_secrets: FakeDeviceSecretRepository
    registrations: FakeRegistrationRepository
    bulk: FakeBulkDeviceRepository
    groups: FakeGroupRepository

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
        self.templates = FakeTemplateRepository(self._working, self.scope)
        self.sensors = FakeSensorRepository(self._working, self.scope)
        self.modules = FakeModuleRepository(self._working, self.scope)
        self.provisioning_tokens = FakeProvisioningTokenRepository(self._working, self.scope)
        self.device_secrets = FakeDeviceSecretRepository(self._working, self.scope)
        self.registrations = FakeRegistrationRepository(self._working, self.scope)
        self.bulk = FakeBulkDeviceRepository(self._working, self.scope)
        self.groups = FakeGroupRepository(self._working, self.scope)
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

    def seed_template(self, template_id: str, *, tenant_id: str = SYSTEM_TENANT, **fields: Any) -> DeviceTemplate:
        """A template straight into the store (a system one unless `tenant_id` is given)."""
        values: dict[str, Any] = {"display_name": f"Template {template_id}", **fields}
        template = DeviceTemplate(tenant_id=tenant_id, id=template_id, create_time=EPOCH, update_time=EPOCH, **values)
        self.state.templates[template_id] = template
        return template


class FakeDeviceReads:
    """The single-round-trip device reads over the store's committed state, scoped like RLS scopes them."""

    def __init__(self, store: FakeRegistryStore) -> None:
        self._store = store

    async def get(self, scope: Scope, device_id: str) -> Device | None:
        return await FakeDeviceRepository(self._store.state, scope).get(device_id)


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
                            tokens or TokenCodec(TOKEN_SECRET), clock=clock or FakeClock(),
                            reads=FakeDeviceReads(store))


def make_module_handlers(store: FakeRegistryStore, clock: Callable[[], datetime] | None = None) -> ModuleHandlers:
    return ModuleHandlers(cast(UnitOfWorkFactory, store), PageTokens(PAGE_SECRET), clock=clock or FakeClock())


def make_provisioning_handlers(store: FakeRegistryStore, clock: Callable[[], datetime] | None = None
                               ) -> ProvisioningHandlers:
    """Provisioning handlers over the fake store, hashing with DEVICE_SECRET_KEY, telling devices MQTT_ENDPOINT."""
    return ProvisioningHandlers(cast(UnitOfWorkFactory, store), PageTokens(PAGE_SECRET),
                                SecretHasher(DEVICE_SECRET_KEY), MQTT_ENDPOINT, clock=clock or FakeClock())


def make_group_handlers(store: FakeRegistryStore, clock: Callable[[], datetime] | None = None) -> GroupHandlers:
    return GroupHandlers(cast(UnitOfWorkFactory, store), PageTokens(PAGE_SECRET), clock=clock or FakeClock())


def make_template_handlers(store: FakeRegistryStore,
                           clock: Callable[[], datetime] | None = None) -> TemplateHandlers:
    return TemplateHandlers(cast(UnitOfWorkFactory, store), PageTokens(PAGE_SECRET), clock=clock or FakeClock())


def repository_interfaces() -> Mapping[str, tuple[type, type]]:
    """Fake -> real repository pairs, for a test that keeps their public methods in step."""
    return {"tenants": (FakeTenantRepository, repository.TenantRepository),
            "sites": (FakeSiteRepository, repository.SiteRepository),
            "devices": (FakeDeviceRepository, repository.DeviceRepository),
            "templates": (FakeTemplateRepository, template_repository.TemplateRepository),
            "sensors": (FakeSensorRepository, template_repository.SensorRepository),
            "modules": (FakeModuleRepository, template_repository.ModuleRepository),
            "provisioning_tokens": (FakeProvisioningTokenRepository,
                                    provisioning_repository.ProvisioningTokenRepository),
            "device_secrets": (FakeDeviceSecretRepository, provisioning_repository.DeviceSecretRepository),
            "registrations": (FakeRegistrationRepository, provisioning_repository.RegistrationRepository),
            "bulk": (FakeBulkDeviceRepository, bulk_repository.BulkDeviceRepository),
            "groups": (FakeGroupRepository, group_repository.GroupRepository)}
