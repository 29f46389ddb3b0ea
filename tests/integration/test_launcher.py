"""The launcher (`muster up`): generated configs are valid for the real binaries, everything comes
up, a crashed service is restarted, shutdown leaves nothing behind, data survives a restart.

The platform tests run a stub under the registry's name (muster.launcher.stub_service), so they
test the launcher, not the registry; the session `platform` fixture runs the real services.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest
from platform_fixture import (
    STUB_SERVICES,
    RunningPlatform,
    alive,
    all_pids,
    scratch_dir,
    start_platform,
    stop_platform,
    wait_gone,
)

from muster.launcher import envoy
from muster.launcher import nats as nats_config
from muster.launcher.ports import PortOverrides, plan_ports
from muster.launcher.secrets import (
    PlatformSecrets,
    load_or_create_secrets,
    load_or_create_token_key,
    new_account_seed,
)
from muster.launcher.services import SERVICES, UnknownService, select_services
from muster.launcher.supervisor import Backoff, grpc_serving
from muster.runtime.auth import Role, TokenCodec
from muster.runtime.secrets import parse_device_secret_key

# --- no servers needed -----------------------------------------------------------------------------


def _upstreams() -> list[envoy.Upstream]:
    return [envoy.Upstream(s.name, 50051 + i, s.grpc_package_prefix, s.grpc_services)
            for i, s in enumerate(SERVICES)]


def test_envoy_config_is_valid_for_the_real_envoy(tmp_path: Path) -> None:
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(envoy.build_config(
        rest_port=18080, admin_port=19901, upstreams=_upstreams(), descriptor=envoy.descriptor_path())))
    result = subprocess.run(envoy.validate_argv(path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_envoy_validation_catches_an_unknown_grpc_service(tmp_path: Path) -> None:
    bad = envoy.Upstream("registry", 50051, "/muster.registry.v1.", ("muster.registry.v1.NoSuchService",))
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(envoy.build_config(
        rest_port=18080, admin_port=19901, upstreams=[bad], descriptor=envoy.descriptor_path())))
    assert subprocess.run(envoy.validate_argv(path), capture_output=True, timeout=60).returncode != 0


def test_nats_config_is_valid_for_the_real_nats_server(tmp_path: Path) -> None:
    secrets = PlatformSecrets("a", "b", {"registry": "c"}, "d", {spec.name: "e" for spec in SERVICES},
                              nats_callout_seed=new_account_seed())
    path = tmp_path / "nats.conf"
    nats_config.write_config(path, nats_config.build_config(
        tmp_path / "js", nats_config.NatsPorts(14222, 11883, 18222), secrets, SERVICES))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    result = subprocess.run([str(nats_config.binary()), "-t", "-c", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_secrets_are_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    first = load_or_create_secrets(path, ["registry"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_secrets(path, ["registry", "twin"])
    assert again.postgres_services["registry"] == first.postgres_services["registry"]
    assert again.postgres_owner == first.postgres_owner
    assert set(again.nats_services) == {"registry", "twin"}
    # the device secret key: 32 random bytes, hex, and never replaced (every stored hash depends on it)
    assert len(parse_device_secret_key(first.device_secret_key)) == 32
    assert again.device_secret_key == first.device_secret_key
    key = load_or_create_token_key(tmp_path / "secrets" / "token.key")
    assert len(key) >= 64 and key == load_or_create_token_key(tmp_path / "secrets" / "token.key")
    assert stat.S_IMODE((tmp_path / "secrets" / "token.key").stat().st_mode) == 0o600


def test_service_selection() -> None:
    assert select_services(None) == SERVICES
    (stub,) = select_services("registry=muster.launcher.stub_service")
    assert stub.main_module == "muster.launcher.stub_service" and stub.grpc_services == SERVICES[0].grpc_services
    for bad in ("nope", "registry,registry", "registry=not a module", ","):
        with pytest.raises(UnknownService):
            select_services(bad)


def test_ports() -> None:
    fixed = plan_ports(["registry"], PortOverrides(rest=9000), ephemeral=False)
    assert (fixed.rest, fixed.grpc, fixed.metrics, fixed.postgres) == (9000, {"registry": 50051},
                                                                       {"registry": 9464}, 55432)
    free = plan_ports(["registry"], PortOverrides(), ephemeral=True)
    ports = [free.rest, free.mqtt, free.nats, free.nats_monitor, free.postgres, free.envoy_admin,
             *free.grpc.values(), *free.metrics.values()]
    assert len(set(ports)) == len(ports)


def test_backoff() -> None:
    assert [Backoff().delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


# --- against a running platform ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub_platform() -> Iterator[RunningPlatform]:
    with scratch_dir() as root:
        running = start_platform(root / "data", services=STUB_SERVICES)
        yield running
        assert stop_platform(running) == 0, running.supervisor_output()


def _hostport(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.removeprefix("nats://"), int(port)


@pytest.mark.platform
async def test_service_role_logs_in_and_is_neither_owner_nor_superuser(stub_platform: RunningPlatform) -> None:
    host, port = _hostport(stub_platform.postgres)
    password = stub_platform.secrets()["postgres"]["services"]["registry"]
    conn = await asyncpg.connect(host=host, port=port, user="muster_registry", password=password,
                                 database="muster")
    try:
        role = await conn.fetchrow("SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole FROM pg_roles "
                                   "WHERE rolname = current_user")
        assert tuple(role) == (False, False, False, False)
        owned = await conn.fetchval(
            "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid)"
            " + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)"
            " + (SELECT count(*) FROM pg_database WHERE datdba = r.oid)"
            " FROM pg_roles r WHERE rolname = current_user")
        assert owned == 0
        assert await conn.fetchval("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'muster'") \
            == "muster_owner"
    finally:
        await conn.close()


@pytest.mark.platform
async def test_nats_service_user_has_jetstream(stub_platform: RunningPlatform) -> None:
    password = stub_platform.secrets()["nats"]["services"]["registry"]
    nc = await nats.connect(stub_platform.nats, user="muster_registry", password=password)
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()


@pytest.mark.platform
async def test_mqtt_and_envoy_are_up(stub_platform: RunningPlatform) -> None:
    with socket.create_connection(_hostport(stub_platform.mqtt), timeout=5):
        pass
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{stub_platform.envoy_admin}/ready")
    assert (response.status_code, response.text.strip()) == (200, "LIVE")


@pytest.mark.platform
async def test_rest_is_transcoded_and_routed_to_the_service(stub_platform: RunningPlatform) -> None:
    rest = stub_platform.rest
    async with httpx.AsyncClient() as http:
        called = await http.get(f"{rest}/v1/tenants", headers={"authorization": "Bearer x"})
        unknown = await http.get(f"{rest}/v1/no-such-thing")
        preflight = await http.options(f"{rest}/v1/tenants", headers={
            "origin": "http://localhost:5173", "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type,if-match"})
        foreign = await http.options(f"{rest}/v1/tenants", headers={
            "origin": "http://evil.example", "access-control-request-method": "POST"})
        too_big = await http.post(f"{rest}/v1/tenants", content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                                  headers={"content-type": "application/json"})
    # the stub answers UNIMPLEMENTED naming the gRPC method it got: REST path -> gRPC path -> cluster
    assert called.status_code == 501, called.text
    assert called.json()["message"] == \
        "stub registry: /muster.registry.v1.TenantService/ListTenants authorization=present"
    assert unknown.status_code == 404
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "if-match" in preflight.headers["access-control-allow-headers"]
    assert "access-control-allow-origin" not in foreign.headers
    assert too_big.status_code == 413


@pytest.mark.platform
def test_admin_token_verifies_with_the_services_key(stub_platform: RunningPlatform) -> None:
    key = (stub_platform.data_dir / "secrets" / "token.key").read_bytes().strip()
    principal = TokenCodec(key).verify(stub_platform.admin_token)
    assert principal.role is Role.PLATFORM_ADMIN and principal.tenant is None


@pytest.mark.platform
async def test_killed_service_is_restarted_and_logged(stub_platform: RunningPlatform) -> None:
    old = stub_platform.pids()["services"]["registry"]
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        new = stub_platform.pids()["services"]["registry"]
        if new != old and await grpc_serving(stub_platform.grpc["registry"]):
            break
        assert time.monotonic() < deadline, stub_platform.supervisor_output()
        await asyncio.sleep(0.1)
    events = [json.loads(line) for line in stub_platform.supervisor_output().splitlines()
              if line.startswith("{")]
    restarted = [e for e in events if e["event"] == "service_restarted"]
    assert restarted and restarted[-1]["name"] == "registry"
    assert restarted[-1]["exit_code"] == -signal.SIGKILL and restarted[-1]["attempt"] >= 1


def _stream_has(stub: RunningPlatform, stream: str) -> int:
    async def count() -> int:
        password = stub.secrets()["nats"]["services"]["registry"]
        nc = await nats.connect(stub.nats, user="muster_registry", password=password)
        try:
            return int((await nc.jetstream().stream_info(stream)).state.messages)
        finally:
            await nc.close()
    return asyncio.run(count())


@pytest.mark.platform
def test_orphan_free_after_supervisor_kill_clean_stop_and_data_survives() -> None:
    """SIGKILL the supervisor: every child dies with it (parent-death signal) and PostgreSQL still
    shuts down cleanly. A second run on the same dir keeps rows and streams; SIGTERM stops cleanly."""
    with scratch_dir() as root:
        _kill_restart_stop(root / "data")


def _kill_restart_stop(data: Path) -> None:
    first = start_platform(data, services=STUB_SERVICES)
    marker, stream = uuid.uuid4().hex, f"LAUNCHER_{uuid.uuid4().hex[:8].upper()}"
    owner_password = first.secrets()["postgres"]["owner"]
    host, port = _hostport(first.postgres)

    async def write() -> None:
        conn = await asyncpg.connect(host=host, port=port, user="muster_owner", password=owner_password,
                                     database="muster")
        await conn.execute("CREATE TABLE IF NOT EXISTS public.launcher_probe (marker text)")
        await conn.execute("INSERT INTO public.launcher_probe VALUES ($1)", marker)
        await conn.close()
        password = first.secrets()["nats"]["services"]["registry"]
        nc = await nats.connect(first.nats, user="muster_registry", password=password)
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"probe.{stream}"])
        await js.publish(f"probe.{stream}", b"kept")
        await nc.close()

    try:
        asyncio.run(write())
        children = [p for p in all_pids(first.pids()) if p != first.process.pid]
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
        assert wait_gone(children) == []
        assert not (data / "postgres" / "postmaster.pid").exists()
    finally:
        if first.process.poll() is None:
            stop_platform(first)

    second = start_platform(data, services=STUB_SERVICES)
    try:
        new_host, new_port = _hostport(second.postgres)

        async def read() -> list[str]:
            conn = await asyncpg.connect(host=new_host, port=new_port, user="muster_owner",
                                         password=owner_password, database="muster")
            rows = await conn.fetch("SELECT marker FROM public.launcher_probe")
            await conn.close()
            return [r["marker"] for r in rows]

        assert marker in asyncio.run(read())
        refused = subprocess.run([sys.executable, "-m", "muster.cli.app", "up", "--data-dir", str(data),
                                  "--ephemeral-ports"], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "another muster up" in refused.stderr
        assert (data / "run" / "endpoints.json").exists()  # the refused run left the running one alone
        assert _stream_has(second, stream) == 1
        children = [p for p in all_pids(second.pids()) if p != second.process.pid]
    finally:
        code = stop_platform(second)
    assert code == 0, second.supervisor_output()
    assert [p for p in children if alive(p)] == []
    assert not (data / "postgres" / "postmaster.pid").exists()
    for leftover in ("endpoints.json", "pids.json", "muster.lock"):
        assert not (data / "run" / leftover).exists(), leftover
    socket_dir = data / "run" / "postgres"  # (a temp dir instead when this path is too long)
    assert not socket_dir.exists() or list(socket_dir.iterdir()) == []  # no socket, no socket lock
