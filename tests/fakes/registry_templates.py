"""Fake template and sensor repositories (same interface as services/registry/template_repository.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from muster.runtime.errors import AlreadyExists
from muster.runtime.listing import Page
from services.registry.modules import Module
from services.registry.templates import DeviceTemplate, LastSeen, Sensor

from .registry_state import Repository, RowLevelSecurityViolation, paged, stale


class FakeTemplateRepository(Repository):
    """Row-level security of registry.templates: everyone with a scope reads system rows (tenant '');
    only platform scope writes them. A tenant's UPDATE/DELETE of one matches no row, an INSERT fails."""

    def _readable(self, template: DeviceTemplate) -> bool:
        return self._visible(template.tenant_id) or (template.is_system and bool(self._scope.tenant))

    def _writable(self, template: DeviceTemplate) -> bool:
        return self._scope.platform or (not template.is_system and template.tenant_id == self._scope.tenant)

    async def get(self, template_id: str) -> DeviceTemplate | None:
        template = self._state.templates.get(template_id)
        return template if template is not None and self._readable(template) else None

    async def add(self, template: DeviceTemplate) -> None:
        if not self._writable(template):
            raise RowLevelSecurityViolation(f"new row violates row-level security policy ({template.name})")
        if template.id in self._state.templates:
            raise AlreadyExists(f"template {template.id!r} already exists", reason="TEMPLATE_EXISTS")
        self._state.templates[template.id] = template

    async def save(self, template: DeviceTemplate, expected_version: int) -> None:
        current = self._state.templates.get(template.id)
        if current is None or not self._writable(current) or current.version != expected_version:
            raise stale(template.name, expected_version)
        if not self._writable(template):
            raise RowLevelSecurityViolation(f"new row violates row-level security policy ({template.name})")
        self._state.templates[template.id] = template

    async def remove(self, template_id: str) -> None:
        current = self._state.templates.get(template_id)
        if current is not None and self._writable(current):
            if any(d.template_id == template_id for d in self._state.devices.values()) or any(
                    m.template_id == template_id for m in self._state.modules.values()):
                raise RowLevelSecurityViolation(f"foreign key: devices still reference {current.name}")
            del self._state.templates[template_id]

    async def list(self, query: Page, *, system_only: bool = False) -> list[DeviceTemplate]:
        return paged([t for t in self._state.templates.values()
                       if self._readable(t) and (t.is_system or not system_only)], query)


class FakeSensorRepository(Repository):
    def _mine(self, device_id: str) -> list[Sensor]:
        return [s for (d, _), s in self._state.sensors.items() if d == device_id and self._visible(s.tenant_id)]

    async def get(self, device_id: str, key: str) -> Sensor | None:
        sensor = self._state.sensors.get((device_id, key))
        return sensor if sensor is not None and self._visible(sensor.tenant_id) else None

    async def keys(self, device_id: str) -> set[str]:
        return {s.key for s in self._mine(device_id)}

    async def add(self, sensor: Sensor) -> None:
        self._check(sensor.tenant_id)
        device = self._state.devices.get(sensor.device_id)
        if device is None or device.tenant_id != sensor.tenant_id:
            raise RowLevelSecurityViolation(f"foreign key: device {sensor.device_id!r} does not exist")
        if (sensor.device_id, sensor.key) in self._state.sensors:
            raise AlreadyExists(f"{sensor.name} already exists", reason="SENSOR_EXISTS")
        self._state.sensors[(sensor.device_id, sensor.key)] = sensor

    async def save(self, sensor: Sensor, expected_version: int) -> None:
        self._check(sensor.tenant_id)
        current = await self.get(sensor.device_id, sensor.key)
        if current is None or current.version != expected_version:
            raise stale(sensor.name, expected_version)
        self._state.sensors[(sensor.device_id, sensor.key)] = sensor

    async def remove(self, device_id: str, key: str) -> None:
        if await self.get(device_id, key) is not None:
            del self._state.sensors[(device_id, key)]

    async def list(self, device_id: str, query: Page) -> list[Sensor]:
        return paged(self._mine(device_id), query)

    async def record_last_seen(self, tenant: str, entries: Sequence[LastSeen]) -> int:
        """As the SQL: only the tenant's existing sensors, only forward in time, version unchanged."""
        moved = 0
        for entry in entries:
            sensor = self._state.sensors.get((entry.device_id, entry.key))
            if sensor is None or sensor.tenant_id != tenant or not self._visible(sensor.tenant_id):
                continue
            if sensor.last_seen is None or sensor.last_seen < entry.seen:
                self._state.sensors[(entry.device_id, entry.key)] = replace(
                    sensor, last_value=json.loads(entry.value_json), last_seen=entry.seen)
                moved += 1
        return moved


class FakeModuleRepository(Repository):
    def _mine(self, device_id: str) -> list[Module]:
        return [m for (d, _), m in self._state.modules.items() if d == device_id and self._visible(m.tenant_id)]

    async def get(self, device_id: str, module_id: str) -> Module | None:
        module = self._state.modules.get((device_id, module_id))
        return module if module is not None and self._visible(module.tenant_id) else None

    async def add(self, module: Module) -> None:
        self._check(module.tenant_id)
        device = self._state.devices.get(module.device_id)
        if device is None or device.tenant_id != module.tenant_id or module.template_id not in self._state.templates:
            raise RowLevelSecurityViolation(f"foreign key: {module.name} references a missing device or template")
        if (module.device_id, module.id) in self._state.modules:
            raise AlreadyExists(f"{module.name} already exists", reason="MODULE_EXISTS")
        self._state.modules[(module.device_id, module.id)] = module

    async def save(self, module: Module, expected_version: int) -> None:
        self._check(module.tenant_id)
        current = await self.get(module.device_id, module.id)
        if current is None or current.version != expected_version:
            raise stale(module.name, expected_version)
        self._state.modules[(module.device_id, module.id)] = module

    async def remove(self, device_id: str, module_id: str) -> None:
        if await self.get(device_id, module_id) is not None:
            del self._state.modules[(device_id, module_id)]

    async def list(self, device_id: str, query: Page) -> list[Module]:
        return paged(self._mine(device_id), query)

    async def count_in_slot(self, device_id: str, slot: str) -> int:
        return sum(1 for m in self._mine(device_id) if m.slot == slot)

    async def count_with_template(self, template_id: str) -> int:
        return sum(1 for m in self._state.modules.values() if m.template_id == template_id and
                   self._visible(m.tenant_id))
