"""The registry's unit of work: one scoped transaction with the registry repositories bound to it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.db import Database, Scope
from muster.runtime.uow import UnitOfWork
from services.registry.bulk_repository import BulkDeviceRepository
from services.registry.group_repository import GroupRepository
from services.registry.provisioning_repository import (
    DeviceSecretRepository,
    ProvisioningTokenRepository,
    RegistrationRepository,
)
from services.registry.repository import DeviceRepository, SiteRepository, TenantRepository
from services.registry.tables import infrastructure
from services.registry.template_repository import ModuleRepository, SensorRepository, TemplateRepository

SOURCE = "registry"


class RegistryUnitOfWork(UnitOfWork):
    tenants: TenantRepository
    sites: SiteRepository
    devices: DeviceRepository
    templates: TemplateRepository
    sensors: SensorRepository
    modules: ModuleRepository
    bulk: BulkDeviceRepository
    provisioning_tokens: ProvisioningTokenRepository
    device_secrets: DeviceSecretRepository
    registrations: RegistrationRepository
    groups: GroupRepository

    def _bind(self, conn: AsyncConnection) -> None:
        self.tenants = TenantRepository(conn)
        self.sites = SiteRepository(conn)
        self.devices = DeviceRepository(conn)
        self.templates = TemplateRepository(conn)
        self.sensors = SensorRepository(conn)
        self.modules = ModuleRepository(conn)
        self.bulk = BulkDeviceRepository(conn)
        self.provisioning_tokens = ProvisioningTokenRepository(conn)
        self.device_secrets = DeviceSecretRepository(conn)
        self.registrations = RegistrationRepository(conn)
        self.groups = GroupRepository(conn)


UnitOfWorkFactory = Callable[[Scope], RegistryUnitOfWork]


def unit_of_work_factory(db: Database, published: asyncio.Event) -> UnitOfWorkFactory:
    def make(scope: Scope) -> RegistryUnitOfWork:
        return RegistryUnitOfWork(db, infrastructure, scope, source=SOURCE, published=published)

    return make
