"""The simulator's pure parts: spreading the rate over devices, the readings, the counters and rates,
the state file that makes a rerun reuse its devices, and its MQTT connection (gmqtt)
against an in-process fake broker."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from muster.runtime.mqtt_connection import MqttConnection, MqttRefused, Will
from muster.simulator import fleet
from muster.simulator.device import Credentials
from muster.simulator.metrics import METRICS_PER_MESSAGE, Readings
from muster.simulator.schedule import Pacer, RoundRobin
from muster.simulator.stats import Stats


def test_pacer_offers_exactly_rate_times_elapsed_whatever_the_ticks() -> None:
    pacer = Pacer(rate=250.0, start=100.0)
    offered = sum(pacer.due(100.0 + t / 1000) for t in range(0, 4001, 7))  # uneven 7 ms ticks for 4 s
    assert offered == pacer.offered == int(3.997 * 250.0)
    assert pacer.due(100.0 + 3.997) == 0  # nothing more due at the same instant


def test_round_robin_spreads_the_messages_evenly_over_the_devices() -> None:
    turns = RoundRobin(list(range(7)))
    taken = Counter(turns.take(lambda _: True) for _ in range(7 * 50 + 3))
    assert set(taken) == set(range(7))
    assert max(taken.values()) - min(taken.values()) <= 1


def test_round_robin_skips_devices_that_are_not_ready_and_reports_none_when_none_is() -> None:
    turns = RoundRobin(["a", "b", "c"])
    assert [turns.take(lambda d: d != "b") for _ in range(4)] == ["a", "c", "a", "c"]
    assert turns.take(lambda _: False) is None


def test_readings_are_plausible_and_change_slowly() -> None:
    readings = Readings.seeded("dev-1")
    previous = readings.step()
    for _ in range(1000):
        current = readings.step()
        assert len(current) == METRICS_PER_MESSAGE
        assert abs(current["temperature"] - previous["temperature"]) < 1.0
        assert 0 <= current["humidity"] <= 100 and isinstance(current["door_open"], bool)
        assert current["battery"] <= previous["battery"] and isinstance(current["mode"], str)
        previous = current
    assert Readings.seeded("dev-1").step() == Readings.seeded("dev-1").step()  # seeded: reproducible
    assert Readings.seeded("dev-1").step() != Readings.seeded("dev-2").step()


def test_stats_give_interval_and_overall_rates() -> None:
    stats = Stats(start=0.0)
    stats.counters.offered, stats.counters.published, stats.counters.acked = 100, 90, 80
    first = stats.report(10.0, connected=3, devices=4)
    assert (first.offered_rate, first.published_rate, first.acked_rate) == (10.0, 9.0, 8.0)
    stats.counters.offered, stats.counters.published, stats.counters.acked = 300, 290, 280
    second = stats.report(20.0, connected=4, devices=4)
    assert (second.offered_rate, second.published_rate, second.acked_rate) == (20.0, 20.0, 20.0)
    overall = stats.report(20.0, connected=4, devices=4, overall=True)
    assert overall.acked_rate == 14.0 and overall.totals.acked == 280
    assert "connected 4/4" in overall.line() and overall.as_dict()["acked"] == 280


def test_stats_restart_zeroes_the_shared_counters_in_place() -> None:
    stats = Stats(start=0.0)
    shared = stats.counters
    shared.published = 5
    stats.restart(3.0)
    assert stats.counters is shared and shared.published == 0 and stats.start == 3.0


def test_the_state_file_keeps_registered_devices_and_a_rerun_registers_only_the_missing(tmp_path: Path) -> None:
    registered: list[str] = []

    async def register(serial: str) -> Credentials:
        registered.append(serial)
        return Credentials(id=f"id-{serial}", secret=f"secret-{serial}", serial=serial)

    state = tmp_path / "sim" / "devices.json"
    devices, new = asyncio.run(fleet.ensure(state, 3, register))
    assert new == 3 and len(devices) == 3 and oct(state.stat().st_mode & 0o777) == "0o600"
    again, new_again = asyncio.run(fleet.ensure(state, 3, register))
    assert new_again == 0 and again == devices and len(registered) == 3
    more, added = asyncio.run(fleet.ensure(state, 5, register))
    assert added == 2 and more[:3] == devices and len(fleet.load(state)) == 5
    fewer, none = asyncio.run(fleet.ensure(state, 2, register))
    assert none == 0 and fewer == devices[:2]


def test_a_failed_registration_keeps_the_devices_registered_before_it(tmp_path: Path) -> None:
    async def register(serial: str) -> Credentials:
        if serial.endswith("2"):
            raise RuntimeError("refused")
        return Credentials(id=f"id-{serial}", secret="s", serial=serial)

    state = tmp_path / "devices.json"
    try:
        asyncio.run(fleet.ensure(state, 4, register))
    except RuntimeError:
        pass
    else:
        raise AssertionError("the failure was swallowed")
    assert len(fleet.load(state)) == 3


class _FakeBroker:
    """Just enough MQTT 3.1.1 server: records the CONNECT, answers CONNACK (with `return_code`), SUBACK and
    a PUBACK for each QoS 1 PUBLISH except those whose payload is b"hold"."""

    def __init__(self, return_code: int = 0) -> None:
        self.return_code = return_code
        self.connect: bytes = b""
        self.published: list[tuple[str, bytes]] = []
        self.disconnected = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                first = (await reader.readexactly(1))[0]
                length, shift = 0, 0
                while (byte := (await reader.readexactly(1))[0]) & 0x80:
                    length |= (byte & 0x7F) << shift
                    shift += 7
                body = await reader.readexactly(length | (byte << shift))
                kind = first & 0xF0
                if kind == 0x10:
                    self.connect = body
                    writer.write(bytes([0x20, 2, 0, self.return_code]))
                elif kind == 0x80:
                    writer.write(bytes([0x90, 3]) + body[:2] + b"\x01")
                elif kind == 0x30:
                    (topic_length,) = struct.unpack("!H", body[:2])
                    packet_id, payload = body[2 + topic_length:4 + topic_length], body[4 + topic_length:]
                    self.published.append((body[2:2 + topic_length].decode(), payload))
                    if payload != b"hold":
                        writer.write(bytes([0x40, 2]) + packet_id)
                elif kind == 0xE0:
                    self.disconnected.set()
        writer.close()


async def _with_broker(broker: _FakeBroker, body: Callable[[int], Awaitable[None]]) -> None:
    server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    async with server:
        await body(server.sockets[0].getsockname()[1])


def test_a_connection_sends_credentials_and_will_over_mqtt_311_and_reports_each_puback_once() -> None:
    broker, acked = _FakeBroker(), list[int]()

    async def scenario(port: int) -> None:
        connection = MqttConnection(acked.append, lambda *_: None)
        await connection.connect("127.0.0.1", port, "c1", "dev", "pw",
                                 will=Will("t/status", b'{"online": false}'), connect_timeout=5)
        first = connection.publish("t/telemetry", b"one")
        held = connection.publish("t/telemetry", b"hold")
        second = connection.publish("t/telemetry", b"two")
        for _ in range(200):
            if len(acked) == 2:
                break
            await asyncio.sleep(0.01)
        assert acked == [first, second] and connection.in_flight == {held}
        assert len({first, held, second}) == 3
        await connection.disconnect()
        await asyncio.wait_for(broker.disconnected.wait(), 5)
        assert connection.closed.is_set()

    asyncio.run(_with_broker(broker, scenario))
    assert broker.connect[:7] == b"\x00\x04MQTT\x04"  # protocol level 4: MQTT 3.1.1
    assert broker.connect[7] == 0b11001110  # username, password, will QoS 1, will flag, clean session
    assert broker.connect.endswith(b"\x00\x03dev\x00\x02pw") and b'\x00\x11{"online": false}' in broker.connect
    assert [t for t, _ in broker.published] == ["t/telemetry"] * 3


def test_a_refused_connect_raises_mqtt_refused_and_leaves_the_connection_unusable() -> None:
    async def scenario(port: int) -> None:
        connection = MqttConnection(lambda _: None, lambda *_: None)
        with pytest.raises(MqttRefused):
            await connection.connect("127.0.0.1", port, "c1", "dev", "wrong", connect_timeout=5)
        with pytest.raises(ConnectionError):
            connection.publish("t/telemetry", b"x")

    asyncio.run(_with_broker(_FakeBroker(return_code=5), scenario))
