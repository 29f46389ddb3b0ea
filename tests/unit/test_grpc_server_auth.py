"""The shared gRPC edge authenticates and authorizes every call: bearer tokens, roles, and the access
policy (methods missing from it are denied, and named at startup)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import pytest
import structlog

from muster.runtime.auth import Role
from muster.runtime.grpc_server import _check_access_policy

from .grpc_server_support import SERVICE, Echo, StringValue, auth, error_details
from .grpc_server_support import echo as echo  # fixture


async def test_no_token_is_unauthenticated(echo: Echo) -> None:
    error = await echo.fail("Whoami")
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in (error.details() or "")
    assert error_details(error)["ErrorInfo"].reason == "TOKEN_MISSING"


@pytest.mark.parametrize(("metadata", "reason"), [
    (auth(expired=True), "TOKEN_EXPIRED"),
    ((("authorization", "Bearer not-a-jwt"),), "TOKEN_INVALID"),
    ((("authorization", "Basic abc"),), "TOKEN_INVALID"),
])
async def test_bad_token_is_unauthenticated(echo: Echo, metadata: Sequence[tuple[str, str]],
                                            reason: str) -> None:
    error = await echo.fail("Whoami", metadata)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    info = error_details(error)["ErrorInfo"]
    assert (info.reason, info.domain) == (reason, "muster.dev")


async def test_role_too_low_is_permission_denied(echo: Echo) -> None:
    error = await echo.fail("Operate", auth(Role.VIEWER))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    info = error_details(error)["ErrorInfo"]
    assert info.reason == "ROLE_TOO_LOW" and dict(info.metadata) == {"required": "OPERATOR", "actual": "VIEWER"}
    assert (await echo.unary("Operate")(StringValue(value="x"), metadata=auth(Role.OPERATOR))).value == "x"


async def test_method_missing_from_policy_is_denied(echo: Echo) -> None:
    error = await echo.fail("Unlisted", auth(Role.PLATFORM_ADMIN))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_details(error)["ErrorInfo"].reason == "NO_ACCESS_POLICY"


async def test_public_method_needs_no_token(echo: Echo) -> None:
    assert (await echo.unary("Public")(StringValue(value="hi"), timeout=5)).value == "hi"


async def test_public_method_ignores_a_token_sent_anyway(echo: Echo) -> None:
    # e.g. a device registering from a shell that exports MUSTER_TOKEN: never verified, never refused
    bad = (("authorization", "Bearer not-a-jwt"),)
    assert (await echo.unary("Public")(StringValue(value="hi"), metadata=bad, timeout=5)).value == "hi"


def test_methods_missing_from_the_policy_are_named_at_startup() -> None:
    from muster.registry.v1 import device_service_pb2  # registers the service in the descriptor pool

    name = device_service_pb2.DESCRIPTOR.services_by_name["DeviceService"].full_name
    with structlog.testing.capture_logs() as logs:
        _check_access_policy([name, SERVICE], {f"/{name}/GetDevice": Role.VIEWER})
    [entry] = [entry for entry in logs if entry["event"] == "server.methods_without_access_policy"]
    assert f"/{name}/CreateDevice" in entry["methods"] and f"/{name}/GetDevice" not in entry["methods"]
