"""The gRPC edge every service shares: request id, authentication and access policy, a default deadline,
error mapping to rich `google.rpc.Status`, an access log line and metrics, for all four handler kinds.

One interceptor wraps each method handler, so every concern sees the same call state (request id,
principal, final code) and the order is fixed: a denied call is still logged, counted and carries
its request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, NoReturn, cast

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from muster.runtime.auth import Principal, Role, TokenCodec
from muster.runtime.context import set_principal, set_request_id
from muster.runtime.errors import (
    ERROR_DOMAIN,
    InvalidArgument,
    MusterError,
    PermissionDenied,
    Unauthenticated,
    status_code_for,
)
from muster.runtime.metrics import GrpcMetrics

AccessPolicy = Mapping[str, Role | None]
"""Full method name ("/pkg.Service/Method") -> minimum role, or PUBLIC."""

PUBLIC: Final = None
"""Access policy entry of a method anyone may call without an operator token (the method authenticates
its caller itself, e.g. a device registering with a provisioning token). No token is read or checked:
the call has no principal. Methods missing from the policy are still refused."""

REQUEST_ID_KEY = "x-request-id"
INFRASTRUCTURE_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Always public, exempt from the default deadline (Watch and reflection streams are long-lived) and
logged at debug level (probes would drown the access log)."""

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
_LOUD_CODES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})

_log = structlog.stdlib.get_logger("muster.rpc")


def is_infrastructure(method: str) -> bool:
    return method.startswith(INFRASTRUCTURE_PREFIXES)


def rich_status(code: grpc.StatusCode, message: str, *, reason: str, request_id: str,
                metadata: Mapping[str, str] | None = None,
                violations: Sequence[tuple[str, str]] = ()) -> grpc.Status:
    """A grpc.Status carrying google.rpc.Status details: ErrorInfo, RequestInfo, BadRequest if any."""
    details: list[Any] = [
        error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata or {})),
        error_details_pb2.RequestInfo(request_id=request_id),
    ]
    if violations:
        details.append(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in violations]))
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    status = rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=packed))
    # An abort replaces the call's trailing metadata: keep the request id the call would have carried.
    return cast(grpc.Status, status._replace(
        trailing_metadata=(*status.trailing_metadata, (REQUEST_ID_KEY, request_id))))


def status_for_error(error: MusterError, request_id: str) -> grpc.Status:
    violations = ([(v.field, v.description) for v in error.violations]
                  if isinstance(error, InvalidArgument) else [])
    return rich_status(status_code_for(error), error.message, reason=error.reason, request_id=request_id,
                       metadata=error.metadata, violations=violations)


def _status_code(value: object) -> grpc.StatusCode:
    """context.code() is a grpc.StatusCode, a core int, or None depending on how it was set."""
    if isinstance(value, grpc.StatusCode):
        return value
    if isinstance(value, int):
        return _CODES_BY_NUMBER.get(value, grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.OK


def _metadata_values(context: grpc.aio.ServicerContext[Any, Any], *keys: str) -> list[str | None]:
    """The first value of each key, in one pass (each invocation_metadata() call copies the metadata)."""
    found: list[str | None] = [None] * len(keys)
    for item_key, value in context.invocation_metadata() or ():
        if item_key in keys:
            i = keys.index(item_key)
            if found[i] is None:
                found[i] = value.decode("latin-1") if isinstance(value, bytes) else value
    return found


class _Call:
    """State of one RPC as it passes through the interceptor."""

    def __init__(self, owner: MusterServerInterceptor, method: str,
                 context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.owner = owner
        self.method = method
        self.context = context
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK
        self.request_id = ""
        self.principal: Principal | None = None
        self.deadline_at: float | None = None
        self._timeout: asyncio.Timeout | None = None

    async def begin(self) -> None:
        """Request id and log context first, so even a refused call is traceable; then auth."""
        sent, authorization = _metadata_values(self.context, REQUEST_ID_KEY, "authorization")
        # Unique, not secret: 128 random bits without uuid4's os.urandom call.
        self.request_id = sent if sent and _REQUEST_ID_RE.fullmatch(sent) else f"{random.getrandbits(128):032x}"
        set_request_id(self.request_id)
        if not is_infrastructure(self.method) and self.context.time_remaining() is None:
            loop = asyncio.get_running_loop()
            self.deadline_at = loop.time() + self.owner.default_deadline
        # In the trailers, not the initial metadata: sending initial metadata early is one more
        # batch through gRPC's core per call (~10% of a GetDevice's CPU); Envoy turns a unary call's
        # trailers into response headers, so REST callers still get it as a header.
        self.context.set_trailing_metadata(((REQUEST_ID_KEY, self.request_id),))
        try:
            self._authorize(authorization)
        finally:
            # tenant/subject stay None on public and refused calls, so every access line has the same fields.
            principal = self.principal
            set_principal(principal)
            structlog.contextvars.bind_contextvars(
                request_id=self.request_id, method=self.method, tenant=principal.tenant if principal else None,
                subject=principal.subject if principal else None)

    def _authorize(self, authorization: str | None) -> None:
        if is_infrastructure(self.method):
            return
        policy = self.owner.access_policy
        if self.method not in policy:
            structlog.contextvars.bind_contextvars(request_id=self.request_id, method=self.method)
            _log.error("rpc.no_access_policy", hint="add the method to the service's access policy")
            raise PermissionDenied(f"{self.method} is not open to callers", reason="NO_ACCESS_POLICY")
        required = policy[self.method]
        if required is PUBLIC:  # a token sent anyway is ignored, never verified
            return
        principal = self.owner.token_codec.verify(self._bearer_token(authorization))
        self.principal = principal
        principal.require(required)

    @staticmethod
    def _bearer_token(header: str | None) -> str:
        if header is None:
            raise Unauthenticated("this call needs an operator token: send 'authorization: Bearer <token>'",
                                  reason="TOKEN_MISSING")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the authorization header must be 'Bearer <token>'",
                                  reason="TOKEN_INVALID")
        return token.strip()

    def deadline(self) -> contextlib.AbstractAsyncContextManager[object]:
        """A scope bounded by the default deadline when the client set none; re-enterable for streams."""
        if self.deadline_at is None:
            return contextlib.nullcontext()
        self._timeout = asyncio.timeout_at(self.deadline_at)
        return self._timeout

    async def fail(self, exc: BaseException) -> NoReturn:
        """Turn `exc` into the call's final status; grpc's own control flow passes through untouched."""
        if isinstance(exc, grpc.aio.BaseError):  # AbortError, UsageError, server stopped, ...
            self.code = _status_code(self.context.code())
            if self.code is grpc.StatusCode.OK:
                self.code = grpc.StatusCode.UNKNOWN
            raise exc
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            remaining = self.context.time_remaining()
            self.code = (grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0
                         else grpc.StatusCode.CANCELLED)
            raise exc
        if not isinstance(exc, Exception):
            raise exc
        if isinstance(exc, MusterError):
            status = status_for_error(exc, self.request_id)
        elif isinstance(exc, TimeoutError) and self._timeout is not None and self._timeout.expired():
            status = rich_status(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the call took longer than the server's default deadline of "
                f"{self.owner.default_deadline:g}s; send a deadline with the call to allow more",
                reason="DEADLINE_EXCEEDED", request_id=self.request_id)
        else:
            _log.error("rpc.unhandled_exception", exc_info=exc)
            status = rich_status(grpc.StatusCode.INTERNAL, f"internal error; request id {self.request_id}",
                                 reason="INTERNAL", request_id=self.request_id)
        self.code = status.code
        await self.context.abort_with_status(status)

    def succeed(self) -> None:
        self.code = _status_code(self.context.code())  # a handler may set_code() without raising

    def finish(self) -> None:
        seconds = time.perf_counter() - self.started
        self.owner.metrics.observe(self.method, self.code.name, seconds)
        fields = {"code": self.code.name, "duration_ms": round(seconds * 1000, 3),
                  "peer": self.context.peer()}
        if is_infrastructure(self.method):
            _log.debug("rpc", **fields)
        elif self.code in _LOUD_CODES:
            _log.warning("rpc", **fields)
        else:
            _log.info("rpc", **fields)


class MusterServerInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every method handler the server finds; unknown methods stay UNIMPLEMENTED."""

    def __init__(self, *, access_policy: AccessPolicy, token_codec: TokenCodec, metrics: GrpcMetrics,
                 default_deadline: float) -> None:
        self.access_policy = access_policy
        self.token_codec = token_codec
        self.metrics = metrics
        self.default_deadline = default_deadline
        # A server's handlers are fixed once it starts: wrap each method's once, not on every call.
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None
            wrapped = self._wrapped[method] = self._wrap(method, handler)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        deserializer, serializer = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary), deserializer, serializer)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.stream_unary), deserializer, serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream), deserializer, serializer)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(method, handler.stream_stream), deserializer, serializer)
        return handler

    def _unary(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = _Call(self, method, context)
            try:
                await call.begin()
                async with call.deadline():
                    response = behavior(request, context)
                    if inspect.isawaitable(response):
                        response = await response
                call.succeed()
                return response
            except BaseException as exc:
                await call.fail(exc)
            finally:
                call.finish()

        return unary

    def _stream(self, method: str, behavior: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            call = _Call(self, method, context)
            produced: Any = None
            try:
                await call.begin()
                produced = behavior(request, context)
                if inspect.isawaitable(produced):  # reader/writer style: writes via context.write
                    async with call.deadline():
                        await produced
                else:
                    responses = produced if hasattr(produced, "__anext__") else _as_async(produced)
                    while True:
                        async with call.deadline():
                            try:
                                item = await anext(responses)
                            except StopAsyncIteration:
                                break
                        yield item
                call.succeed()
            except BaseException as exc:
                await call.fail(exc)
            finally:
                if hasattr(produced, "aclose"):
                    await produced.aclose()
                call.finish()

        return stream


async def _as_async(items: Any) -> AsyncIterator[Any]:
    for item in items:
        yield item
