"""Errors a handler may raise, and the one table that maps them to gRPC status codes.

Domain code raises these (or subclasses); the gRPC edge turns them into a `google.rpc.Status`
with details, so every service answers the same way: INVALID_ARGUMENT carries BadRequest field
violations, everything else an ErrorInfo with a stable machine-readable reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

ERROR_DOMAIN = "muster.dev"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class MusterError(Exception):
    """Base of every error meant for the caller. `reason` is UPPER_SNAKE and stable."""

    reason = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None,
                 metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(MusterError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, violations: Sequence[FieldViolation] = (),
                 reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.violations = list(violations)

    @classmethod
    def field(cls, field_path: str, description: str) -> InvalidArgument:
        """One bad field: the message names it, the BadRequest detail carries it."""
        return cls(f"{field_path}: {description}", violations=[FieldViolation(field_path, description)])


class NotFound(MusterError):
    reason = "NOT_FOUND"


class AlreadyExists(MusterError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(MusterError):
    reason = "FAILED_PRECONDITION"


class Aborted(MusterError):
    """A concurrent change won: e.g. a stale etag. The caller re-reads and retries."""

    reason = "ABORTED"


class Unauthenticated(MusterError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(MusterError):
    reason = "PERMISSION_DENIED"


class ResourceExhausted(MusterError):
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(MusterError):
    reason = "UNAVAILABLE"


STATUS_CODES: dict[type[MusterError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Aborted: grpc.StatusCode.ABORTED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}
"""The one table from error class to gRPC status code (subclasses inherit their base's code)."""


def status_code_for(error: MusterError) -> grpc.StatusCode:
    for klass in type(error).__mro__:
        if klass in STATUS_CODES:
            return STATUS_CODES[klass]
    return grpc.StatusCode.UNKNOWN
