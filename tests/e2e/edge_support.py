"""Helpers for the device edge end to end: registry events published straight onto JetStream (as the
registry's outbox relay does), devices as real MQTT 3.1.1 clients (aiomqtt) against NATS's MQTT port."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import aiomqtt
import nats
from google.protobuf.message import Message
from helpers import PlatformLike, secrets, service_nats_url, unique_id

from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb
from muster.runtime.bus import EVENTS_STREAM
from muster.runtime.events import nats_subject, new_event
from muster.runtime.secrets import device_secret_hash, new_device_secret, parse_device_secret_key

CONNECT_TIMEOUT = 10.0


@dataclass
class EdgeDevice:
    id: str
    tenant: str
    secret: str

    @property
    def name(self) -> str:
        return f"devices/{self.id}"


def secret_key(platform: PlatformLike) -> bytes:
    return parse_device_secret_key(str(secrets(platform)["device_secret_key"]))


async def publish_registry_event(platform: PlatformLike, tenant: str, subject: str, payload: Message) -> None:
    event = new_event(payload, source="registry", tenant=tenant, subject=subject)
    nc = await nats.connect(service_nats_url(platform))
    try:
        ack = await nc.jetstream().publish(nats_subject(event), event.SerializeToString(),
                                           headers={"Nats-Msg-Id": event.id}, stream=EVENTS_STREAM)
        assert not ack.duplicate
    finally:
        await nc.close()


async def set_state(platform: PlatformLike, device: EdgeDevice, state: pb.DeviceState.ValueType,
                    previous: pb.DeviceState.ValueType = pb.DEVICE_STATE_ACTIVE) -> None:
    payload = ev.DeviceStateChanged(device=pb.Device(name=device.name, state=state), previous_state=previous)
    await publish_registry_event(platform, device.tenant, device.name, payload)


async def set_secrets(platform: PlatformLike, device: EdgeDevice, *secrets_: str, revoke: bool = False,
                      expire: dict[str, datetime] | None = None) -> None:
    key = secret_key(platform)
    hashes = []
    for secret in secrets_:
        entry = ev.DeviceSecretHash(hmac_sha256=device_secret_hash(key, secret))
        if expire and secret in expire:
            entry.expire_time.FromDatetime(expire[secret])
        hashes.append(entry)
    payload = ev.DeviceCredentialsChanged(device=device.name, secrets=hashes, revoke_sessions=revoke)
    await publish_registry_event(platform, device.tenant, device.name, payload)


async def new_device(platform: PlatformLike, *, state: pb.DeviceState.ValueType = pb.DEVICE_STATE_ACTIVE,
                     tenant: str | None = None, device_id: str | None = None) -> EdgeDevice:
    """A device the registry announced (DeviceCreated + its first secret), as self-registration does."""
    device = EdgeDevice(id=device_id or f"dev-{uuid.uuid4().hex[:16]}", tenant=tenant or unique_id("edge"),
                        secret=new_device_secret())
    created = ev.DeviceCreated(device=pb.Device(name=device.name, state=state))
    await publish_registry_event(platform, device.tenant, device.name, created)
    await set_secrets(platform, device, device.secret)
    return device


def mqtt_address(platform: PlatformLike) -> tuple[str, int]:
    host, _, port = str(platform.endpoints["mqtt"]).rpartition(":")
    return host, int(port)


def client(platform: PlatformLike, username: str, password: str, *, client_id: str | None = None) -> aiomqtt.Client:
    host, port = mqtt_address(platform)
    return aiomqtt.Client(host, port, username=username, password=password,
                          identifier=client_id or f"{username}-{uuid.uuid4().hex[:6]}",
                          protocol=aiomqtt.ProtocolVersion.V311, timeout=CONNECT_TIMEOUT)


async def refused(platform: PlatformLike, username: str, password: str) -> bool:
    """True when the broker refuses the MQTT CONNECT (CONNACK "not authorized" or closed)."""
    try:
        async with client(platform, username, password):
            return False
    except aiomqtt.MqttError:
        return True


@asynccontextmanager
async def connected(platform: PlatformLike, device: EdgeDevice, *, secret: str | None = None,
                    within: float = CONNECT_TIMEOUT) -> AsyncIterator[aiomqtt.Client]:
    """Connect, retrying while the edge's projection catches up with the events just published."""
    deadline = time.monotonic() + within
    while True:
        mqtt = client(platform, device.id, secret or device.secret)
        try:
            await mqtt.__aenter__()
        except aiomqtt.MqttError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
            continue
        break
    try:
        yield mqtt
    finally:
        with contextlib.suppress(aiomqtt.MqttError):  # already kicked
            await mqtt.__aexit__(None, None, None)


async def wait_refused(platform: PlatformLike, device: EdgeDevice, secret: str | None = None,
                       within: float = CONNECT_TIMEOUT) -> bool:
    """True once a connect with the device's credentials is refused (the projection may lag)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await refused(platform, device.id, secret or device.secret):
            return True
        await asyncio.sleep(0.2)
    return False
