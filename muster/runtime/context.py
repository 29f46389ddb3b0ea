"""Per-request context (principal, request id), carried in contextvars so logs and handlers see it
without threading it through every call."""

from __future__ import annotations

from contextvars import ContextVar

from muster.runtime.auth import Principal
from muster.runtime.errors import Unauthenticated

_principal: ContextVar[Principal | None] = ContextVar("muster_principal", default=None)
_request_id: ContextVar[str] = ContextVar("muster_request_id", default="")


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served; UNAUTHENTICATED outside one."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("this call needs an operator token: send 'authorization: Bearer <token>'")
    return principal


def set_principal(principal: Principal | None) -> None:
    _principal.set(principal)


def current_request_id() -> str:
    return _request_id.get()


def set_request_id(request_id: str) -> None:
    _request_id.set(request_id)
