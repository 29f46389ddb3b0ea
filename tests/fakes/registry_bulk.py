"""In-memory twin of `services.registry.bulk_repository.BulkDeviceRepository`, over the same state as
the other fake repositories (row-level security, serial uniqueness and references as they check them)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import cast

from muster.runtime.errors import AlreadyExists
from muster.runtime.pagination import PageTokens
from services.registry.bulk_handlers import BulkHandlers
from services.registry.bulk_repository import BatchConflict
from services.registry.domain import Device
from services.registry.templates import Sensor
from services.registry.unit_of_work import UnitOfWorkFactory

from .registry_state import Repository


class FakeBulkDeviceRepository(Repository):
    def _mine(self) -> list[Device]:
        return [d for d in self._state.devices.values() if self._visible(d.tenant_id)]

    async def by_serials(self, serials: Collection[str]) -> dict[str, Device]:
        return {d.serial: d for d in self._mine() if d.serial and d.serial in serials}

    async def by_ids(self, ids: Collection[str]) -> dict[str, Device]:
        return {d.id: d for d in self._mine() if d.id in ids}

    async def lock_versions(self, ids: Collection[str]) -> dict[str, int]:
        return {d.id: d.version for d in self._mine() if d.id in ids}

    async def sensor_keys(self, device_ids: Collection[str]) -> dict[str, set[str]]:
        keys: dict[str, set[str]] = {device_id: set() for device_id in device_ids}
        for (device_id, key), sensor in self._state.sensors.items():
            if device_id in keys and self._visible(sensor.tenant_id):
                keys[device_id].add(key)
        return keys

    async def insert_devices(self, devices: Sequence[Device]) -> None:
        from .registry import FakeDeviceRepository  # the single-row fake keeps the reference rules

        single = FakeDeviceRepository(self._state, self._scope)
        try:
            for device in devices:
                await single.add(device)
        except AlreadyExists as exc:
            raise BatchConflict("a device with one of this batch's serials was created concurrently") from exc

    async def update_devices(self, devices: Sequence[Device]) -> None:
        for device in devices:
            self._check(device.tenant_id)
            self._state.devices[device.id] = device

    async def insert_sensors(self, sensors: Sequence[Sensor]) -> None:
        from .registry_templates import FakeSensorRepository

        single = FakeSensorRepository(self._state, self._scope)
        for sensor in sensors:
            await single.add(sensor)


def make_bulk_handlers(store: object, clock: Callable[[], datetime], *, batch_size: int = 500) -> BulkHandlers:
    from .registry import PAGE_SECRET

    return BulkHandlers(cast(UnitOfWorkFactory, store), PageTokens(PAGE_SECRET), clock=clock, batch_size=batch_size)
