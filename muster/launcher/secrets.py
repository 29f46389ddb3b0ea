"""Credentials of one data dir, generated once and kept next to the data they protect, so a second
`muster up` on the same dir can log in to the PostgreSQL and NATS it created the first time."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nkeys

from muster.runtime.secrets import new_device_secret_key

TOKEN_KEY_BYTES = 32


@dataclass
class PlatformSecrets:
    """Passwords by purpose; `services` maps a service name to its password."""

    postgres_superuser: str
    postgres_owner: str
    postgres_services: dict[str, str] = field(default_factory=dict)
    nats_sys: str = ""
    nats_services: dict[str, str] = field(default_factory=dict)
    nats_callout_seed: str = ""  # account nkey seed the auth callout responder signs user JWTs with
    device_secret_key: str = ""  # hex HMAC key device secrets and provisioning tokens are hashed with

    def to_json(self) -> dict[str, Any]:
        return {
            "postgres": {"superuser": self.postgres_superuser, "owner": self.postgres_owner,
                         "services": self.postgres_services},
            "nats": {"sys": self.nats_sys, "services": self.nats_services,
                     "callout_seed": self.nats_callout_seed},
            "device_secret_key": self.device_secret_key,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PlatformSecrets:
        pg, nats = raw.get("postgres", {}), raw.get("nats", {})
        return cls(postgres_superuser=pg.get("superuser", ""), postgres_owner=pg.get("owner", ""),
                   postgres_services=dict(pg.get("services", {})), nats_sys=nats.get("sys", ""),
                   nats_services=dict(nats.get("services", {})),
                   nats_callout_seed=nats.get("callout_seed", ""),
                   device_secret_key=raw.get("device_secret_key", ""))


def new_password() -> str:
    """URL-safe, so it can go into connection URLs and SQL/NATS config literals unescaped."""
    return secrets.token_urlsafe(24)


def new_account_seed() -> str:
    """A NATS account nkey seed (`SA…`): the auth callout's issuer. Kept, not rotated per start, so
    device JWTs issued before a restart stay valid and the NATS config never changes at run time."""
    seed: bytes = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT)
    return seed.decode()


def write_private(path: Path, data: bytes) -> None:
    """Atomic write with mode 0600 from the first byte on (no window where others can read it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.chmod(0o600)
    tmp.replace(path)


def load_or_create_secrets(path: Path, services: Iterable[str]) -> PlatformSecrets:
    """Keeps every existing password; adds the missing ones (e.g. for a service added later)."""
    existing = PlatformSecrets.from_json(json.loads(path.read_text())) if path.exists() else None
    current = existing or PlatformSecrets(postgres_superuser="", postgres_owner="")
    before = current.to_json()
    current.postgres_superuser = current.postgres_superuser or new_password()
    current.postgres_owner = current.postgres_owner or new_password()
    current.nats_sys = current.nats_sys or new_password()
    current.nats_callout_seed = current.nats_callout_seed or new_account_seed()
    # Never replaced once written: every stored device secret and provisioning token hash depends on it.
    current.device_secret_key = current.device_secret_key or new_device_secret_key()
    for name in services:
        current.postgres_services.setdefault(name, new_password())
        current.nats_services.setdefault(name, new_password())
    if existing is None or current.to_json() != before:
        write_private(path, json.dumps(current.to_json(), indent=2).encode())
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return current


def load_or_create_token_key(path: Path) -> bytes:
    """The HMAC key operator tokens are signed with, hex-encoded; returned as services read it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        write_private(path, secrets.token_hex(TOKEN_KEY_BYTES).encode() + b"\n")
    return path.read_bytes().strip()
