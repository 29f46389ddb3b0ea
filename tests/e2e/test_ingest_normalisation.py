"""The registry projection at work: a module's metric_key_map renames raw firmware keys, the template's
metric types and ranges refuse bad values (on the errors topic), the rest of the message is kept."""

from __future__ import annotations

import asyncio

import grpc
import orjson
import pytest
from helpers import RPC_TIMEOUT, TenantTokens, bearer
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from muster.registry.v1 import module_service_pb2 as mod
from muster.registry.v1 import module_service_pb2_grpc as mod_grpc
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.registry.v1 import template_service_pb2 as tmpl
from muster.registry.v1 import template_service_pb2_grpc as tmpl_grpc

from .ingest_support import bus as bus  # fixture
from .ingest_support import create_devices, until_projected
from .ingest_support import ingest as ingest  # fixture
from .ingest_support import registry as registry  # fixture
from .ingest_support import telemetry as telemetry  # fixture
from .ingest_support import tenant as tenant  # fixture
from .test_ingest_telemetry import points_of

pytestmark = pytest.mark.platform

NUMBER, BOOL = tpb.METRIC_TYPE_NUMBER, tpb.METRIC_TYPE_BOOL


async def test_raw_keys_are_normalised_and_values_checked_against_the_template(
        registry: grpc.aio.Channel, telemetry: object, tenant: TenantTokens, bus: NATS) -> None:
    templates = tmpl_grpc.TemplateServiceStub(registry)
    probe = await templates.CreateTemplate(tmpl.CreateTemplateRequest(template=tpb.DeviceTemplate(
        display_name="temp probe", metrics=[tpb.MetricDefinition(key="temperature", type=NUMBER, min=-40, max=125)])),
        metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT)
    gateway = await templates.CreateTemplate(tmpl.CreateTemplateRequest(template=tpb.DeviceTemplate(
        display_name="gateway", metrics=[tpb.MetricDefinition(key="door", type=BOOL)],
        slots=[tpb.SlotDefinition(name="port_3")])), metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT)
    (device,) = await create_devices(registry, tenant, 1, template=gateway.name)
    await mod_grpc.ModuleServiceStub(registry).CreateModule(mod.CreateModuleRequest(
        parent=f"devices/{device}", module=tpb.Module(slot="port_3", template=probe.name,
                                                      metric_key_map={"port_3_temp": "temperature"})),
        metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)
    await until_projected(telemetry, tenant, [device])  # type: ignore[arg-type]
    await asyncio.sleep(1.0)  # the module's event follows the device's; the profile cache lives 5 s
    errors: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def on_error(msg: Msg) -> None:
        await errors.put(orjson.loads(msg.data))

    await bus.subscribe(f"muster.v1.devices.{device}.errors", cb=on_error)
    js = bus.jetstream()
    subject = f"muster.v1.devices.{device}.telemetry"
    await asyncio.sleep(5.0)  # let any profile cached before the module arrived expire
    await js.publish(subject, orjson.dumps({"metrics": {"port_3_temp": 21.5, "door": True, "rssi": -70}}))
    await js.publish(subject, orjson.dumps({"metrics": {"port_3_temp": 500, "door": "open", "rssi": -71}}))

    points = await points_of(telemetry, tenant, device, 4)  # type: ignore[arg-type]
    assert sorted((p.metric, p.value.WhichOneof("kind")) for p in points) == [
        ("door", "bool_value"), ("rssi", "number_value"), ("rssi", "number_value"), ("temperature", "number_value")]
    error = await asyncio.wait_for(errors.get(), 15)
    assert error["code"] == "OUT_OF_RANGE" and "temperature" in error["message"]
    assert "1 more problem" in error["message"]  # the door's type mismatch, in the same message
