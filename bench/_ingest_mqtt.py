"""bench/ingest.py's MQTT side: bench devices registered through RegisterDevice (the simulator's fleet
registration), the simulator engine as the publisher process, and a probe device that publishes over MQTT
QoS 1 through the same edge (auth callout) as the load."""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

from bench._registry_config import RPC_TIMEOUT, bearer, log, loopback
from bench._registry_fixture import bench_tenant
from muster.registry.v1 import provisioning_resources_pb2 as ppb
from muster.registry.v1 import provisioning_service_pb2 as prov
from muster.registry.v1 import provisioning_service_pb2_grpc as prov_grpc
from muster.runtime.mqtt_connection import MqttConnection
from muster.simulator import fleet
from muster.simulator.device import Credentials, topic
from muster.simulator.engine import RunOptions, simulate


@dataclass(frozen=True)
class MqttFleet:
    tenant: str
    token: str  # tenant admin token (queries)
    devices: list[Credentials]  # the load
    probe: Credentials  # the latency probe's own device


async def register_fleet(grpc_target: str, admin_token: str, devices: int) -> MqttFleet:
    """A fresh tenant, a provisioning token created with its admin token, and devices + 1 registered as a
    device does it (RegisterDevice, no operator token) through the simulator's fleet registration."""
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        tenant, token = await bench_tenant(channel, admin_token, "bench/ingest.py")
        stub = prov_grpc.ProvisioningServiceStub(channel)
        created = await stub.CreateProvisioningToken(
            prov.CreateProvisioningTokenRequest(provisioning_token=ppb.ProvisioningToken(
                display_name="bench/ingest.py", max_uses=devices + 1)),
            metadata=bearer(token), timeout=RPC_TIMEOUT)

        async def register(serial: str) -> Credentials:
            response = await stub.RegisterDevice(
                prov.RegisterDeviceRequest(provisioning_token=created.secret, serial=serial), timeout=RPC_TIMEOUT)
            return Credentials(id=response.device_id, secret=response.device_secret, serial=serial)

        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="muster-bench-fleet-") as scratch:  # secrets: gone afterwards
            registered, _ = await fleet.ensure(Path(scratch) / "devices.json", devices + 1, register)
        log(f"tenant {tenant}: {len(registered)} devices registered in {time.monotonic() - started:.1f}s")
    return MqttFleet(tenant=tenant, token=token, devices=registered[1:], probe=registered[0])


def mqtt_address(endpoints: dict[str, Any]) -> tuple[str, int]:
    host, _, port = loopback(str(endpoints["mqtt"])).rpartition(":")
    return host, int(port)


def _simulator_main(conn: Connection, devices: list[Credentials], options: RunOptions) -> None:
    """Sends each interim report's `seconds` (time since publishing started: the parent dates the window
    from the first), then the final report."""
    async def main() -> dict[str, Any]:
        report = await simulate(devices, options, asyncio.Event(),
                                lambda interim: conn.send({"interim": True, "seconds": interim.seconds}))
        return {**report.as_dict(), "seconds": report.seconds}

    conn.send(asyncio.run(main()))


def start_simulator(address: tuple[str, int], devices: list[Credentials], *, rate: float,
                    duration: float) -> tuple[Any, Connection]:
    """The simulator engine in its own process (it costs ~0.24 ms CPU per message: kept off the measuring
    loop). It connects every device first, then publishes for `duration`; its final report comes back
    on the pipe (published/acked counted after the PUBACKs settled)."""
    options = RunOptions(host=address[0], port=address[1], rate=rate, duration=duration, report_every=0.5)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_simulator_main, args=(child, devices, options), daemon=True)
    process.start()
    return process, parent


class MqttProbe:
    """One device connected over MQTT: `publish(k)` sends probe k as telemetry (QoS 1) and waits for its
    PUBACK, so the measured time starts where a device's would."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._acked: dict[int, asyncio.Event] = {}
        self._connection = MqttConnection(self._on_ack, lambda _topic, _payload: None)

    def _on_ack(self, packet_id: int) -> None:
        if (event := self._acked.get(packet_id)) is not None:
            event.set()

    async def connect(self, address: tuple[str, int], within: float = 30.0) -> None:
        """Retry until the edge knows the device (its projection learns it from the registry's events)."""
        deadline = time.monotonic() + within
        while True:
            try:
                await self._connection.connect(*address, f"{self.credentials.id}-probe", self.credentials.id,
                                               self.credentials.secret)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                self._connection = MqttConnection(self._on_ack, lambda _topic, _payload: None)
                await asyncio.sleep(0.5)

    def body(self, k: int) -> bytes:
        return b'{"metrics": {"probe": %d}}' % k

    async def publish(self, k: int) -> None:
        packet_id = self._connection.publish(topic(self.credentials.id, "telemetry"), self.body(k))
        acked = self._acked.setdefault(packet_id, asyncio.Event())
        try:
            await asyncio.wait_for(acked.wait(), 10.0)
        finally:
            self._acked.pop(packet_id, None)

    async def close(self) -> None:
        await self._connection.disconnect()
