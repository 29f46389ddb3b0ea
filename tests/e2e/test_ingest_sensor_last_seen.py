"""The registry's sensors show the latest telemetry: a device whose template's required metric gave it
a sensor publishes telemetry; within a few seconds ListSensors shows the newest value and its time
(ingest's coalesced LatestTelemetryChanged event, relayed and applied by the registry), and a metric
without a sensor creates none."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import grpc
import orjson
import pytest
from helpers import RPC_TIMEOUT, TenantTokens, bearer
from nats.aio.client import Client as NATS

from muster.registry.v1 import sensor_service_pb2 as sen
from muster.registry.v1 import sensor_service_pb2_grpc as sen_grpc
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.registry.v1 import template_service_pb2 as tmpl
from muster.registry.v1 import template_service_pb2_grpc as tmpl_grpc

from .ingest_support import bus as bus  # fixture
from .ingest_support import create_devices, until_projected
from .ingest_support import ingest as ingest  # fixture
from .ingest_support import registry as registry  # fixture
from .ingest_support import telemetry as telemetry  # fixture
from .ingest_support import tenant as tenant  # fixture

pytestmark = pytest.mark.platform


async def sensors_when_seen(registry: grpc.aio.Channel, tenant: TenantTokens, device: str, seen: datetime,
                            timeout: float = 20.0) -> list[tpb.Sensor]:
    """The device's sensors once every one was last seen at `seen` (or at the deadline, as they are):
    a burst split across two notifier rounds shows an older value first."""
    stub = sen_grpc.SensorServiceStub(registry)
    deadline = time.monotonic() + timeout
    while True:
        listed = await stub.ListSensors(sen.ListSensorsRequest(parent=f"devices/{device}"),
                                        metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
        if all(s.last_seen.ToDatetime(tzinfo=UTC) == seen for s in listed.sensors) or time.monotonic() > deadline:
            return list(listed.sensors)
        await asyncio.sleep(0.5)


async def test_list_sensors_shows_the_latest_value_and_time(registry: grpc.aio.Channel, telemetry: object,
                                                            tenant: TenantTokens, bus: NATS) -> None:
    template = await tmpl_grpc.TemplateServiceStub(registry).CreateTemplate(tmpl.CreateTemplateRequest(
        template=tpb.DeviceTemplate(display_name="boiler", metrics=[
            tpb.MetricDefinition(key="temperature", type=tpb.METRIC_TYPE_NUMBER, required=True)])),
        metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT)
    (device,) = await create_devices(registry, tenant, 1, template=template.name)
    await until_projected(telemetry, tenant, [device])  # type: ignore[arg-type]
    js = bus.jetstream()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    started = time.monotonic()
    for i in range(10):  # a burst: coalesced into one or two events
        await js.publish(f"muster.v1.devices.{device}.telemetry", orjson.dumps(
            {"ts": int((base + timedelta(seconds=i)).timestamp() * 1000), "metrics": {"temperature": 20.0 + i,
                                                                                       "rssi": -70}}))

    newest = base + timedelta(seconds=9)
    sensors = await sensors_when_seen(registry, tenant, device, newest)
    took = time.monotonic() - started
    print(f"sensor showed the newest value {took:.1f} s after the publish")  # noqa: T201 (a measurement, -s)
    assert [s.name for s in sensors] == [f"devices/{device}/sensors/temperature"]  # rssi made no sensor
    (sensor,) = sensors
    assert sensor.HasField("last_seen"), f"no last_seen after {took:.1f} s"
    assert sensor.last_value.number_value == 29.0
    assert sensor.last_seen.ToDatetime(tzinfo=UTC) == newest
