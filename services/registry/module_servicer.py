"""The gRPC edge of expansion modules: proto in, command to a handler, proto out. No rules live here."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.empty_pb2 import Empty

from muster.registry.v1 import module_service_pb2 as mod
from muster.registry.v1 import module_service_pb2_grpc as mod_grpc
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.runtime.context import current_principal
from muster.runtime.errors import InvalidArgument
from muster.runtime.fieldmask import validate_update_mask
from muster.runtime.names import parse_name
from services.registry import commands as cmd
from services.registry.domain import DEVICE_ID_PATTERN, ID_PATTERN
from services.registry.module_handlers import ModuleHandlers
from services.registry.template_mapping import module_to_proto
from services.registry.template_servicer import template_id

Context = grpc.aio.ServicerContext[Any, Any]

MODULE_FIELDS = ("serial", "label", "metric_key_map")
MODULE_OUTPUT_ONLY = ("name", "slot", "template", "create_time", "update_time", "etag")


def _module_name(name: str, field: str = "name") -> tuple[str, str]:
    """(device id, module id) of "devices/{device}/modules/{module}"."""
    device, sep, rest = name.partition("/modules/")
    if not sep:
        raise InvalidArgument.field(field, f"{name!r} is not of the form devices/{{device}}/modules/{{module}}"
                                    if name else "is required, in the form devices/{device}/modules/{module}")
    if not ID_PATTERN.match(rest):
        raise InvalidArgument.field(field, f"{rest!r} is not a valid module id")
    return parse_name(device, "devices", DEVICE_ID_PATTERN, field=field), rest


def _module_value(message: tpb.Module, path: str) -> Any:
    if path == "metric_key_map":
        return dict(message.metric_key_map)
    return getattr(message, path)


class ModuleServicer(mod_grpc.ModuleServiceServicer):
    def __init__(self, handlers: ModuleHandlers) -> None:
        self._h = handlers

    async def ListModules(self, request: mod.ListModulesRequest, context: Context) -> mod.ListModulesResponse:
        device_id = parse_name(request.parent, "devices", DEVICE_ID_PATTERN, field="parent")
        params = cmd.ListParams(page_size=request.page_size, page_token=request.page_token, filter=request.filter,
                                order_by=request.order_by)
        modules, token = await self._h.list_modules(current_principal(), device_id, params)
        return mod.ListModulesResponse(modules=[module_to_proto(m) for m in modules], next_page_token=token)

    async def CreateModule(self, request: mod.CreateModuleRequest, context: Context) -> tpb.Module:
        device_id = parse_name(request.parent, "devices", DEVICE_ID_PATTERN, field="parent")
        m = request.module
        if not m.slot:
            raise InvalidArgument.field("module.slot", "is required: a slot of the device's template")
        created = await self._h.create_module(current_principal(), cmd.CreateModule(
            device_id=device_id, module_id=request.module_id, slot=m.slot,
            template_id=template_id(m.template, "module.template"), serial=m.serial, label=m.label,
            metric_key_map=dict(m.metric_key_map)))
        return module_to_proto(created)

    async def UpdateModule(self, request: mod.UpdateModuleRequest, context: Context) -> tpb.Module:
        device_id, module_id = _module_name(request.module.name, "module.name")
        mask = validate_update_mask(list(request.update_mask.paths), MODULE_FIELDS, output_only=MODULE_OUTPUT_ONLY)
        update = cmd.Update(id=module_id, mask=mask, etag=request.module.etag,
                            values={path: _module_value(request.module, path) for path in mask})
        return module_to_proto(await self._h.update_module(current_principal(), device_id, update))

    async def DeleteModule(self, request: mod.DeleteModuleRequest, context: Context) -> Empty:
        device_id, module_id = _module_name(request.name)
        await self._h.delete_module(current_principal(), device_id, cmd.Delete(module_id, request.etag))
        return Empty()
