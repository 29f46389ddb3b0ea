"""Operator tokens: what a token carries, and how long a verified one is trusted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from muster.runtime.auth import Role, TokenCodec
from muster.runtime.errors import Unauthenticated

SECRET = b"k" * 32


def test_a_verified_token_yields_its_tenant_role_and_subject() -> None:
    codec = TokenCodec(SECRET)
    token, _ = codec.issue(subject="ops", role=Role.OPERATOR, tenant="acme", ttl=timedelta(hours=1))
    principal = codec.verify(token)
    assert (principal.subject, principal.role, principal.tenant) == ("ops", Role.OPERATOR, "acme")


def test_a_token_signed_with_another_key_is_refused() -> None:
    token, _ = TokenCodec(b"x" * 32).issue(subject="ops", role=Role.ADMIN, tenant="acme", ttl=timedelta(hours=1))
    with pytest.raises(Unauthenticated) as refused:
        TokenCodec(SECRET).verify(token)
    assert refused.value.reason == "TOKEN_INVALID"


def test_a_cached_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = TokenCodec(SECRET, leeway=timedelta(0))
    now = datetime.now(UTC)
    token, expires = codec.issue(subject="ops", role=Role.VIEWER, tenant="acme", ttl=timedelta(minutes=5), now=now)
    assert codec.verify(token).subject == "ops"  # verified once: now cached
    later = expires.timestamp() + 1
    monkeypatch.setattr("muster.runtime.auth.time.time", lambda: later)
    monkeypatch.setattr("jwt.api_jwt.datetime", _FrozenDatetime(later), raising=False)
    with pytest.raises(Unauthenticated) as refused:
        codec.verify(token)
    assert refused.value.reason == "TOKEN_EXPIRED"


def test_the_cache_forgets_the_least_recently_used_token_past_its_size() -> None:
    codec = TokenCodec(SECRET, cache_size=2)
    tokens = [codec.issue(subject=f"s{i}", role=Role.VIEWER, tenant="acme", ttl=timedelta(hours=1))[0]
              for i in range(3)]
    for token in tokens:
        codec.verify(token)
    assert list(codec._verified) == tokens[1:]


class _FrozenDatetime:
    """Stands in for the datetime module inside PyJWT so its expiry check sees the same clock."""

    def __init__(self, timestamp: float) -> None:
        self._timestamp = timestamp

    def __getattr__(self, name: str) -> object:
        return getattr(datetime, name)

    def now(self, tz: object = None) -> datetime:
        return datetime.fromtimestamp(self._timestamp, tz=UTC)
