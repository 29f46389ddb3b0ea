"""The shared gRPC edge's built-in services (reflection, health) and its lifecycle: draining in-flight
calls on SIGTERM, stopping with an error when a background task crashes."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from muster.runtime.grpc_server import BackgroundTaskFailed, ServiceBinding, run_grpc_server
from muster.runtime.interceptors import REQUEST_ID_KEY
from muster.runtime.metrics import GrpcMetrics

from .grpc_server_support import CODEC, POLICY, SERVICE, Echo, StringValue, add_echo, free_port, server_settings
from .grpc_server_support import echo as echo  # fixture


async def test_reflection_is_public_and_lists_services(echo: Echo) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(echo.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    replies = [reply async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5)]
    names = {service.name for service in replies[0].list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_health_is_public_serving_and_watch_outlives_the_default_deadline(echo: Echo) -> None:
    stub = health_pb2_grpc.HealthStub(echo.channel)
    for name in ("", SERVICE):
        check = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert (await check).status == health_pb2.HealthCheckResponse.SERVING
        # Generated stubs register their methods with add_registered_method_handlers: still intercepted.
        assert REQUEST_ID_KEY in dict(await check.trailing_metadata() or ())
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    try:
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        await asyncio.sleep(0.4)  # longer than the 0.3 s default deadline
        assert not watch.done()
    finally:
        watch.cancel()


async def test_sigterm_drains_in_flight_calls_then_stops() -> None:
    port, ready, events = free_port(), asyncio.Event(), list[str]()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            events.append("background cancelled")

    async def closed() -> None:
        events.append("on_stop")

    server = asyncio.create_task(run_grpc_server(
        server_settings(port, shutdown_grace_seconds=1.0), [ServiceBinding(SERVICE, add_echo)],
        access_policy=POLICY, token_codec=CODEC, background=[forever], on_stop=[closed], ready=ready))
    await asyncio.wait_for(ready.wait(), 5)
    client = Echo(port, GrpcMetrics())
    try:
        watch = health_pb2_grpc.HealthStub(client.channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        in_flight = asyncio.ensure_future(client.unary("Sleep")(StringValue(value="0.3"), timeout=5))
        await asyncio.sleep(0.05)  # let the call reach the handler
        os.kill(os.getpid(), signal.SIGTERM)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert (await in_flight).value == "slept"
        await asyncio.wait_for(server, 5)
        assert events == ["background cancelled", "on_stop"]
    finally:
        watch.cancel()
        await client.channel.close()


async def test_crashed_background_task_stops_the_server_with_an_error() -> None:
    stopped = asyncio.Event()

    async def crash() -> None:
        raise ValueError("lost the NATS connection")

    async def closed() -> None:
        stopped.set()

    with pytest.raises(BackgroundTaskFailed) as info:
        await asyncio.wait_for(run_grpc_server(
            server_settings(free_port()), [], access_policy={}, token_codec=CODEC,
            background=[crash], on_stop=[closed]), 5)
    assert isinstance(info.value.__cause__, ValueError) and stopped.is_set()
