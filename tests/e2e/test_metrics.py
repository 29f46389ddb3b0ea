"""Each service serves Prometheus metrics on its own endpoint, counting calls by method and code."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from helpers import RPC_TIMEOUT, bearer

from muster.registry.v1 import tenant_service_pb2 as ten
from muster.registry.v1 import tenant_service_pb2_grpc as ten_grpc

pytestmark = pytest.mark.platform


async def test_registry_metrics_count_calls_by_method_and_code(platform: Any) -> None:
    async with grpc.aio.insecure_channel(platform.endpoints["grpc"]["registry"]) as channel:
        stub = ten_grpc.TenantServiceStub(channel)
        await stub.ListTenants(ten.ListTenantsRequest(), metadata=bearer(platform.endpoints["admin_token"]),
                               timeout=RPC_TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.ListTenants(ten.ListTenantsRequest(), timeout=RPC_TIMEOUT)  # no token
    async with httpx.AsyncClient(timeout=10) as http:
        body = (await http.get(f"http://{platform.endpoints['metrics']['registry']}/metrics")).text
    for code in ("OK", "UNAUTHENTICATED"):
        assert (f'muster_grpc_server_requests_total{{code="{code}",method="ListTenants",'
                f'service="muster.registry.v1.TenantService"}}') in body
    assert "muster_grpc_server_request_duration_seconds_bucket" in body
