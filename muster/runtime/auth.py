"""Operator tokens: HS256 JWTs (PyJWT) carrying tenant and role.

The tenant of a request always comes from its token, never from the path or the body.
"""

from __future__ import annotations

import enum
import hashlib
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from muster.runtime.errors import PermissionDenied, Unauthenticated

ISSUER = "muster"
AUDIENCE = "muster-api"
ALGORITHM = "HS256"
MAX_TTL = timedelta(days=365)


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A separate key per purpose (e.g. "page-tokens") from the deployment's one secret."""
    return hashlib.sha256(purpose.encode() + b"\x00" + secret).digest()


class Role(enum.IntEnum):
    """Ordered: each role may do everything the roles below it may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3
    PLATFORM_ADMIN = 4


@dataclass(frozen=True)
class Principal:
    """Who is calling: from a verified token."""

    subject: str
    role: Role
    tenant: str | None  # None only for platform admins

    @property
    def is_platform_admin(self) -> bool:
        return self.role is Role.PLATFORM_ADMIN

    def require(self, role: Role) -> None:
        if self.role < role:
            raise PermissionDenied(
                f"this needs the {role.name.lower()} role; the token has {self.role.name.lower()}",
                reason="ROLE_TOO_LOW", metadata={"required": role.name, "actual": self.role.name})

    def require_tenant(self) -> str:
        """The tenant this call acts in; platform admins must use a tenant token for tenant data."""
        if self.tenant is None:
            raise PermissionDenied(
                "this call acts inside a tenant: use a token issued for that tenant "
                "(a platform admin can issue one with IssueOperatorToken)",
                reason="TENANT_REQUIRED")
        return self.tenant


class TokenCodec:
    """Issues and verifies operator tokens with one shared HMAC key.

    Verified tokens are remembered until they expire (bounded, least recently used out): a client
    sends the same token on every call, and checking it again costs more than the RPC's own work.
    """

    def __init__(self, secret: bytes, *, leeway: timedelta = timedelta(seconds=30),
                 cache_size: int = 10_000) -> None:
        if len(secret) < 32:
            raise ValueError("the token key must be at least 32 bytes")
        self._secret = secret
        self._leeway = leeway
        self._cache_size = cache_size
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def issue(self, *, subject: str, role: Role, tenant: str | None, ttl: timedelta,
              now: datetime | None = None) -> tuple[str, datetime]:
        if (tenant is None) != (role is Role.PLATFORM_ADMIN):
            raise ValueError("a platform admin token has no tenant; every other token has one")
        issued = now or datetime.now(UTC)
        expires = issued + min(ttl, MAX_TTL)
        claims = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "jti": uuid.uuid4().hex,
            "iat": int(issued.timestamp()), "exp": int(expires.timestamp()),
            "role": role.name.lower(), "tenant": tenant,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires = cached
            if time.time() < expires + self._leeway.total_seconds():
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        principal, expires = self._decode(token)
        self._verified[token] = (principal, expires)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], audience=AUDIENCE,
                                issuer=ISSUER, leeway=self._leeway,
                                options={"require": ["exp", "sub", "role"]})
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the token has expired: issue a new one",
                                  reason="TOKEN_EXPIRED") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}", reason="TOKEN_INVALID") from exc
        try:
            role = Role[str(claims["role"]).upper()]
        except KeyError as exc:
            raise Unauthenticated("the token names an unknown role", reason="TOKEN_INVALID") from exc
        tenant = claims.get("tenant")
        if (tenant is None) != (role is Role.PLATFORM_ADMIN):
            raise Unauthenticated("the token's tenant does not fit its role", reason="TOKEN_INVALID")
        return Principal(subject=str(claims["sub"]), role=role, tenant=tenant), float(claims["exp"])
