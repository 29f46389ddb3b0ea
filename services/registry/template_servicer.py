"""The gRPC edge of templates and sensors: proto in, command to a handler, proto out. No rules live here."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.empty_pb2 import Empty

from muster.registry.v1 import sensor_service_pb2 as sen
from muster.registry.v1 import sensor_service_pb2_grpc as sen_grpc
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.registry.v1 import template_service_pb2 as tpl
from muster.registry.v1 import template_service_pb2_grpc as tpl_grpc
from muster.runtime.context import current_principal
from muster.runtime.errors import InvalidArgument
from muster.runtime.fieldmask import validate_update_mask
from muster.runtime.names import parse_name
from services.registry import commands as cmd
from services.registry.domain import DEVICE_ID_PATTERN
from services.registry.template_handlers import TemplateHandlers
from services.registry.template_mapping import (
    commands_from_proto,
    metric_type,
    metrics_from_proto,
    sensor_to_proto,
    slots_from_proto,
    template_to_proto,
    template_value,
)
from services.registry.templates import KEY_PATTERN, TEMPLATE_ID_PATTERN

Context = grpc.aio.ServicerContext[Any, Any]

TEMPLATE_FIELDS = ("display_name", "slug", "category", "manufacturer", "model", "metrics", "commands", "slots")
TEMPLATE_OUTPUT_ONLY = ("name", "source", "create_time", "update_time", "etag")
SENSOR_FIELDS = ("unit", "label", "enabled")
SENSOR_OUTPUT_ONLY = ("name", "type", "last_value", "last_seen", "create_time", "update_time", "etag")


def _list_params(request: Any) -> cmd.ListParams:
    return cmd.ListParams(page_size=request.page_size, page_token=request.page_token, filter=request.filter,
                          order_by=request.order_by)


def template_id(name: str, field: str = "name") -> str:
    return parse_name(name, "templates", TEMPLATE_ID_PATTERN, field=field)


def _sensor_name(name: str, field: str = "name") -> tuple[str, str]:
    """(device id, metric key) of "devices/{device}/sensors/{key}"."""
    device, sep, rest = name.partition("/sensors/")
    if not sep:
        raise InvalidArgument.field(field, f"{name!r} is not of the form devices/{{device}}/sensors/{{sensor}}"
                                    if name else "is required, in the form devices/{device}/sensors/{sensor}")
    if not KEY_PATTERN.match(rest):
        raise InvalidArgument.field(field, f"{rest!r} is not a valid sensor id (a metric key)")
    return parse_name(device, "devices", DEVICE_ID_PATTERN, field=field), rest


class TemplateServicer(tpl_grpc.TemplateServiceServicer):
    def __init__(self, handlers: TemplateHandlers) -> None:
        self._h = handlers

    async def CreateTemplate(self, request: tpl.CreateTemplateRequest, context: Context) -> tpb.DeviceTemplate:
        t = request.template
        created = await self._h.create_template(current_principal(), cmd.CreateTemplate(
            template_id=request.template_id, display_name=t.display_name, slug=t.slug, category=t.category,
            manufacturer=t.manufacturer, model=t.model, metrics=metrics_from_proto(t.metrics),
            commands=commands_from_proto(t.commands), slots=slots_from_proto(t.slots)))
        return template_to_proto(created)

    async def GetTemplate(self, request: tpl.GetTemplateRequest, context: Context) -> tpb.DeviceTemplate:
        return template_to_proto(await self._h.get_template(current_principal(), template_id(request.name)))

    async def ListTemplates(self, request: tpl.ListTemplatesRequest,
                            context: Context) -> tpl.ListTemplatesResponse:
        templates, token = await self._h.list_templates(current_principal(), _list_params(request))
        return tpl.ListTemplatesResponse(templates=[template_to_proto(t) for t in templates], next_page_token=token)

    async def UpdateTemplate(self, request: tpl.UpdateTemplateRequest, context: Context) -> tpb.DeviceTemplate:
        tid = template_id(request.template.name, "template.name")
        mask = validate_update_mask(list(request.update_mask.paths), TEMPLATE_FIELDS,
                                    output_only=TEMPLATE_OUTPUT_ONLY)
        update = cmd.Update(id=tid, mask=mask, etag=request.template.etag,
                            values={path: template_value(request.template, path) for path in mask})
        return template_to_proto(await self._h.update_template(current_principal(), update))

    async def DeleteTemplate(self, request: tpl.DeleteTemplateRequest, context: Context) -> Empty:
        await self._h.delete_template(current_principal(), cmd.Delete(template_id(request.name), request.etag))
        return Empty()

    async def CloneTemplate(self, request: tpl.CloneTemplateRequest, context: Context) -> tpb.DeviceTemplate:
        clone = cmd.CloneTemplate(template_id(request.name), display_name=request.display_name, slug=request.slug)
        return template_to_proto(await self._h.clone_template(current_principal(), clone))


def _sensor_value(message: tpb.Sensor, path: str) -> Any:
    if path == "enabled":
        return message.enabled
    return getattr(message, path)


class SensorServicer(sen_grpc.SensorServiceServicer):
    def __init__(self, handlers: TemplateHandlers) -> None:
        self._h = handlers

    async def ListSensors(self, request: sen.ListSensorsRequest, context: Context) -> sen.ListSensorsResponse:
        device_id = parse_name(request.parent, "devices", DEVICE_ID_PATTERN, field="parent")
        sensors, token = await self._h.list_sensors(current_principal(), device_id, _list_params(request))
        return sen.ListSensorsResponse(sensors=[sensor_to_proto(s) for s in sensors], next_page_token=token)

    async def CreateSensor(self, request: sen.CreateSensorRequest, context: Context) -> tpb.Sensor:
        device_id = parse_name(request.parent, "devices", DEVICE_ID_PATTERN, field="parent")
        s = request.sensor
        created = await self._h.create_sensor(current_principal(), cmd.CreateSensor(
            device_id=device_id, key=request.sensor_id, type=metric_type(s.type),
            unit=s.unit if s.unit else None, label=s.label, enabled=s.enabled if s.HasField("enabled") else None))
        return sensor_to_proto(created)

    async def UpdateSensor(self, request: sen.UpdateSensorRequest, context: Context) -> tpb.Sensor:
        device_id, key = _sensor_name(request.sensor.name, "sensor.name")
        mask = validate_update_mask(list(request.update_mask.paths), SENSOR_FIELDS, output_only=SENSOR_OUTPUT_ONLY)
        update = cmd.Update(id=key, mask=mask, etag=request.sensor.etag,
                            values={path: _sensor_value(request.sensor, path) for path in mask})
        return sensor_to_proto(await self._h.update_sensor(current_principal(), device_id, update))

    async def DeleteSensor(self, request: sen.DeleteSensorRequest, context: Context) -> Empty:
        device_id, key = _sensor_name(request.name)
        await self._h.delete_sensor(current_principal(), device_id, cmd.Delete(key, request.etag))
        return Empty()
