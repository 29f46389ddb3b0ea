"""The shared gRPC edge maps what handlers raise to gRPC statuses with rich details, sets request ids and
bounds calls without a client deadline, for unary and server-streaming calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest

from muster.runtime.interceptors import REQUEST_ID_KEY

from .grpc_server_support import SERVICE, Echo, StringValue, auth, error_details
from .grpc_server_support import echo as echo  # fixture


async def test_invalid_argument_carries_field_violations(echo: Echo) -> None:
    error = await echo.fail("Invalid", auth())
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "device.name: must not be empty"
    details = error_details(error)
    violation = details["BadRequest"].field_violations[0]
    assert (violation.field, violation.description) == ("device.name", "must not be empty")
    assert details["ErrorInfo"].reason == "INVALID_ARGUMENT"
    assert details["RequestInfo"].request_id == dict(await _trailers(error))[REQUEST_ID_KEY]


async def _trailers(error: grpc.aio.AioRpcError) -> Sequence[tuple[str, str | bytes]]:
    return tuple(error.trailing_metadata() or ())


async def test_unexpected_exception_is_internal_without_its_text(echo: Echo) -> None:
    error = await echo.fail("Boom", (*auth(), (REQUEST_ID_KEY, "req-boom-1")))
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == "internal error; request id req-boom-1"
    assert "hunter2" not in str(error) and "RuntimeError" not in str(error)


async def test_request_id_is_echoed_or_generated_in_the_trailers(echo: Echo) -> None:
    call = echo.unary("Whoami")(StringValue(), metadata=(*auth(), (REQUEST_ID_KEY, "abc-123")), timeout=5)
    assert (await call).value == "ada|acme|VIEWER|abc-123"
    assert (REQUEST_ID_KEY, "abc-123") in tuple(await call.trailing_metadata() or ())

    call = echo.unary("Whoami")(StringValue(), metadata=(*auth(), (REQUEST_ID_KEY, "not a valid id!")), timeout=5)
    generated = dict(await call.trailing_metadata() or ())[REQUEST_ID_KEY]
    assert isinstance(generated, str) and len(generated) == 32 and generated != "not a valid id!"
    assert (await call).value.endswith(f"|{generated}")


async def test_missing_client_deadline_gets_the_default(echo: Echo) -> None:
    error = await echo.fail("Sleep", value="2", deadline=None)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert error_details(error)["ErrorInfo"].reason == "DEADLINE_EXCEEDED"
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


async def test_handler_abort_passes_through(echo: Echo) -> None:
    error = await echo.fail("SelfAbort")
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "gone")
    assert echo.metrics.registry.get_sample_value(
        "muster_grpc_server_requests_total", {"service": SERVICE, "method": "SelfAbort", "code": "NOT_FOUND"}) == 1


async def test_server_stream_is_authenticated_and_mapped(echo: Echo) -> None:
    items = [item.value async for item in echo.stream("Count")(StringValue(value="3"), metadata=auth())]
    assert items == ["0:ada", "1:ada", "2:ada"]

    with pytest.raises(grpc.aio.AioRpcError) as info:
        [item async for item in echo.stream("Count")(StringValue(value="3"))]
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED

    call = echo.stream("CountThenFail")(StringValue(), metadata=auth(), timeout=5)
    first = await call.read()
    assert isinstance(first, StringValue) and first.value == "first"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert dict(error_details(info.value)["ErrorInfo"].metadata) == {"resource": "x"}
