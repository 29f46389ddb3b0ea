"""The shared gRPC edge, end to end over loopback: a real grpc.aio server from run_grpc_server with a tiny
generic-handler servicer (StringValue in and out, so no test protos are needed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import urllib.request
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from muster.runtime.auth import Role, TokenCodec
from muster.runtime.config import ServiceSettings
from muster.runtime.context import current_principal, current_request_id
from muster.runtime.errors import InvalidArgument, NotFound
from muster.runtime.grpc_server import (
    BackgroundTaskFailed,
    ServiceBinding,
    _check_access_policy,
    run_grpc_server,
)
from muster.runtime.interceptors import REQUEST_ID_KEY
from muster.runtime.logging import configure_logging
from muster.runtime.metrics import GrpcMetrics, start_metrics_server

SERVICE = "muster.test.v1.EchoService"
StringValue = wrappers_pb2.StringValue
CODEC = TokenCodec(b"k" * 32)
POLICY: dict[str, Role | None] = {
    f"/{SERVICE}/Whoami": Role.VIEWER,
    f"/{SERVICE}/Operate": Role.OPERATOR,
    f"/{SERVICE}/Public": None,
    f"/{SERVICE}/Invalid": Role.VIEWER,
    f"/{SERVICE}/Boom": Role.VIEWER,
    f"/{SERVICE}/Sleep": None,
    f"/{SERVICE}/SelfAbort": None,
    f"/{SERVICE}/Count": Role.VIEWER,
    f"/{SERVICE}/CountThenFail": Role.VIEWER,
    f"/{SERVICE}/SlowStream": None,
}  # "Unlisted" is served but deliberately missing


def _whoami_text() -> str:
    p = current_principal()
    return f"{p.subject}|{p.tenant}|{p.role.name}|{current_request_id()}"


async def _whoami(_request: StringValue, _context: Any) -> StringValue:
    return StringValue(value=_whoami_text())


async def _ok(request: StringValue, _context: Any) -> StringValue:
    return StringValue(value=request.value)


async def _invalid(_request: StringValue, _context: Any) -> StringValue:
    raise InvalidArgument.field("device.name", "must not be empty")


async def _boom(_request: StringValue, _context: Any) -> StringValue:
    raise RuntimeError("password=hunter2")


async def _sleep(request: StringValue, _context: Any) -> StringValue:
    await asyncio.sleep(float(request.value))
    return StringValue(value="slept")


async def _self_abort(_request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> StringValue:
    await context.abort(grpc.StatusCode.NOT_FOUND, "gone")


async def _count(request: StringValue, _context: Any) -> AsyncIterator[StringValue]:
    for i in range(int(request.value)):
        yield StringValue(value=f"{i}:{current_principal().subject}")


async def _count_then_fail(_request: StringValue, _context: Any) -> AsyncIterator[StringValue]:
    yield StringValue(value="first")
    raise NotFound("the rest is gone", metadata={"resource": "x"})


async def _slow_stream(_request: StringValue, _context: Any) -> AsyncIterator[StringValue]:
    yield StringValue(value="first")
    await asyncio.sleep(2)
    yield StringValue(value="too late")


def _add_echo(server: grpc.aio.Server) -> None:
    def unary(fn: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(fn, StringValue.FromString, StringValue.SerializeToString)

    def stream(fn: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_stream_rpc_method_handler(fn, StringValue.FromString, StringValue.SerializeToString)

    handlers = {
        "Whoami": unary(_whoami), "Operate": unary(_ok), "Public": unary(_ok), "Unlisted": unary(_ok),
        "Invalid": unary(_invalid), "Boom": unary(_boom), "Sleep": unary(_sleep),
        "SelfAbort": unary(_self_abort), "Count": stream(_count), "CountThenFail": stream(_count_then_fail),
        "SlowStream": stream(_slow_stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(port: int, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "service_name": "test", "grpc_address": f"127.0.0.1:{port}", "metrics_address": "127.0.0.1:0",
        "database_url": "postgresql+asyncpg://unused/unused", "token_secret_file": Path("/unused"),
        "default_rpc_deadline_seconds": 0.3, "shutdown_grace_seconds": 2.0, **overrides}
    return ServiceSettings(**values)


def _token(role: Role = Role.VIEWER, *, expired: bool = False) -> tuple[tuple[str, str], ...]:
    now = datetime.now(UTC) - (timedelta(hours=2) if expired else timedelta())
    tenant = None if role is Role.PLATFORM_ADMIN else "acme"
    token, _ = CODEC.issue(subject="ada", role=role, tenant=tenant, ttl=timedelta(minutes=5), now=now)
    return (("authorization", f"Bearer {token}"),)


class Echo:
    """A running server plus a client channel to it."""

    def __init__(self, port: int, metrics: GrpcMetrics) -> None:
        self.port, self.metrics = port, metrics
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    def unary(self, name: str) -> grpc.aio.UnaryUnaryMultiCallable[StringValue, StringValue]:
        return self.channel.unary_unary(f"/{SERVICE}/{name}", request_serializer=StringValue.SerializeToString,
                                        response_deserializer=StringValue.FromString)

    def stream(self, name: str) -> grpc.aio.UnaryStreamMultiCallable[StringValue, StringValue]:
        return self.channel.unary_stream(f"/{SERVICE}/{name}", request_serializer=StringValue.SerializeToString,
                                         response_deserializer=StringValue.FromString)

    async def fail(self, name: str, metadata: Sequence[tuple[str, str]] = (), value: str = "",
                   deadline: float | None = 5) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await self.unary(name)(StringValue(value=value), metadata=tuple(metadata), timeout=deadline)
        return info.value


@pytest.fixture(scope="module")
async def echo() -> AsyncIterator[Echo]:
    port, metrics, stop, ready = _free_port(), GrpcMetrics(), asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(run_grpc_server(
        _settings(port), [ServiceBinding(SERVICE, _add_echo)], access_policy=POLICY, token_codec=CODEC,
        ready=ready, stop=stop, metrics=metrics))
    await asyncio.wait_for(ready.wait(), 5)
    client = Echo(port, metrics)
    yield client
    await client.channel.close()
    stop.set()
    await asyncio.wait_for(server, 10)


def _details(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    status = rpc_status.from_call(error)
    assert isinstance(status, status_pb2.Status)
    found: dict[str, Any] = {}
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RequestInfo):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found[kind.__name__] = message
    return found


async def test_no_token_is_unauthenticated(echo: Echo) -> None:
    error = await echo.fail("Whoami")
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in (error.details() or "")
    assert _details(error)["ErrorInfo"].reason == "TOKEN_MISSING"


@pytest.mark.parametrize(("metadata", "reason"), [
    (_token(expired=True), "TOKEN_EXPIRED"),
    ((("authorization", "Bearer not-a-jwt"),), "TOKEN_INVALID"),
    ((("authorization", "Basic abc"),), "TOKEN_INVALID"),
])
async def test_bad_token_is_unauthenticated(echo: Echo, metadata: Sequence[tuple[str, str]],
                                            reason: str) -> None:
    error = await echo.fail("Whoami", metadata)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    info = _details(error)["ErrorInfo"]
    assert (info.reason, info.domain) == (reason, "muster.dev")


async def test_role_too_low_is_permission_denied(echo: Echo) -> None:
    error = await echo.fail("Operate", _token(Role.VIEWER))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    info = _details(error)["ErrorInfo"]
    assert info.reason == "ROLE_TOO_LOW" and dict(info.metadata) == {"required": "OPERATOR", "actual": "VIEWER"}
    assert (await echo.unary("Operate")(StringValue(value="x"), metadata=_token(Role.OPERATOR))).value == "x"


async def test_method_missing_from_policy_is_denied(echo: Echo) -> None:
    error = await echo.fail("Unlisted", _token(Role.PLATFORM_ADMIN))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert _details(error)["ErrorInfo"].reason == "NO_ACCESS_POLICY"


async def test_public_method_needs_no_token(echo: Echo) -> None:
    assert (await echo.unary("Public")(StringValue(value="hi"), timeout=5)).value == "hi"


async def test_invalid_argument_carries_field_violations(echo: Echo) -> None:
    error = await echo.fail("Invalid", _token())
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "device.name: must not be empty"
    details = _details(error)
    violation = details["BadRequest"].field_violations[0]
    assert (violation.field, violation.description) == ("device.name", "must not be empty")
    assert details["ErrorInfo"].reason == "INVALID_ARGUMENT"
    assert details["RequestInfo"].request_id == dict(await _initial(error))[REQUEST_ID_KEY]


async def _initial(error: grpc.aio.AioRpcError) -> Sequence[tuple[str, str | bytes]]:
    return tuple(error.initial_metadata() or ())


async def test_unexpected_exception_is_internal_without_its_text(echo: Echo) -> None:
    error = await echo.fail("Boom", (*_token(), (REQUEST_ID_KEY, "req-boom-1")))
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == "internal error; request id req-boom-1"
    assert "hunter2" not in str(error) and "RuntimeError" not in str(error)


async def test_request_id_is_echoed_or_generated(echo: Echo) -> None:
    call = echo.unary("Whoami")(StringValue(), metadata=(*_token(), (REQUEST_ID_KEY, "abc-123")), timeout=5)
    assert (await call).value == "ada|acme|VIEWER|abc-123"
    assert (REQUEST_ID_KEY, "abc-123") in tuple(await call.initial_metadata() or ())

    call = echo.unary("Whoami")(StringValue(), metadata=(*_token(), (REQUEST_ID_KEY, "not a valid id!")), timeout=5)
    generated = dict(await call.initial_metadata() or ())[REQUEST_ID_KEY]
    assert isinstance(generated, str) and len(generated) == 32 and generated != "not a valid id!"
    assert (await call).value.endswith(f"|{generated}")


async def test_missing_client_deadline_gets_the_default(echo: Echo) -> None:
    error = await echo.fail("Sleep", value="2", deadline=None)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert _details(error)["ErrorInfo"].reason == "DEADLINE_EXCEEDED"
    # A client deadline longer than the default is honoured.
    assert (await echo.unary("Sleep")(StringValue(value="0.4"), timeout=5)).value == "slept"


async def test_missing_client_deadline_bounds_streams_too(echo: Echo) -> None:
    call = echo.stream("SlowStream")(StringValue())
    assert [item async for item in _take(call, 1)] == ["first"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def _take(call: Any, n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield (await call.read()).value


async def test_reflection_is_public_and_lists_services(echo: Echo) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(echo.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    replies = [reply async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5)]
    names = {service.name for service in replies[0].list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_handler_abort_passes_through(echo: Echo) -> None:
    error = await echo.fail("SelfAbort")
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "gone")
    assert echo.metrics.registry.get_sample_value(
        "muster_grpc_server_requests_total", {"service": SERVICE, "method": "SelfAbort", "code": "NOT_FOUND"}) == 1


async def test_server_stream_is_authenticated_and_mapped(echo: Echo) -> None:
    items = [item.value async for item in echo.stream("Count")(StringValue(value="3"), metadata=_token())]
    assert items == ["0:ada", "1:ada", "2:ada"]

    with pytest.raises(grpc.aio.AioRpcError) as info:
        [item async for item in echo.stream("Count")(StringValue(value="3"))]
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED

    call = echo.stream("CountThenFail")(StringValue(), metadata=_token(), timeout=5)
    first = await call.read()
    assert isinstance(first, StringValue) and first.value == "first"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert dict(_details(info.value)["ErrorInfo"].metadata) == {"resource": "x"}


async def test_metrics_count_calls_by_code(echo: Echo) -> None:
    def count(method: str, code: str) -> float:
        return echo.metrics.registry.get_sample_value(
            "muster_grpc_server_requests_total", {"service": SERVICE, "method": method, "code": code}) or 0

    ok, internal = count("Public", "OK"), count("Boom", "INTERNAL")
    await echo.unary("Public")(StringValue(value="x"), timeout=5)
    await echo.fail("Boom", _token())
    assert (count("Public", "OK"), count("Boom", "INTERNAL")) == (ok + 1, internal + 1)
    assert echo.metrics.registry.get_sample_value(
        "muster_grpc_server_request_duration_seconds_count", {"service": SERVICE, "method": "Public"})


async def test_access_log_line(echo: Echo) -> None:
    with structlog.testing.capture_logs() as logs:
        await echo.fail("Boom", (*_token(), (REQUEST_ID_KEY, "req-log")))
    rpc = [entry for entry in logs if entry["event"] == "rpc"]
    assert len(rpc) == 1
    assert rpc[0]["code"] == "INTERNAL" and rpc[0]["log_level"] == "warning"
    assert rpc[0]["duration_ms"] >= 0 and rpc[0]["peer"].startswith("ipv4:127.0.0.1")
    crash = [entry for entry in logs if entry["event"] == "rpc.unhandled_exception"]
    assert crash and isinstance(crash[0]["exc_info"], RuntimeError)


async def test_health_is_public_serving_and_watch_outlives_the_default_deadline(echo: Echo) -> None:
    stub = health_pb2_grpc.HealthStub(echo.channel)
    for name in ("", SERVICE):
        check = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert (await check).status == health_pb2.HealthCheckResponse.SERVING
        # Generated stubs register their methods with add_registered_method_handlers: still intercepted.
        assert REQUEST_ID_KEY in dict(await check.initial_metadata() or ())
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    try:
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        await asyncio.sleep(0.4)  # longer than the 0.3 s default deadline
        assert not watch.done()
    finally:
        watch.cancel()


async def test_sigterm_drains_in_flight_calls_then_stops() -> None:
    port, ready, events = _free_port(), asyncio.Event(), list[str]()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            events.append("background cancelled")

    async def closed() -> None:
        events.append("on_stop")

    server = asyncio.create_task(run_grpc_server(
        _settings(port, shutdown_grace_seconds=1.0), [ServiceBinding(SERVICE, _add_echo)],
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
            _settings(_free_port()), [], access_policy={}, token_codec=CODEC,
            background=[crash], on_stop=[closed]), 5)
    assert isinstance(info.value.__cause__, ValueError) and stopped.is_set()


def test_methods_missing_from_the_policy_are_named_at_startup() -> None:
    from muster.registry.v1 import device_service_pb2  # registers the service in the descriptor pool

    name = device_service_pb2.DESCRIPTOR.services_by_name["DeviceService"].full_name
    with structlog.testing.capture_logs() as logs:
        _check_access_policy([name, SERVICE], {f"/{name}/GetDevice": Role.VIEWER})
    [entry] = [entry for entry in logs if entry["event"] == "server.methods_without_access_policy"]
    assert f"/{name}/CreateDevice" in entry["methods"] and f"/{name}/GetDevice" not in entry["methods"]


async def test_metrics_endpoint_serves_the_registry() -> None:
    metrics = GrpcMetrics()
    metrics.observe(f"/{SERVICE}/Public", "OK", 0.01)
    server = start_metrics_server("127.0.0.1:0", metrics.registry)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    finally:
        await asyncio.to_thread(server.close)
    assert f'muster_grpc_server_requests_total{{code="OK",method="Public",service="{SERVICE}"}} 1.0' in body


def test_configure_logging_renders_json_with_context(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        configure_logging("registry", "info", "json")
        configure_logging("registry", "info", "json")  # idempotent: still one line per record
        with structlog.contextvars.bound_contextvars(request_id="r1"):
            structlog.stdlib.get_logger("t").info("hello", n=1)
            logging.getLogger("grpc.test").warning("from stdlib %s", "grpc")
            structlog.stdlib.get_logger("t").debug("hidden")
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)
        structlog.reset_defaults()
    assert [line["event"] for line in lines] == ["hello", "from stdlib grpc"]
    assert all(line["service"] == "registry" and line["request_id"] == "r1" for line in lines)
    assert lines[0]["level"] == "info" and lines[1]["level"] == "warning" and "timestamp" in lines[0]
    with contextlib.suppress(ValueError), pytest.raises(ValueError):
        configure_logging("registry", "loud", "json")
