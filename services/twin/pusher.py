"""Sends every desired change to its device: `twin/desired`, retained, QoS 1, so a device that was
offline gets the latest desired state when it subscribes again.

Two ways in, one way out. Right after a desired change commits, the handler `submit`s the twin (for
latency); and a sweep looks for twins whose `pushed_version` is behind `desired_version` (for
durability: the process may die between the commit and the push, or the MQTT server may be away).
Pushes of one device are serialised and only ever move forward: the retained message must be the
newest version, so an older one is never published after a newer one (devices ignore a version they
have anyway). A push counts once the MQTT server PUBACKs it; the versions sent are recorded in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import orjson
import structlog

from muster.runtime.db import Database, Scope, is_transient
from muster.runtime.device_publisher import DeliveryFailed
from services.twin.repository import TwinRepository
from services.twin.twin import Twin

log = structlog.get_logger(__name__)

DESIRED_TOPIC = "twin/desired"
Publish = Callable[[str, str, bytes], Awaitable[None]]  # (device id, topic levels, payload): retained QoS 1


class PushStore(Protocol):
    async def pending(self, limit: int) -> list[Twin]: ...

    async def mark(self, pushed: Mapping[str, int]) -> None: ...


class SqlPushStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def pending(self, limit: int) -> list[Twin]:
        async with self._db.transaction(Scope.platform_wide()) as conn:
            return await TwinRepository(conn).pending_pushes(limit)

    async def mark(self, pushed: Mapping[str, int]) -> None:
        async with self._db.transaction(Scope.platform_wide()) as conn:
            await TwinRepository(conn).mark_pushed(pushed)


def desired_payload(twin: Twin) -> bytes:
    """`{"version": n, "state": {...}, "delta": {...}}`: delta is what the device has yet to apply."""
    return orjson.dumps({"version": twin.desired_version, "state": twin.desired,
                         "delta": twin.delta().pending_patch()})


class DesiredPusher:
    def __init__(self, publish: Publish, store: PushStore, *, sweep_interval: float = 1.0,
                 sweep_batch: int = 500, concurrency: int = 256, remember: int = 100_000) -> None:
        self._publish = publish
        self._store = store
        self._sweep_interval = sweep_interval
        self._sweep_batch = sweep_batch
        self._slots = asyncio.Semaphore(concurrency)
        self._remember = remember
        self._wanted: dict[str, Twin] = {}  # newest twin to send, per device
        self._busy: set[str] = set()  # devices with a publish in flight
        self._sent: OrderedDict[str, int] = OrderedDict()  # newest version sent, per device (bounded)
        self._acked: dict[str, int] = {}  # sent, not yet recorded
        self._work = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, twin: Twin) -> None:
        """Send this twin's desired state (unless a newer one is already sent or queued)."""
        if twin.desired_version <= max(self._sent.get(twin.device_id, 0),
                                       getattr(self._wanted.get(twin.device_id), "desired_version", 0)):
            return
        self._wanted[twin.device_id] = twin
        self._work.set()

    async def run(self) -> None:
        """Push and sweep until cancelled."""
        sweeper = asyncio.create_task(self._sweep_loop())
        recorder = asyncio.create_task(self._record_loop())
        try:
            while True:
                await self._work.wait()
                self._work.clear()
                for device_id in [d for d in self._wanted if d not in self._busy]:
                    self._start(device_id)
        finally:
            for task in (sweeper, recorder, *self._tasks):
                task.cancel()
            await asyncio.gather(sweeper, recorder, *self._tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._record()

    def _start(self, device_id: str) -> None:
        twin = self._wanted.pop(device_id)
        self._busy.add(device_id)
        task = asyncio.create_task(self._push(twin))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push(self, twin: Twin) -> None:
        device_id = twin.device_id
        try:
            if twin.desired_version > self._sent.get(device_id, 0):
                async with self._slots:
                    await self._publish(device_id, DESIRED_TOPIC, desired_payload(twin))
                self._sent[device_id] = twin.desired_version
                self._sent.move_to_end(device_id)
                if len(self._sent) > self._remember:
                    self._sent.popitem(last=False)
                self._acked[device_id] = max(self._acked.get(device_id, 0), twin.desired_version)
        except (DeliveryFailed, OSError) as exc:  # left pending: the sweep sends it again
            log.warning("twin_desired_push_failed", device=device_id, version=twin.desired_version, error=str(exc))
        finally:
            self._busy.discard(device_id)
            if device_id in self._wanted:
                self._work.set()

    async def sweep(self) -> int:
        """Submit every twin whose desired state was not sent yet; returns how many were found."""
        found = await self._store.pending(self._sweep_batch)
        for twin in found:
            sent = self._sent.get(twin.device_id, 0)
            if twin.desired_version <= sent:  # sent by this process, the record is on its way
                self._acked[twin.device_id] = max(self._acked.get(twin.device_id, 0), sent)
            else:
                self.submit(twin)
        return len(found)

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self._record()
                await self.sweep()
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("twin_push_sweep_failed")
                else:
                    log.warning("twin_push_sweep_retry", error=repr(exc))
            await asyncio.sleep(self._sweep_interval)

    async def _record_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            try:
                await self._record()
            except Exception as exc:
                log.warning("twin_push_record_retry", error=repr(exc))

    async def _record(self) -> None:
        if not self._acked:
            return
        acked, self._acked = self._acked, {}
        try:
            await self._store.mark(acked)
        except Exception:
            for device_id, version in acked.items():
                self._acked[device_id] = max(self._acked.get(device_id, 0), version)
            raise
