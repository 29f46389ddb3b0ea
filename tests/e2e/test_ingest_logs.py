"""Device logs end to end: published on the logs topic, captured, stored, queried by level, time range
and text, newest first and paginated; bad entries answered on the errors topic."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import grpc
import orjson
import pytest
from helpers import RPC_TIMEOUT, TenantTokens, bearer
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from muster.ingest.v1 import log_service_pb2 as logs
from muster.ingest.v1 import log_service_pb2_grpc as logs_grpc

from .ingest_support import bus as bus  # fixture
from .ingest_support import create_devices, until_projected
from .ingest_support import ingest as ingest  # fixture
from .ingest_support import registry as registry  # fixture
from .ingest_support import telemetry as telemetry  # fixture
from .ingest_support import tenant as tenant  # fixture

pytestmark = pytest.mark.platform


async def list_all(stub: logs_grpc.DeviceLogServiceAsyncStub, tenant: TenantTokens,
                   **request: object) -> list[logs.DeviceLogEntry]:
    found: list[logs.DeviceLogEntry] = []
    token = ""
    while True:
        response = await stub.ListDeviceLogs(logs.ListDeviceLogsRequest(page_token=token, **request),  # type: ignore[arg-type]
                                             metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
        found += response.entries
        token = response.next_page_token
        if not token:
            return found


async def test_device_logs_are_stored_and_queryable_by_level_time_and_text(
        registry: grpc.aio.Channel, ingest: grpc.aio.Channel, telemetry: object, tenant: TenantTokens,
        bus: NATS) -> None:
    (device,) = await create_devices(registry, tenant, 1)
    await until_projected(telemetry, tenant, [device])  # type: ignore[arg-type]
    errors: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def on_error(msg: Msg) -> None:
        await errors.put(orjson.loads(msg.data))

    await bus.subscribe(f"muster.v1.devices.{device}.errors", cb=on_error)
    base = datetime.now(UTC) - timedelta(minutes=30)
    levels = ["debug", "info", "warning", "error"]
    batch = [{"ts": (base + timedelta(minutes=i)).isoformat(), "level": levels[i % 4], "message": f"event {i}",
              "fields": {"i": i}} for i in range(12)]
    js = bus.jetstream()
    await js.publish(f"muster.v1.devices.{device}.logs", orjson.dumps(batch))
    await js.publish(f"muster.v1.devices.{device}.logs", orjson.dumps({"level": "loud", "message": "x"}))

    stub = logs_grpc.DeviceLogServiceStub(ingest)
    parent = f"devices/{device}"
    deadline = time.monotonic() + 15
    while len(everything := await list_all(stub, tenant, parent=parent, page_size=5)) < 12:
        assert time.monotonic() < deadline, f"only {len(everything)} entries stored"
        await asyncio.sleep(0.2)
    assert [e.message for e in everything] == [f"event {i}" for i in reversed(range(12))]  # newest first
    assert everything[0].fields["i"] == 11 and everything[0].level == logs.LOG_LEVEL_ERROR

    severe = await list_all(stub, tenant, parent=parent, min_level=logs.LOG_LEVEL_WARNING)
    assert {e.level for e in severe} == {logs.LOG_LEVEL_WARNING, logs.LOG_LEVEL_ERROR} and len(severe) == 6
    window = logs.ListDeviceLogsRequest(parent=parent)
    window.start_time.FromDatetime(base + timedelta(minutes=3))
    window.end_time.FromDatetime(base + timedelta(minutes=5))
    ranged = await stub.ListDeviceLogs(window, metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
    assert [e.message for e in ranged.entries] == ["event 4", "event 3"]
    assert [e.message for e in await list_all(stub, tenant, parent=parent, text="EVENT 1")] == [
        "event 11", "event 10", "event 1"]

    error = await asyncio.wait_for(errors.get(), 15)
    assert (error["topic"], error["code"]) == (f"muster/v1/devices/{device}/logs", "INVALID_VALUE")
