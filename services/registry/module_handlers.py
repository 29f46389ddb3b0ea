"""Use cases of expansion modules: assign a module to a slot of a device's template, change its
metric key map, remove it. Each in one unit of work, with its event."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.auth import Principal
from muster.runtime.db import Scope
from muster.runtime.errors import InvalidArgument
from muster.runtime.listing import Listing
from muster.runtime.pagination import PageTokens
from services.registry import commands as cmd
from services.registry import listings
from services.registry.domain import check_etag
from services.registry.modules import Module, check_slot, new_module_id, validate_module
from services.registry.template_handlers import Clock, _found, _keyset, _mask, _utcnow
from services.registry.template_mapping import module_to_proto
from services.registry.unit_of_work import UnitOfWorkFactory

_MODULE_FIELDS = frozenset({"serial", "label", "metric_key_map"})


class ModuleHandlers:
    def __init__(self, uow: UnitOfWorkFactory, page_tokens: PageTokens, clock: Clock = _utcnow) -> None:
        self._uow = uow
        self._pages = page_tokens
        self._now = clock

    async def list_modules(self, principal: Principal, device_id: str,
                           params: cmd.ListParams) -> tuple[list[Module], str]:
        tenant = principal.require_tenant()
        page = listings.MODULES.page(self._pages, filter_text=params.filter, order_by=params.order_by,
                                     size=params.page_size, token=params.page_token,
                                     scope=f"modules:{tenant}:{device_id}")
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            _found(await uow.devices.get(device_id), f"devices/{device_id}")
            rows = await uow.modules.list(device_id, page)
        return Listing.finish(self._pages, page, rows, lambda m: _keyset(m, page.order, m.id))

    async def create_module(self, principal: Principal, command: cmd.CreateModule) -> Module:
        tenant = principal.require_tenant()
        now = self._now()
        module = Module(tenant_id=tenant, device_id=command.device_id, id=command.module_id or new_module_id(),
                        slot=command.slot, template_id=command.template_id, serial=command.serial,
                        label=command.label, metric_key_map=dict(command.metric_key_map), create_time=now,
                        update_time=now)
        validate_module(module)
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            device = _found(await uow.devices.get(command.device_id), f"devices/{command.device_id}")
            if await uow.templates.get(module.template_id) is None:
                raise InvalidArgument.field("module.template", f"template templates/{module.template_id} "
                                                               "does not exist")
            device_template = await uow.templates.get(device.template_id) if device.template_id else None
            check_slot(device_template, module, await uow.modules.count_in_slot(device.id, module.slot))
            await uow.modules.add(module)
            uow.emit(ev.ModuleAssigned(module=module_to_proto(module)), subject=module.name)
            await uow.commit()
        return module

    async def update_module(self, principal: Principal, device_id: str, update: cmd.Update) -> Module:
        unknown = update.mask - _MODULE_FIELDS
        if unknown:
            raise InvalidArgument.field("update_mask", f"cannot change {', '.join(sorted(unknown))}")
        async with self._uow(Scope.of_tenant(principal.require_tenant())) as uow:
            current = _found(await uow.modules.get(device_id, update.id), f"devices/{device_id}/modules/{update.id}")
            check_etag(update.etag, current.version, current.name)
            changes: dict[str, Any] = {path: update.values[path] for path in update.mask}
            module = replace(current, **changes, update_time=self._now(), version=current.version + 1)
            validate_module(module)
            await uow.modules.save(module, current.version)
            uow.emit(ev.ModuleUpdated(module=module_to_proto(module), update_mask=_mask(update)), subject=module.name)
            await uow.commit()
        return module

    async def delete_module(self, principal: Principal, device_id: str, delete: cmd.Delete) -> None:
        async with self._uow(Scope.of_tenant(principal.require_tenant())) as uow:
            current = _found(await uow.modules.get(device_id, delete.id), f"devices/{device_id}/modules/{delete.id}")
            check_etag(delete.etag, current.version, current.name)
            await uow.modules.remove(device_id, delete.id)
            uow.emit(ev.ModuleRemoved(name=current.name), subject=current.name)
            await uow.commit()
