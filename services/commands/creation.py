"""Turning a create request into a new command: the request's checks, its defaults (request, then the
template's command definition, then the service), its parameters against the definition's schema,
and the digest that idempotency compares. Pure: the handler brings the definition from its projection."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from muster.runtime.errors import FieldViolation, InvalidArgument
from services.commands import schema
from services.commands.domain import Command, RetryPolicy
from services.commands.limits import MAX_ATTEMPTS, Limits

COMMAND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")


@dataclass(frozen=True)
class CommandDefinition:
    """A template's command, as the registry projection keeps it."""

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    default_timeout: timedelta | None = None


@dataclass(frozen=True)
class CreateCommand:
    """The create request as sent; None means "not given" (the default applies)."""

    device_id: str
    command: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    request_id: str = ""
    ttl: timedelta | None = None
    delivery_timeout: timedelta | None = None
    execution_timeout: timedelta | None = None
    max_attempts: int | None = None
    initial_backoff: timedelta | None = None
    multiplier: float | None = None
    max_backoff: timedelta | None = None

    def digest(self) -> str:
        """What "the same body" means for idempotency: every field as sent, except the key itself."""
        def seconds(value: timedelta | None) -> float | None:
            return None if value is None else value.total_seconds()

        body = {"device": self.device_id, "command": self.command, "parameters": self.parameters,
                "ttl": seconds(self.ttl), "delivery_timeout": seconds(self.delivery_timeout),
                "execution_timeout": seconds(self.execution_timeout), "max_attempts": self.max_attempts,
                "initial_backoff": seconds(self.initial_backoff), "multiplier": self.multiplier,
                "max_backoff": seconds(self.max_backoff)}
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def check_request(request: CreateCommand, limits: Limits) -> None:
    """What can be refused before anything is read."""
    problems: list[FieldViolation] = []
    if not request.command:
        problems.append(FieldViolation("command.command", "is required: the name of a command of the device's "
                                                          "template"))
    elif not COMMAND_NAME.match(request.command):
        problems.append(FieldViolation("command.command", f"{request.command!r} is not a command name "
                                                          "(1-63 of a-z, 0-9, '_', starting with a letter)"))
    if request.request_id and not REQUEST_ID.match(request.request_id):
        problems.append(FieldViolation("request_id", "must be 1-128 of A-Z, a-z, 0-9, '.', '_', '~', '-'"))
    size = len(orjson.dumps(request.parameters))
    if size > limits.max_parameters_bytes:
        problems.append(FieldViolation("command.parameters", f"is {size} bytes of JSON; at most "
                                                             f"{limits.max_parameters_bytes} are allowed"))
    for path, value, bound in (("command.ttl", request.ttl, limits.max_ttl),
                               ("command.delivery_timeout", request.delivery_timeout, limits.max_timeout),
                               ("command.execution_timeout", request.execution_timeout, limits.max_timeout),
                               ("command.retry_policy.initial_backoff", request.initial_backoff, limits.max_timeout),
                               ("command.retry_policy.max_backoff", request.max_backoff, limits.max_timeout)):
        if value is not None and not timedelta(0) < value <= bound:
            problems.append(FieldViolation(path, f"must be more than 0 s and at most {bound.total_seconds():g} s"))
    if request.max_attempts is not None and not 1 <= request.max_attempts <= MAX_ATTEMPTS:
        problems.append(FieldViolation("command.retry_policy.max_attempts", f"must be 1 to {MAX_ATTEMPTS}"))
    if request.multiplier is not None and request.multiplier < 1:
        problems.append(FieldViolation("command.retry_policy.multiplier", "must be at least 1"))
    _raise(problems)


def check_parameters(request: CreateCommand, definition: CommandDefinition) -> None:
    _raise(schema.validate(definition.parameters, dict(request.parameters), "command.parameters"))


def unknown_command(request: CreateCommand, known: list[str]) -> InvalidArgument:
    listed = ", ".join(sorted(known)) if known else "none"
    return InvalidArgument.field("command.command", f"{request.command!r} is not a command of the device's template "
                                                    f"(its commands: {listed})")


def _raise(problems: list[FieldViolation]) -> None:
    if problems:
        summary = "; ".join(f"{p.field}: {p.description}" for p in problems)
        raise InvalidArgument(summary, violations=problems)


def new_command(request: CreateCommand, definition: CommandDefinition, limits: Limits, *, tenant_id: str,
                creator: str, now: datetime) -> Command:
    """The PENDING command, every default resolved (request, then the definition, then the service)."""
    retry = limits.default_retry
    retry = RetryPolicy(max_attempts=request.max_attempts or retry.max_attempts,
                        initial_backoff=request.initial_backoff or retry.initial_backoff,
                        multiplier=request.multiplier or retry.multiplier,
                        max_backoff=request.max_backoff or retry.max_backoff)
    if retry.max_backoff < retry.initial_backoff:
        raise InvalidArgument.field("command.retry_policy.max_backoff", "must not be shorter than initial_backoff")
    execution = request.execution_timeout or definition.default_timeout or limits.default_execution_timeout
    return Command.create(tenant_id=tenant_id, device_id=request.device_id, command=request.command,
                          parameters=request.parameters, creator=creator, request_id=request.request_id,
                          request_hash=request.digest(), ttl=request.ttl or limits.default_ttl,
                          delivery_timeout=request.delivery_timeout or limits.default_delivery_timeout,
                          execution_timeout=execution, retry=retry, now=now)
