"""Pushing desired state to devices: per device in order, never an older version after a newer one;
what was not sent (a crash after the commit, the MQTT server away) is found by the sweep and sent."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

import orjson

from muster.runtime.device_publisher import DeliveryFailed
from services.twin.pusher import DesiredPusher
from services.twin.twin import Twin, new_twin

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def twin(version: int, device: str = "d1") -> Twin:
    return replace(new_twin("acme", device, NOW), desired={"v": version}, desired_version=version)


class Store:
    def __init__(self, pending: list[Twin] | None = None) -> None:
        self.pending_twins = pending or []
        self.marked: dict[str, int] = {}

    async def pending(self, limit: int) -> list[Twin]:
        return [t for t in self.pending_twins if t.desired_version > self.marked.get(t.device_id, 0)][:limit]

    async def mark(self, pushed: Mapping[str, int]) -> None:
        for device, version in pushed.items():
            self.marked[device] = max(self.marked.get(device, 0), version)


class Broker:
    def __init__(self, delay: float = 0.0, fail: int = 0) -> None:
        self.delay = delay
        self.fail = fail
        self.retained: dict[str, int] = {}
        self.published: list[tuple[str, int]] = []

    async def __call__(self, device: str, levels: str, payload: bytes) -> None:
        await asyncio.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            raise DeliveryFailed("no PUBACK")
        version = int(orjson.loads(payload)["version"])
        assert levels == "twin/desired"
        self.published.append((device, version))
        self.retained[device] = version


async def _until(condition: object, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_pushes_of_one_device_never_go_back_in_version() -> None:
    broker, store = Broker(delay=0.05), Store()
    pusher = DesiredPusher(broker, store, sweep_interval=60)
    runner = asyncio.create_task(pusher.run())
    pusher.submit(twin(1))
    await asyncio.sleep(0.01)  # v1 is in flight
    pusher.submit(twin(3))
    pusher.submit(twin(2))  # older than the queued 3: dropped
    await _until(lambda: broker.retained.get("d1") == 3)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert broker.published == [("d1", 1), ("d1", 3)]
    assert store.marked == {"d1": 3}  # recorded on the way out


async def test_the_sweep_sends_what_was_committed_but_never_pushed() -> None:
    broker, store = Broker(), Store(pending=[twin(4, "d1"), twin(2, "d2")])
    pusher = DesiredPusher(broker, store, sweep_interval=0.05)
    runner = asyncio.create_task(pusher.run())
    await _until(lambda: store.marked == {"d1": 4, "d2": 2})
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert sorted(broker.published) == [("d1", 4), ("d2", 2)]


async def test_a_failed_push_is_retried_by_the_sweep() -> None:
    broker, store = Broker(fail=1), Store(pending=[twin(1)])
    pusher = DesiredPusher(broker, store, sweep_interval=0.05)
    runner = asyncio.create_task(pusher.run())
    pusher.submit(twin(1))
    await _until(lambda: store.marked == {"d1": 1})
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert broker.retained == {"d1": 1}
