"""Bulk import/export end to end with real PostgreSQL, NATS and Envoy: over gRPC (client-streamed CSV
chunks, server-streamed export) and over REST (a `text/csv` body streamed through Envoy's transcoder,
`GET /v1/devices:export` answering `text/csv`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import grpc
import httpx
import nats
import pytest
from helpers import RPC_TIMEOUT, PlatformLike, TenantTokens, bearer, field_violations, service_nats_url
from nats.errors import TimeoutError as NatsTimeoutError

from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import bulk_service_pb2 as bulk
from muster.registry.v1 import bulk_service_pb2_grpc as bulk_grpc
from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import resources_pb2 as pb
from muster.runtime.bus import EVENTS_STREAM

from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import create_device, fails
from .registry_grpc_support import devices as devices  # fixture
from .registry_grpc_support import tenant as tenant  # fixture

if TYPE_CHECKING:
    from .registry_grpc_support import Devices

    Bulk = bulk_grpc.DeviceBulkServiceAsyncStub

pytestmark = pytest.mark.platform

CREATED, UPDATED, UNCHANGED, ERROR = (bulk.IMPORT_OUTCOME_CREATED, bulk.IMPORT_OUTCOME_UPDATED,
                                      bulk.IMPORT_OUTCOME_UNCHANGED, bulk.IMPORT_OUTCOME_ERROR)


@pytest.fixture
def bulk_stub(channel: grpc.aio.Channel) -> Bulk:
    return bulk_grpc.DeviceBulkServiceStub(channel)


@pytest.fixture(scope="module")
async def http(platform: PlatformLike) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.endpoints["rest"], timeout=30.0) as client:
        yield client


def _requests(text: str, *, dry: bool = False, chunk: int = 50) -> Iterator[bulk.ImportDevicesRequest]:
    data = text.encode()
    yield bulk.ImportDevicesRequest(validate_only=dry)
    for i in range(0, len(data), chunk):
        yield bulk.ImportDevicesRequest(csv={"data": data[i:i + chunk]})


async def grpc_import(stub: Bulk, token: str, text: str, *, dry: bool = False) -> bulk.ImportDevicesResponse:
    return await stub.ImportDevices(_requests(text, dry=dry), metadata=bearer(token), timeout=RPC_TIMEOUT)


async def grpc_export(stub: Bulk, token: str, filter_text: str = "") -> str:
    call = stub.ExportDevices(bulk.ExportDevicesRequest(filter=filter_text), metadata=bearer(token),
                              timeout=RPC_TIMEOUT)
    return b"".join([chunk.data async for chunk in call]).decode()


async def fleet(devices: Devices, token: str) -> dict[str, pb.Device]:
    listed = await devices.ListDevices(dev.ListDevicesRequest(page_size=500), metadata=bearer(token),
                                       timeout=RPC_TIMEOUT)
    return {d.serial: d for d in listed.devices}


FILE = ("serial,display_name,labels,latitude,longitude\n"
        "BK-1,pump 1,floor=3;zone=north,52.5,13.4\n"
        "BK-2,pump 2,Bad Key=x,,\n"
        "BK-3,\"pump, \"\"three\"\"\",,91,0\n"
        "BK-4,pump 4,,,\n")


async def test_dry_run_reports_rows_and_fields_and_writes_nothing(
        bulk_stub: Bulk, devices: Devices, tenant: TenantTokens) -> None:
    report = await grpc_import(bulk_stub, tenant.operator, FILE, dry=True)
    assert report.validate_only
    assert [(r.row, r.outcome) for r in report.results] == [(2, CREATED), (3, ERROR), (4, ERROR), (5, CREATED)]
    assert [(e.column, "Bad Key" in e.reason) for e in report.results[1].errors] == [("labels", True)]
    assert report.results[2].errors[0].column == "latitude"
    assert (report.rows, report.created, report.errors) == (4, 2, 2)
    assert await fleet(devices, tenant.viewer) == {}


async def test_import_writes_valid_rows_and_reimport_changes_nothing(
        bulk_stub: Bulk, devices: Devices, tenant: TenantTokens) -> None:
    first = await grpc_import(bulk_stub, tenant.operator, FILE)
    assert (first.created, first.errors) == (2, 2)
    stored = await fleet(devices, tenant.viewer)
    assert set(stored) == {"BK-1", "BK-4"}
    assert dict(stored["BK-1"].labels) == {"floor": "3", "zone": "north"}
    assert stored["BK-1"].location.latitude == 52.5
    again = await grpc_import(bulk_stub, tenant.operator, FILE)
    assert [r.outcome for r in again.results] == [UNCHANGED, ERROR, ERROR, UNCHANGED]
    assert await fleet(devices, tenant.viewer) == stored  # same etags: nothing written
    changed = await grpc_import(bulk_stub, tenant.operator, "serial,display_name\nBK-4,renamed\n")
    assert changed.results[0].outcome == UPDATED
    assert (await fleet(devices, tenant.viewer))["BK-4"].display_name == "renamed"


async def test_imported_devices_publish_device_created(
        platform: PlatformLike, bulk_stub: Bulk, tenant: TenantTokens) -> None:
    report = await grpc_import(bulk_stub, tenant.operator, "serial\n" + "".join(f"EV-{i}\n" for i in range(5)))
    names = {r.device for r in report.results}
    nc = await nats.connect(service_nats_url(platform))
    try:
        sub = await nc.jetstream().pull_subscribe(f"muster.events.registry.{tenant.id}.DeviceCreated", durable=None,
                                                  stream=EVENTS_STREAM)
        seen: set[str] = set()
        deadline = time.monotonic() + 15
        while seen != names and time.monotonic() < deadline:
            try:
                for msg in await sub.fetch(10, timeout=1.0):
                    seen.add(Event.FromString(msg.data).subject)
                    await msg.ack()
            except NatsTimeoutError:
                continue
    finally:
        await nc.close()
    assert seen == names


async def test_export_round_trips_and_never_shows_another_tenant(
        bulk_stub: Bulk, devices: Devices, tenant: TenantTokens, channel: grpc.aio.Channel, admin_token: str) -> None:
    from helpers import create_tenant

    other = await create_tenant(channel, admin_token)
    await create_device(devices, other.operator, serial="THEIRS-1", display_name="not yours")
    await create_device(devices, tenant.operator, display_name="no serial", labels={"odd": "a;b=c"})
    await grpc_import(bulk_stub, tenant.operator, FILE)
    text = await grpc_export(bulk_stub, tenant.viewer)
    assert "THEIRS-1" not in text and "not yours" not in text
    assert len(text.strip().splitlines()) == 4
    report = await grpc_import(bulk_stub, tenant.operator, text)
    assert [r.outcome for r in report.results] == [UNCHANGED] * 3
    assert "THEIRS-1" in await grpc_export(bulk_stub, other.viewer)
    filtered = await grpc_export(bulk_stub, tenant.viewer, 'labels.floor = "3"')
    assert [line.split(",")[1] for line in filtered.strip().splitlines()[1:]] == ["BK-1"]


async def test_roles_and_a_bad_header(bulk_stub: Bulk, tenant: TenantTokens) -> None:
    refused = await fails(grpc_import(bulk_stub, tenant.viewer, FILE))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    bad = await fails(grpc_import(bulk_stub, tenant.operator, "colour\nred\n"))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "header" in field_violations(bad)


# --- REST through Envoy ---------------------------------------------------------------------------

def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _body(text: str, piece: int = 4096) -> AsyncIterator[bytes]:
    data = text.encode()
    for i in range(0, len(data), piece):
        yield data[i:i + piece]


async def test_rest_import_streams_a_body_over_the_buffer_limit_and_export_answers_csv(
        http: httpx.AsyncClient, devices: Devices, tenant: TenantTokens) -> None:
    notes = "n" * 300  # ~3000 rows * ~330 bytes: about 1 MiB, past Envoy's 1 MiB buffer for other calls
    text = "serial,display_name,notes\n" + "".join(f"RS-{i:05},rest {i},{notes}\n" for i in range(3300))
    assert len(text) > 1024 * 1024
    headers = {**_auth(tenant.operator), "Content-Type": "text/csv"}
    dry = await http.post("/v1/devices:import", params={"validate_only": "true"}, content=_body(text),
                          headers=headers)
    assert dry.status_code == 200, dry.text
    assert (dry.json()["validate_only"], dry.json()["created"]) == (True, "3300")
    assert (await devices.ListDevices(dev.ListDevicesRequest(), metadata=bearer(tenant.viewer),
                                      timeout=RPC_TIMEOUT)).devices == []
    real = await http.post("/v1/devices:import", content=_body(text), headers=headers)
    assert real.status_code == 200, real.text
    body = real.json()
    assert (body["created"], body["errors"]) == ("3300", "0")
    assert body["results"][0] == {"row": "2", "serial": "RS-00000", "device": body["results"][0]["device"],
                                  "outcome": "IMPORT_OUTCOME_CREATED", "errors": []}
    export = await http.get("/v1/devices:export", params={"filter": 'serial = "RS-00042"'},
                            headers=_auth(tenant.viewer))
    assert export.status_code == 200, export.text
    assert export.headers["content-type"].startswith("text/csv")
    lines = export.text.strip().splitlines()
    assert len(lines) == 2 and lines[1].split(",")[1] == "RS-00042"


async def test_rest_import_reports_bad_rows_and_bad_filters_are_400(http: httpx.AsyncClient,
                                                                    tenant: TenantTokens) -> None:
    response = await http.post("/v1/devices:import", content=FILE.encode(),
                               headers={**_auth(tenant.operator), "Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    errors = {r["row"]: r["errors"] for r in response.json()["results"] if r["errors"]}
    assert errors["3"][0]["column"] == "labels" and errors["4"][0]["column"] == "latitude"
    bad = await http.get("/v1/devices:export", params={"filter": "colour = red"}, headers=_auth(tenant.viewer))
    assert bad.status_code == 400, bad.text
