"""Run one service process: a grpc.aio server with the shared interceptor, health and reflection,
a Prometheus endpoint and the service's background loops, until SIGTERM/SIGINT, then drain and stop.

Every service's `main` ends in `run_grpc_server`, so startup, readiness and shutdown behave the same
everywhere and the supervisor (launcher or Kubernetes) can rely on them.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc
import structlog
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from muster.runtime.auth import Role, TokenCodec
from muster.runtime.config import ServiceSettings
from muster.runtime.interceptors import MusterServerInterceptor
from muster.runtime.metrics import GrpcMetrics, MetricsServer, start_metrics_server

MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024

SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),  # a second process on the same port must fail, not share it
    ("grpc.keepalive_time_ms", 60_000),  # find dead clients (NAT, crashed pods) within ~80 s
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 30_000),  # tolerate client keepalives >= 30 s
    ("grpc.http2.max_pings_without_data", 0),
)

HEALTH_SERVICE = "grpc.health.v1.Health"

_log = structlog.stdlib.get_logger("muster.server")


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to serve, e.g. ServiceBinding(name, partial(add_XServicer_to_server, servicer))."""

    name: str  # full service name, e.g. "muster.registry.v1.DeviceService"
    add_to_server: Callable[[grpc.aio.Server], None]


class BackgroundTaskFailed(RuntimeError):
    """A background loop crashed: the process exits non-zero so its supervisor restarts it."""


def build_server(settings: ServiceSettings, *, access_policy: Mapping[str, Role | None],
                 token_codec: TokenCodec, metrics: GrpcMetrics) -> grpc.aio.Server:
    interceptor = MusterServerInterceptor(
        access_policy=access_policy, token_codec=token_codec, metrics=metrics,
        default_deadline=settings.default_rpc_deadline_seconds)
    return grpc.aio.server(interceptors=[interceptor], options=SERVER_OPTIONS)


async def run_grpc_server(
    settings: ServiceSettings,
    bindings: Sequence[ServiceBinding],
    *,
    access_policy: Mapping[str, Role | None],
    token_codec: TokenCodec,
    background: Sequence[Callable[[], Awaitable[None]]] = (),
    on_stop: Sequence[Callable[[], Awaitable[None]]] = (),
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    metrics: GrpcMetrics | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set), then drain and run `on_stop`.

    `ready` is set once the port is bound and health reports SERVING. `metrics` lets a service put its
    own collectors on the same registry/endpoint. Raises BackgroundTaskFailed if a background loop
    crashes (after shutting down cleanly), so the process exits non-zero.
    """
    metrics = metrics if metrics is not None else GrpcMetrics()
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    server = build_server(settings, access_policy=access_policy, token_codec=token_codec, metrics=metrics)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for binding in bindings:
        binding.add_to_server(server)
    names = [binding.name for binding in bindings]
    _check_access_policy(names, access_policy)
    reflection.enable_server_reflection([*names, HEALTH_SERVICE, reflection.SERVICE_NAME], server)
    server.add_insecure_port(settings.grpc_address)

    installed: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, _on_signal, signum, stop)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
            _log.warning("server.signal_handler_unavailable", signal=signum.name)

    metrics_server: MetricsServer | None = None
    tasks: list[asyncio.Task[None]] = []
    failure: BaseException | None = None
    try:
        metrics_server = start_metrics_server(settings.metrics_address, metrics.registry)
        await server.start()
        for name in names:
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        tasks = [asyncio.create_task(_run_background(job), name=_job_name(job)) for job in background]
        _log.info("server.started", grpc_address=settings.grpc_address,
                  metrics_address=f"{metrics_server.host}:{metrics_server.port}", services=names)
        if ready is not None:
            ready.set()
        failure = await _wait_for_stop(stop, tasks)
    finally:
        await _shutdown(settings, server, health, tasks, on_stop, metrics_server)
        for signum in installed:
            loop.remove_signal_handler(signum)
    if failure is not None:
        raise BackgroundTaskFailed(f"background task failed: {failure!r}") from failure


def _check_access_policy(service_names: Sequence[str], access_policy: Mapping[str, Role | None]) -> None:
    """Name served methods that have no policy entry at startup, not only when first called (they are
    refused either way: deny by default). Services unknown to the descriptor pool are skipped."""
    pool = descriptor_pool.Default()
    missing = []
    for name in service_names:
        try:
            service = pool.FindServiceByName(name)
        except KeyError:
            continue
        missing += [f"/{name}/{method.name}" for method in service.methods
                    if f"/{name}/{method.name}" not in access_policy]
    if missing:
        _log.error("server.methods_without_access_policy", methods=missing,
                   hint="these methods answer PERMISSION_DENIED until added to the access policy")


def _on_signal(signum: signal.Signals, stop: asyncio.Event) -> None:
    _log.info("server.signal", signal=signum.name)
    stop.set()


def _job_name(job: Callable[[], Awaitable[None]]) -> str:
    return getattr(job, "__qualname__", None) or repr(job)


async def _run_background(job: Callable[[], Awaitable[None]]) -> None:
    """Run one background loop; a normal return is fine (one-shot jobs), a crash is logged here."""
    try:
        await job()
    except asyncio.CancelledError:
        raise
    except Exception:
        _log.exception("server.background_task_crashed", task=_job_name(job))
        raise
    _log.info("server.background_task_finished", task=_job_name(job))


async def _wait_for_stop(stop: asyncio.Event, tasks: Sequence[asyncio.Task[None]]) -> BaseException | None:
    """Wait for a stop request or a crashed background task; returns the crash, if any."""
    stop_waiter: asyncio.Task[object] = asyncio.create_task(stop.wait(), name="muster-stop")
    pending: set[asyncio.Task[object]] = {stop_waiter, *tasks}
    try:
        while not stop.is_set():
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_waiter and not task.cancelled() and task.exception() is not None:
                    return task.exception()
        return None
    finally:
        stop_waiter.cancel()


async def _shutdown(settings: ServiceSettings, server: grpc.aio.Server, health: HealthServicer,
                    tasks: Sequence[asyncio.Task[None]], on_stop: Sequence[Callable[[], Awaitable[None]]],
                    metrics_server: MetricsServer | None) -> None:
    """Stop advertising, drain in-flight RPCs, then stop loops and release resources; never raises."""
    _log.info("server.stopping", grace_seconds=settings.shutdown_grace_seconds)
    await health.enter_graceful_shutdown()
    await server.stop(grace=settings.shutdown_grace_seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for callback in on_stop:
        try:
            await callback()
        except Exception:
            _log.exception("server.on_stop_failed", callback=_job_name(callback))
    if metrics_server is not None:
        await asyncio.to_thread(metrics_server.close)
    _log.info("server.stopped")
