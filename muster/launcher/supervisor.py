"""Keeps each service process running: start it, wait until its gRPC health check says SERVING,
and restart it with exponential backoff when it dies, so one crash never takes the platform down."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from muster.launcher.process import Child, ChildSpec, spawn

log = structlog.get_logger("muster.launcher")


@dataclass(frozen=True)
class Backoff:
    """1s, 2s, 4s … up to `maximum`; a run of at least `reset_after` seconds counts as healthy."""

    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def delay(self, attempt: int) -> float:
        return float(min(self.maximum, self.initial * 2 ** max(0, attempt - 1)))


class ServiceStartError(RuntimeError):
    """A service exited or never became healthy during startup."""


async def grpc_serving(address: str, service: str = "", rpc_deadline: float = 1.0) -> bool:
    """The standard grpc.health.v1 check; any error (not listening yet, …) is 'not serving'."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=rpc_deadline)
        except grpc.aio.AioRpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


class ServiceRunner:
    """One supervised service. `on_change` is called whenever its pid changes (pids.json)."""

    def __init__(self, name: str, child_spec: ChildSpec, grpc_address: str, *,
                 backoff: Backoff = Backoff(), on_change: Callable[[], None] = lambda: None) -> None:
        self.name = name
        self.child_spec = child_spec
        self.grpc_address = grpc_address
        self.backoff = backoff
        self.restarts = 0
        self._on_change = on_change
        self._child: Child | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    async def start(self, ready_within: float = 60.0) -> None:
        """Spawn and wait for SERVING; raise with the log tail if it dies or times out first."""
        child = self._child = await spawn(self.child_spec)
        self._on_change()
        exited = asyncio.ensure_future(child.process.wait())
        deadline = time.monotonic() + ready_within
        try:
            while not await grpc_serving(self.grpc_address):
                if exited.done():
                    raise ServiceStartError(
                        f"service {self.name} exited with code {exited.result()} while starting; "
                        f"last lines of {self.child_spec.log_path}:\n{child.log_tail()}")
                if time.monotonic() > deadline:
                    await child.stop()
                    raise ServiceStartError(
                        f"service {self.name} was not SERVING on {self.grpc_address} within {ready_within:.0f}s; "
                        f"last lines of {self.child_spec.log_path}:\n{child.log_tail()}")
                await asyncio.sleep(0.1)
        finally:
            if not exited.done():
                exited.cancel()
        log.info("service_ready", name=self.name, pid=child.pid, grpc=self.grpc_address)
        self._watch = asyncio.create_task(self._keep_running(), name=f"supervise-{self.name}")

    async def _keep_running(self) -> None:
        attempt = 0
        while not self._stopping:
            child = self._child
            assert child is not None
            code = await child.process.wait()
            if self._stopping:
                return
            ran = time.monotonic() - child.started_at
            attempt = 1 if ran >= self.backoff.reset_after else attempt + 1
            delay = self.backoff.delay(attempt)
            log.error("service_exited", name=self.name, pid=child.pid, exit_code=code, ran_seconds=round(ran, 1),
                      restart_in_seconds=delay, log=str(self.child_spec.log_path))
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                self._child = await spawn(self.child_spec)
            except OSError as exc:
                log.error("service_restart_failed", name=self.name, error=str(exc), attempt=attempt)
                child.started_at = time.monotonic()  # the next exit is immediate: keep backing off
                continue
            self.restarts += 1
            self._on_change()
            log.warning("service_restarted", name=self.name, exit_code=code, attempt=attempt,
                        pid=self._child.pid)

    async def stop(self) -> None:
        """SIGTERM, the child's grace period, then SIGKILL; no restart after this."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._child is not None:
            code = await self._child.stop()
            log.info("service_stopped", name=self.name, exit_code=code)
