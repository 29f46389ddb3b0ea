"""Use cases of device templates and sensors: one unit of work each, domain rules, events.

Who sees what: a tenant principal works in its tenant's scope, where row-level security shows its
own templates and the system ones and lets it write only its own. A platform admin works in
platform scope on system templates only (tenant templates are not its business here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.field_mask_pb2 import FieldMask

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.auth import Principal
from muster.runtime.db import Scope
from muster.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from muster.runtime.listing import Listing
from muster.runtime.pagination import OrderTerm, PageTokens
from services.registry import commands as cmd
from services.registry import listings
from services.registry.domain import Device, check_etag
from services.registry.template_mapping import sensor_to_proto, template_to_proto
from services.registry.templates import (
    SYSTEM_TENANT,
    TEMPLATE_ID_PATTERN,
    DeviceTemplate,
    Sensor,
    missing_required_sensors,
    new_template_id,
    require_writable,
    validate_sensor,
    validate_template,
)
from services.registry.unit_of_work import RegistryUnitOfWork, UnitOfWorkFactory

T = TypeVar("T")
Clock = Callable[[], datetime]

_SENSOR_FIELDS = frozenset({"unit", "label", "enabled"})


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _found(value: T | None, name: str) -> T:
    if value is None:
        raise NotFound(f"{name} not found")
    return value


def _mask(update: cmd.Update) -> FieldMask:
    return FieldMask(paths=sorted(update.mask))


def _keyset(item: Any, order: Sequence[OrderTerm], unique: str) -> list[Any]:
    return [getattr(item, term.field) for term in order] + [unique]


def _scope(principal: Principal) -> Scope:
    if principal.is_platform_admin:
        return Scope.platform_wide()
    return Scope.of_tenant(principal.require_tenant())


async def _visible_template(uow: RegistryUnitOfWork, principal: Principal, template_id: str) -> DeviceTemplate:
    template = await uow.templates.get(template_id)
    if template is None or (principal.is_platform_admin and not template.is_system):
        raise NotFound(f"templates/{template_id} not found")
    return template


async def add_template_sensors(uow: RegistryUnitOfWork, device: Device, now: datetime, *,
                               field: str = "device.template") -> list[Sensor]:
    """Give `device` a sensor for every required metric of its template it lacks (never removes any).
    The template must be visible in the unit of work's scope (the tenant's own or a system one)."""
    if device.template_id is None:
        return []
    template = await uow.templates.get(device.template_id)
    if template is None:
        raise InvalidArgument.field(field, f"template templates/{device.template_id} does not exist")
    existing = await uow.sensors.keys(device.id)
    added = missing_required_sensors(template, existing, tenant_id=device.tenant_id, device_id=device.id, now=now)
    for sensor in added:
        await uow.sensors.add(sensor)
        uow.emit(ev.SensorAdded(sensor=sensor_to_proto(sensor)), subject=sensor.name)
    return added


class TemplateHandlers:
    def __init__(self, uow: UnitOfWorkFactory, page_tokens: PageTokens, clock: Clock = _utcnow) -> None:
        self._uow = uow
        self._pages = page_tokens
        self._now = clock

    # --- templates ---------------------------------------------------------------------------

    async def create_template(self, principal: Principal, command: cmd.CreateTemplate) -> DeviceTemplate:
        if principal.is_platform_admin:
            owner = SYSTEM_TENANT
            if command.template_id and not TEMPLATE_ID_PATTERN.match(command.template_id):
                raise InvalidArgument.field("template_id", "must be 3-40 of [a-z0-9-], starting with a letter")
        else:
            owner = principal.require_tenant()
            if command.template_id:
                raise InvalidArgument.field("template_id", "only platform admins choose template ids (for system "
                                                           "templates); leave it empty for a generated one")
        now = self._now()
        template = DeviceTemplate(
            tenant_id=owner, id=command.template_id or new_template_id(), display_name=command.display_name,
            slug=command.slug, category=command.category, manufacturer=command.manufacturer, model=command.model,
            metrics=command.metrics, commands=command.commands, slots=command.slots, create_time=now,
            update_time=now)
        validate_template(template)
        async with self._uow(_scope(principal)) as uow:
            await uow.templates.add(template)
            uow.emit(ev.TemplateCreated(template=template_to_proto(template)), subject=template.name)
            await uow.commit()
        return template

    async def get_template(self, principal: Principal, template_id: str) -> DeviceTemplate:
        async with self._uow(_scope(principal)) as uow:
            return await _visible_template(uow, principal, template_id)

    async def list_templates(self, principal: Principal,
                             params: cmd.ListParams) -> tuple[list[DeviceTemplate], str]:
        scope = "platform" if principal.is_platform_admin else principal.require_tenant()
        page = listings.TEMPLATES.page(self._pages, filter_text=params.filter, order_by=params.order_by,
                                       size=params.page_size, token=params.page_token, scope=f"templates:{scope}")
        async with self._uow(_scope(principal)) as uow:
            rows = await uow.templates.list(page, system_only=principal.is_platform_admin)
        return Listing.finish(self._pages, page, rows, lambda t: _keyset(t, page.order, t.id))

    async def update_template(self, principal: Principal, update: cmd.Update) -> DeviceTemplate:
        async with self._uow(_scope(principal)) as uow:
            current = await _visible_template(uow, principal, update.id)
            require_writable(current, platform_admin=principal.is_platform_admin)
            check_etag(update.etag, current.version, current.name)
            changes: dict[str, Any] = {path: update.values[path] for path in update.mask}
            template = replace(current, **changes, update_time=self._now(), version=current.version + 1)
            validate_template(template)
            await uow.templates.save(template, current.version)
            uow.emit(ev.TemplateUpdated(template=template_to_proto(template), update_mask=_mask(update)),
                     subject=template.name)
            await uow.commit()
        return template

    async def delete_template(self, principal: Principal, delete: cmd.Delete) -> None:
        async with self._uow(_scope(principal)) as uow:
            current = await _visible_template(uow, principal, delete.id)
            require_writable(current, platform_admin=principal.is_platform_admin)
            check_etag(delete.etag, current.version, current.name)
            users = await uow.devices.count_with_template(delete.id)
            modules = await uow.modules.count_with_template(delete.id)
            if users or modules:
                as_module = f" and {modules} module(s)" if modules else ""
                raise FailedPrecondition(
                    f"{users} device(s){as_module} use {current.name}: give them another template (or remove the "
                    "modules) first", reason="TEMPLATE_IN_USE",
                    metadata={"devices": str(users), "modules": str(modules), "template": current.name})
            await uow.templates.remove(delete.id)
            uow.emit(ev.TemplateDeleted(name=current.name), subject=current.name)
            await uow.commit()

    async def clone_template(self, principal: Principal, command: cmd.CloneTemplate) -> DeviceTemplate:
        tenant = principal.require_tenant()  # a copy belongs to a tenant
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            source = _found(await uow.templates.get(command.template_id), f"templates/{command.template_id}")
            copy = source.clone(tenant_id=tenant, new_id=new_template_id(), now=self._now(),
                                display_name=command.display_name, slug=command.slug)
            validate_template(copy)
            await uow.templates.add(copy)
            uow.emit(ev.TemplateCreated(template=template_to_proto(copy)), subject=copy.name)
            await uow.commit()
        return copy

    # --- sensors -----------------------------------------------------------------------------

    async def list_sensors(self, principal: Principal, device_id: str,
                           params: cmd.ListParams) -> tuple[list[Sensor], str]:
        tenant = principal.require_tenant()
        page = listings.SENSORS.page(self._pages, filter_text=params.filter, order_by=params.order_by,
                                     size=params.page_size, token=params.page_token,
                                     scope=f"sensors:{tenant}:{device_id}")
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            _found(await uow.devices.get(device_id), f"devices/{device_id}")
            rows = await uow.sensors.list(device_id, page)
        return Listing.finish(self._pages, page, rows, lambda s: _keyset(s, page.order, s.key))

    async def create_sensor(self, principal: Principal, command: cmd.CreateSensor) -> Sensor:
        tenant = principal.require_tenant()
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            device = _found(await uow.devices.get(command.device_id), f"devices/{command.device_id}")
            template = await uow.templates.get(device.template_id) if device.template_id else None
            metric = template.metric(command.key) if template is not None else None
            now = self._now()
            sensor = Sensor(
                tenant_id=tenant, device_id=device.id, key=command.key,
                type=command.type or (metric.type if metric else None),
                unit=command.unit if command.unit is not None else (metric.unit if metric else ""),
                label=command.label, enabled=True if command.enabled is None else command.enabled,
                create_time=now, update_time=now)
            validate_sensor(sensor)
            await uow.sensors.add(sensor)
            uow.emit(ev.SensorAdded(sensor=sensor_to_proto(sensor)), subject=sensor.name)
            await uow.commit()
        return sensor

    async def update_sensor(self, principal: Principal, device_id: str, update: cmd.Update) -> Sensor:
        unknown = update.mask - _SENSOR_FIELDS
        if unknown:
            raise InvalidArgument.field("update_mask", f"cannot change {', '.join(sorted(unknown))}")
        async with self._uow(Scope.of_tenant(principal.require_tenant())) as uow:
            current = _found(await uow.sensors.get(device_id, update.id), f"devices/{device_id}/sensors/{update.id}")
            check_etag(update.etag, current.version, current.name)
            changes: dict[str, Any] = {path: update.values[path] for path in update.mask}
            sensor = replace(current, **changes, update_time=self._now(), version=current.version + 1)
            validate_sensor(sensor)
            await uow.sensors.save(sensor, current.version)
            uow.emit(ev.SensorUpdated(sensor=sensor_to_proto(sensor), update_mask=_mask(update)), subject=sensor.name)
            await uow.commit()
        return sensor

    async def delete_sensor(self, principal: Principal, device_id: str, delete: cmd.Delete) -> None:
        async with self._uow(Scope.of_tenant(principal.require_tenant())) as uow:
            current = _found(await uow.sensors.get(device_id, delete.id), f"devices/{device_id}/sensors/{delete.id}")
            check_etag(delete.etag, current.version, current.name)
            await uow.sensors.remove(device_id, delete.id)
            uow.emit(ev.SensorRemoved(name=current.name), subject=current.name)
            await uow.commit()
