"""Setup: a fresh tenant, an admin token for it and its devices, plus the sizes the echo service mimics."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

import grpc

from bench._registry_config import LIST_FILTER, LIST_PAGE_SIZE, RPC_TIMEOUT, bearer, log
from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import device_service_pb2_grpc as dev_grpc
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import tenant_service_pb2 as ten
from muster.registry.v1 import tenant_service_pb2_grpc as ten_grpc
from muster.registry.v1 import token_service_pb2 as tok
from muster.registry.v1 import token_service_pb2_grpc as tok_grpc

SEED_CONCURRENCY = 16


@dataclass(frozen=True)
class Fixture:
    tenant: str
    token: str
    device_ids: tuple[str, ...]
    device_size: int  # bytes of one serialized Device
    list_size: int  # bytes of one serialized ListDevicesResponse (page_size 50, the filter)
    get_request: bytes  # a serialized GetDeviceRequest (the echo client sends one of these)


def _new_device(i: int) -> pb.Device:
    return pb.Device(
        display_name=f"bench sensor {i:04d}", serial=f"BENCH-{i:06d}", notes="created by bench/registry.py",
        labels={"floor": str(i % 10), "room": f"r{i % 50:02d}", "kind": "gateway" if i % 25 == 0 else "sensor"},
        location=pb.Location(latitude=52.0 + i / 10_000, longitude=13.0 + i / 10_000, altitude=34.0))


async def bench_tenant(channel: grpc.aio.Channel, admin_token: str, created_by: str) -> tuple[str, str]:
    """A fresh tenant `bench-<hex>` and a tenant admin token for it."""
    tenant = f"bench-{secrets.token_hex(4)}"
    await ten_grpc.TenantServiceStub(channel).CreateTenant(
        ten.CreateTenantRequest(tenant_id=tenant, tenant=pb.Tenant(display_name=created_by)),
        metadata=bearer(admin_token), timeout=RPC_TIMEOUT)
    issued = await tok_grpc.TokenServiceStub(channel).IssueOperatorToken(
        tok.IssueOperatorTokenRequest(tenant=f"tenants/{tenant}", role=tok.ROLE_ADMIN, subject="bench"),
        metadata=bearer(admin_token), timeout=RPC_TIMEOUT)
    return tenant, issued.token


async def seed(grpc_target: str, admin_token: str, devices: int) -> Fixture:
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        tenant, token = await bench_tenant(channel, admin_token, "bench/registry.py")
        stub = dev_grpc.DeviceServiceStub(channel)
        metadata = bearer(token)
        ids: list[str] = []
        todo = iter(range(devices))

        async def creator() -> None:
            for i in todo:  # shared iterator: bounded by `devices`
                created = await stub.CreateDevice(dev.CreateDeviceRequest(device=_new_device(i)),
                                                  metadata=metadata, timeout=RPC_TIMEOUT)
                ids.append(created.name.removeprefix("devices/"))

        started = time.monotonic()
        await asyncio.gather(*(creator() for _ in range(SEED_CONCURRENCY)))
        log(f"tenant {tenant}: {len(ids)} devices created in {time.monotonic() - started:.1f}s")
        one = await stub.GetDevice(dev.GetDeviceRequest(name=f"devices/{ids[0]}"), metadata=metadata,
                                   timeout=RPC_TIMEOUT)
        page = await stub.ListDevices(dev.ListDevicesRequest(page_size=LIST_PAGE_SIZE, filter=LIST_FILTER),
                                      metadata=metadata, timeout=RPC_TIMEOUT)
    return Fixture(tenant=tenant, token=token, device_ids=tuple(ids), device_size=one.ByteSize(),
                   list_size=page.ByteSize(),
                   get_request=dev.GetDeviceRequest(name=f"devices/{ids[0]}").SerializeToString())
