"""What the gRPC edge tests share: a tiny generic-handler echo service (StringValue in and out, so no test
protos are needed) with its access policy, served by run_grpc_server on loopback (fixture `echo`), and
helpers for tokens and rich error details.

Test modules import the fixtures under their own names, e.g.
`from .grpc_server_support import echo as echo  # fixture`: pytest finds fixtures by name in the test
module, and the redundant alias tells linters the import is used."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from muster.runtime.auth import Role, TokenCodec
from muster.runtime.config import ServiceSettings
from muster.runtime.context import current_principal, current_request_id
from muster.runtime.errors import InvalidArgument, NotFound
from muster.runtime.grpc_server import ServiceBinding, run_grpc_server
from muster.runtime.metrics import GrpcMetrics

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


def add_echo(server: grpc.aio.Server) -> None:
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_settings(port: int, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "service_name": "test", "grpc_address": f"127.0.0.1:{port}", "metrics_address": "127.0.0.1:0",
        "database_url": "postgresql+asyncpg://unused/unused", "token_secret_file": Path("/unused"),
        "default_rpc_deadline_seconds": 0.3, "shutdown_grace_seconds": 2.0, **overrides}
    return ServiceSettings(**values)


def auth(role: Role = Role.VIEWER, *, expired: bool = False) -> tuple[tuple[str, str], ...]:
    """Call metadata with a bearer token of `role` (tenant "acme" unless platform admin), optionally expired."""
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
    port, metrics, stop, ready = free_port(), GrpcMetrics(), asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(run_grpc_server(
        server_settings(port), [ServiceBinding(SERVICE, add_echo)], access_policy=POLICY, token_codec=CODEC,
        ready=ready, stop=stop, metrics=metrics))
    await asyncio.wait_for(ready.wait(), 5)
    client = Echo(port, metrics)
    yield client
    await client.channel.close()
    stop.set()
    await asyncio.wait_for(server, 10)


def error_details(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The rich error details of a failed call by type name: ErrorInfo, BadRequest, RequestInfo."""
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
