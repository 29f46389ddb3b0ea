"""Secrets the platform hands to devices (device secrets, provisioning tokens): generation, and the ONE
keyed hash they are stored and checked as.

Both are >=128-bit random strings, so a slow KDF buys nothing: a keyed HMAC-SHA256 (key = the
deployment's `device_secret_key`) is enough against a stolen database, and fast enough for the device
edge to check a secret on every MQTT connect. The registry stores `device_secret_hash(...)`; the edge
verifies with `verify_device_secret(...)`; both import it from here.
"""

from __future__ import annotations

import hmac
import secrets

SECRET_BYTES = 32
"""Random bytes per generated secret (256 bits; the floor is 128)."""
MIN_KEY_BYTES = 32


def new_device_secret() -> str:
    """A fresh device secret: 256 random bits, URL-safe base64 (43 characters), usable as an MQTT password."""
    return secrets.token_urlsafe(SECRET_BYTES)


def device_secret_hash(key: bytes, secret: str) -> str:
    """Hex HMAC-SHA256(key, secret): what is stored and published instead of the secret."""
    return hmac.digest(key, secret.encode("utf-8"), "sha256").hex()  # one-shot, in C


def verify_device_secret(key: bytes, secret: str, expected_hash: str) -> bool:
    """True when `secret` hashes to `expected_hash` (compared in constant time)."""
    return hmac.compare_digest(device_secret_hash(key, secret), expected_hash.lower())


def parse_device_secret_key(value: str) -> bytes:
    """The key as configured (hex, e.g. MUSTER_DEVICE_SECRET_KEY): at least 32 bytes."""
    try:
        key = bytes.fromhex(value.strip())
    except ValueError as exc:
        raise ValueError("the device secret key must be hex-encoded") from exc
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the device secret key must be at least {MIN_KEY_BYTES} bytes "
                         f"({2 * MIN_KEY_BYTES} hex digits)")
    return key


def new_device_secret_key() -> str:
    """A fresh deployment key, hex-encoded, as the launcher writes it to secrets.json."""
    return secrets.token_hex(MIN_KEY_BYTES)
