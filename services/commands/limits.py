"""Defaults and bounds a create request is resolved against (from `CommandsSettings`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from services.commands.domain import RetryPolicy

MAX_ATTEMPTS = 10


@dataclass(frozen=True)
class Limits:
    default_ttl: timedelta
    default_delivery_timeout: timedelta
    default_execution_timeout: timedelta
    default_retry: RetryPolicy
    max_ttl: timedelta
    max_timeout: timedelta
    max_parameters_bytes: int


DEFAULT_LIMITS = Limits(
    default_ttl=timedelta(hours=1), default_delivery_timeout=timedelta(seconds=10),
    default_execution_timeout=timedelta(seconds=60),
    default_retry=RetryPolicy(max_attempts=3, initial_backoff=timedelta(seconds=1), multiplier=2.0,
                              max_backoff=timedelta(seconds=30)),
    max_ttl=timedelta(days=7), max_timeout=timedelta(days=1), max_parameters_bytes=16 * 1024)
"""The settings' defaults, for tests and tools."""
