"""Device templates and sensors end to end over gRPC on the running registry: system templates
(platform admin) visible to every tenant and writable by none, clone, delete-in-use refused,
auto sensors on device create and template change, sensor CRUD, tenant isolation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.struct_pb2 import Struct
from helpers import RPC_TIMEOUT, TenantTokens, bearer, create_tenant, error_reason, field_violations, unique_id

from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import module_service_pb2 as mod
from muster.registry.v1 import module_service_pb2_grpc as mod_grpc
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import sensor_service_pb2 as sen
from muster.registry.v1 import sensor_service_pb2_grpc as sen_grpc
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.registry.v1 import template_service_pb2 as tpl
from muster.registry.v1 import template_service_pb2_grpc as tpl_grpc

from .registry_grpc_support import Code, create_device, fails
from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import devices as devices  # fixture
from .registry_grpc_support import tenant as tenant  # fixture

if TYPE_CHECKING:
    from .registry_grpc_support import Devices

    Templates = tpl_grpc.TemplateServiceAsyncStub
    Sensors = sen_grpc.SensorServiceAsyncStub

pytestmark = pytest.mark.platform

NUMBER = tpb.METRIC_TYPE_NUMBER


def _pump(**fields: object) -> tpb.DeviceTemplate:
    params = Struct()
    params.update({"type": "object", "properties": {"rpm": {"type": "number"}}})
    values: dict[str, object] = {
        "display_name": "Pump", "category": "pump", "manufacturer": "Grundfos", "model": "CR 5",
        "metrics": [tpb.MetricDefinition(key="pressure", unit="bar", type=NUMBER, min=0, max=16, required=True),
                    tpb.MetricDefinition(key="flow", unit="l/min", type=NUMBER, required=True),
                    tpb.MetricDefinition(key="temperature", unit="degC", type=NUMBER)],
        "commands": [tpb.CommandDefinition(name="set_speed", parameters=params, default_timeout=Duration(seconds=30))],
        "slots": [tpb.SlotDefinition(name="expansion", max_devices=2)], **fields}
    return tpb.DeviceTemplate(**values)  # type: ignore[arg-type]


@pytest.fixture
def templates(channel: grpc.aio.Channel) -> Templates:
    return tpl_grpc.TemplateServiceStub(channel)


@pytest.fixture
def sensors(channel: grpc.aio.Channel) -> Sensors:
    return sen_grpc.SensorServiceStub(channel)


@pytest.fixture
async def system_template(templates: Templates, admin_token: str) -> AsyncIterator[tpb.DeviceTemplate]:
    created = await templates.CreateTemplate(tpl.CreateTemplateRequest(
        template_id=unique_id("sys"), template=_pump(display_name="Generic pump")), metadata=bearer(admin_token),
        timeout=RPC_TIMEOUT)
    yield created
    with contextlib.suppress(grpc.aio.AioRpcError):  # still used by a test's device: harmless, ids are unique
        await templates.DeleteTemplate(tpl.DeleteTemplateRequest(name=created.name), metadata=bearer(admin_token),
                                       timeout=RPC_TIMEOUT)


async def test_template_create_get_list_update_delete(templates: Templates, tenant: TenantTokens) -> None:
    md = bearer(tenant.admin)
    created = await templates.CreateTemplate(tpl.CreateTemplateRequest(template=_pump(slug="cr-5")), metadata=md,
                                             timeout=RPC_TIMEOUT)
    assert created.name.startswith("templates/") and created.etag == '"1"'
    assert created.source == tpb.TEMPLATE_SOURCE_TENANT
    assert created.metrics[0].HasField("min") and not created.metrics[1].HasField("min")
    assert created.commands[0].default_timeout.seconds == 30 and created.commands[0].parameters["type"] == "object"
    got = await templates.GetTemplate(tpl.GetTemplateRequest(name=created.name), metadata=bearer(tenant.viewer),
                                      timeout=RPC_TIMEOUT)
    assert got == created
    listed = await templates.ListTemplates(tpl.ListTemplatesRequest(filter="source = TENANT"),
                                           metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
    assert [t.name for t in listed.templates] == [created.name]
    updated = await templates.UpdateTemplate(tpl.UpdateTemplateRequest(
        template=tpb.DeviceTemplate(name=created.name, model="CR 10", metrics=[], etag=created.etag),
        update_mask=FieldMask(paths=["model", "metrics"])), metadata=md, timeout=RPC_TIMEOUT)
    assert (updated.model, len(updated.metrics), updated.display_name, updated.etag) == ("CR 10", 0, "Pump", '"2"')
    stale = await fails(templates.DeleteTemplate(tpl.DeleteTemplateRequest(name=created.name, etag='"1"'),
                                                 metadata=md, timeout=RPC_TIMEOUT))
    assert stale.code() is Code.ABORTED
    await templates.DeleteTemplate(tpl.DeleteTemplateRequest(name=created.name), metadata=md, timeout=RPC_TIMEOUT)
    gone = await fails(templates.GetTemplate(tpl.GetTemplateRequest(name=created.name), metadata=md,
                                             timeout=RPC_TIMEOUT))
    assert gone.code() is Code.NOT_FOUND


async def test_bad_templates_are_refused_naming_the_field(templates: Templates, tenant: TenantTokens) -> None:
    bad = _pump(metrics=[tpb.MetricDefinition(key="flow", type=NUMBER, min=5, max=1),
                         tpb.MetricDefinition(key="flow", type=NUMBER)])
    error = await fails(templates.CreateTemplate(tpl.CreateTemplateRequest(template=bad),
                                                 metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT))
    assert error.code() is Code.INVALID_ARGUMENT
    assert {"template.metrics[0].max", "template.metrics[1].key"} <= set(field_violations(error))
    viewer = await fails(templates.CreateTemplate(tpl.CreateTemplateRequest(template=_pump()),
                                                  metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT))
    assert viewer.code() is Code.PERMISSION_DENIED


async def test_system_templates_are_visible_to_all_writable_by_none_and_clonable(
        templates: Templates, channel: grpc.aio.Channel, admin_token: str, tenant: TenantTokens,
        system_template: tpb.DeviceTemplate) -> None:
    other = await create_tenant(channel, admin_token)
    for who in (tenant, other):
        got = await templates.GetTemplate(tpl.GetTemplateRequest(name=system_template.name),
                                          metadata=bearer(who.viewer), timeout=RPC_TIMEOUT)
        assert got.source == tpb.TEMPLATE_SOURCE_SYSTEM
    refused = await fails(templates.UpdateTemplate(tpl.UpdateTemplateRequest(
        template=tpb.DeviceTemplate(name=system_template.name, model="mine"), update_mask=FieldMask(paths=["model"])),
        metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT))
    assert (refused.code(), error_reason(refused)) == (Code.PERMISSION_DENIED, "SYSTEM_TEMPLATE_READ_ONLY")
    refused = await fails(templates.DeleteTemplate(tpl.DeleteTemplateRequest(name=system_template.name),
                                                   metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT))
    assert refused.code() is Code.PERMISSION_DENIED
    copy = await templates.CloneTemplate(tpl.CloneTemplateRequest(name=system_template.name,
                                                                  display_name="Our pump"),
                                         metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT)
    assert (copy.source, copy.display_name, list(copy.metrics)) == (tpb.TEMPLATE_SOURCE_TENANT, "Our pump",
                                                                    list(system_template.metrics))
    hidden = await fails(templates.GetTemplate(tpl.GetTemplateRequest(name=copy.name), metadata=bearer(other.admin),
                                               timeout=RPC_TIMEOUT))
    assert hidden.code() is Code.NOT_FOUND
    listed = await templates.ListTemplates(tpl.ListTemplatesRequest(filter="source = TENANT"),
                                           metadata=bearer(other.viewer), timeout=RPC_TIMEOUT)
    assert list(listed.templates) == []


async def test_auto_sensors_template_change_and_delete_in_use(
        templates: Templates, devices: Devices, sensors: Sensors, tenant: TenantTokens,
        system_template: tpb.DeviceTemplate) -> None:
    device = await create_device(devices, tenant.operator, display_name="Pump 1", template=system_template.name)
    assert device.template == system_template.name
    listed = await sensors.ListSensors(sen.ListSensorsRequest(parent=device.name), metadata=bearer(tenant.viewer),
                                       timeout=RPC_TIMEOUT)
    assert [(s.name.rsplit("/", 1)[1], s.unit, s.enabled) for s in listed.sensors] == [("flow", "l/min", True),
                                                                                       ("pressure", "bar", True)]
    own = await templates.CreateTemplate(tpl.CreateTemplateRequest(template=_pump(metrics=[
        tpb.MetricDefinition(key="rpm", type=NUMBER, required=True)])), metadata=bearer(tenant.admin),
        timeout=RPC_TIMEOUT)
    await devices.UpdateDevice(dev.UpdateDeviceRequest(device=pb.Device(name=device.name, template=own.name),
                                                       update_mask=FieldMask(paths=["template"])),
                               metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)
    listed = await sensors.ListSensors(sen.ListSensorsRequest(parent=device.name), metadata=bearer(tenant.viewer),
                                       timeout=RPC_TIMEOUT)
    assert [s.name.rsplit("/", 1)[1] for s in listed.sensors] == ["flow", "pressure", "rpm"]
    in_use = await fails(templates.DeleteTemplate(tpl.DeleteTemplateRequest(name=own.name),
                                                  metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT))
    assert (in_use.code(), error_reason(in_use)) == (Code.FAILED_PRECONDITION, "TEMPLATE_IN_USE")
    assert "1 device(s)" in (in_use.details() or "")


async def test_sensor_create_update_delete_and_isolation(
        devices: Devices, sensors: Sensors, tenant: TenantTokens, channel: grpc.aio.Channel,
        admin_token: str) -> None:
    device = await create_device(devices, tenant.operator, display_name="Meter")
    md = bearer(tenant.operator)
    created = await sensors.CreateSensor(sen.CreateSensorRequest(
        parent=device.name, sensor_id="energy", sensor=tpb.Sensor(type=NUMBER, unit="kWh", label="Energy")),
        metadata=md, timeout=RPC_TIMEOUT)
    assert (created.name, created.enabled, created.etag) == (f"{device.name}/sensors/energy", True, '"1"')
    assert not created.HasField("last_value") and not created.HasField("last_seen")
    updated = await sensors.UpdateSensor(sen.UpdateSensorRequest(
        sensor=tpb.Sensor(name=created.name, enabled=False, etag=created.etag),
        update_mask=FieldMask(paths=["enabled"])), metadata=md, timeout=RPC_TIMEOUT)
    assert (updated.enabled, updated.unit, updated.etag) == (False, "kWh", '"2"')
    bad = await fails(sensors.UpdateSensor(sen.UpdateSensorRequest(
        sensor=tpb.Sensor(name=created.name), update_mask=FieldMask(paths=["last_value"])), metadata=md,
        timeout=RPC_TIMEOUT))
    assert bad.code() is Code.INVALID_ARGUMENT and "output only" in (bad.details() or "")
    other = await create_tenant(channel, admin_token)
    hidden = await fails(sensors.ListSensors(sen.ListSensorsRequest(parent=device.name),
                                             metadata=bearer(other.viewer), timeout=RPC_TIMEOUT))
    assert hidden.code() is Code.NOT_FOUND
    await sensors.DeleteSensor(sen.DeleteSensorRequest(name=created.name), metadata=md, timeout=RPC_TIMEOUT)
    listed = await sensors.ListSensors(sen.ListSensorsRequest(parent=device.name), metadata=md, timeout=RPC_TIMEOUT)
    assert list(listed.sensors) == []


async def test_modules_in_slots(templates: Templates, devices: Devices, channel: grpc.aio.Channel,
                                tenant: TenantTokens) -> None:
    modules = mod_grpc.ModuleServiceStub(channel)
    admin, md = bearer(tenant.admin), bearer(tenant.operator)
    io = await templates.CreateTemplate(tpl.CreateTemplateRequest(template=_pump(display_name="IO", slots=[])),
                                        metadata=admin, timeout=RPC_TIMEOUT)
    other = await templates.CreateTemplate(tpl.CreateTemplateRequest(template=_pump(display_name="X", slots=[])),
                                           metadata=admin, timeout=RPC_TIMEOUT)
    host_template = await templates.CreateTemplate(tpl.CreateTemplateRequest(template=_pump(slots=[
        tpb.SlotDefinition(name="io", accepted_templates=[io.name], max_devices=1)])), metadata=admin,
        timeout=RPC_TIMEOUT)
    host = await create_device(devices, tenant.operator, template=host_template.name)
    created = await modules.CreateModule(mod.CreateModuleRequest(parent=host.name, module_id="io-1", module=tpb.Module(
        slot="io", template=io.name, metric_key_map={"port_3_temp": "temperature"})), metadata=md,
        timeout=RPC_TIMEOUT)
    assert (created.name, dict(created.metric_key_map)) == (f"{host.name}/modules/io-1",
                                                            {"port_3_temp": "temperature"})
    full = await fails(modules.CreateModule(mod.CreateModuleRequest(parent=host.name, module=tpb.Module(
        slot="io", template=io.name)), metadata=md, timeout=RPC_TIMEOUT))
    assert (full.code(), error_reason(full)) == (Code.FAILED_PRECONDITION, "SLOT_FULL")
    refused = await fails(modules.CreateModule(mod.CreateModuleRequest(parent=host.name, module=tpb.Module(
        slot="io", template=other.name)), metadata=md, timeout=RPC_TIMEOUT))
    assert refused.code() is Code.INVALID_ARGUMENT and "module.template" in field_violations(refused)
    missing = await fails(modules.CreateModule(mod.CreateModuleRequest(parent=host.name, module=tpb.Module(
        slot="usb", template=io.name)), metadata=md, timeout=RPC_TIMEOUT))
    assert "module.slot" in field_violations(missing)
    updated = await modules.UpdateModule(mod.UpdateModuleRequest(
        module=tpb.Module(name=created.name, label="Left IO", etag=created.etag), update_mask=FieldMask(
            paths=["label"])), metadata=md, timeout=RPC_TIMEOUT)
    assert (updated.label, dict(updated.metric_key_map)) == ("Left IO", {"port_3_temp": "temperature"})
    in_use = await fails(templates.DeleteTemplate(tpl.DeleteTemplateRequest(name=io.name), metadata=admin,
                                                  timeout=RPC_TIMEOUT))
    assert in_use.code() is Code.FAILED_PRECONDITION and "1 module(s)" in (in_use.details() or "")
    await modules.DeleteModule(mod.DeleteModuleRequest(name=created.name), metadata=md, timeout=RPC_TIMEOUT)
    listed = await modules.ListModules(mod.ListModulesRequest(parent=host.name), metadata=bearer(tenant.viewer),
                                       timeout=RPC_TIMEOUT)
    assert list(listed.modules) == []
    await templates.DeleteTemplate(tpl.DeleteTemplateRequest(name=io.name), metadata=admin, timeout=RPC_TIMEOUT)
