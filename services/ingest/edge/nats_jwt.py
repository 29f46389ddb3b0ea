"""NATS JWTs: ordinary JWTs with header {"typ":"JWT","alg":"ed25519-nkey"}, base64url without
padding, signed with an nkey (here the callout issuer's account key). Only what the callout needs."""

from __future__ import annotations

import base64
from typing import Any

import nkeys
import orjson

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_HEADER_B64 = base64.urlsafe_b64encode(orjson.dumps(HEADER)).rstrip(b"=")


class JwtError(ValueError):
    """Not a well-formed NATS JWT."""


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class Signer:
    """Signs claims with one account nkey seed; `public_key` is the `iss` of everything it signs."""

    def __init__(self, seed: str) -> None:
        self._keys = nkeys.from_seed(seed.encode())
        self.public_key: str = self._keys.public_key.decode()
        if not self.public_key.startswith("A"):
            raise ValueError("the callout issuer must be an account nkey seed (SA…)")

    def encode(self, claims: dict[str, Any]) -> str:
        body = _HEADER_B64 + b"." + _b64(orjson.dumps(claims))
        return (body + b"." + _b64(self._keys.sign(body))).decode()


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, without checking its signature (the caller decides what to trust)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("a JWT has three parts")
    try:
        claims = orjson.loads(_unb64(parts[1]))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise JwtError(f"unreadable JWT claims: {exc}") from exc
    if not isinstance(claims, dict):
        raise JwtError("JWT claims are not an object")
    return claims

