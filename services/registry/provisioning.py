"""Provisioning tokens (what lets a device register itself) and device secrets (what it logs in with).

No I/O here. Both secrets are generated here and only their keyed hashes
(`muster.runtime.secrets.device_secret_hash`) are ever stored.
"""

from __future__ import annotations

import enum
import re
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from muster.runtime.errors import AlreadyExists, FailedPrecondition, FieldViolation
from muster.runtime.secrets import device_secret_hash, new_device_secret
from services.registry.domain import (
    Device,
    DeviceState,
    raise_if,
    validate_display_name,
    validate_labels,
    validate_serial,
    validate_text,
)

TOKEN_PREFIX = "mpt_"  # noqa: S105 (a prefix, not a secret)
"""Provisioning tokens start with this, so secret scanners and people can tell them from other secrets."""
TOKEN_ID_PATTERN = re.compile(r"^p[a-z0-9]{15}$")
DEFAULT_TOKEN_TTL = timedelta(days=7)
MAX_TOKEN_TTL = timedelta(days=365)
MAX_TOKEN_USES = 1_000_000
MAX_GRACE_PERIOD = timedelta(days=30)
MAX_HARDWARE_FIELD = 200

_ALPHABET = string.ascii_lowercase + string.digits


def new_token_id() -> str:
    return "p" + "".join(secrets.choice(_ALPHABET) for _ in range(15))


def new_token_secret() -> str:
    """`mpt_` + 256 random bits: what the operator hands to devices (shown once)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_secret_id() -> str:
    return "k" + "".join(secrets.choice(_ALPHABET) for _ in range(11))


class TokenState(enum.IntEnum):
    ACTIVE = 1
    EXPIRED = 2
    REVOKED = 3
    USED_UP = 4


@dataclass(frozen=True)
class ProvisioningToken:
    """Lets up to `max_uses` devices register into the tenant until `expire_time`, unless revoked.
    Devices it creates get its site, template and labels."""

    tenant_id: str
    id: str
    secret_hash: str
    create_time: datetime
    expire_time: datetime
    display_name: str = ""
    max_uses: int = 1
    use_count: int = 0
    site_id: str | None = None
    template_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    claim_existing: bool = False
    revoke_time: datetime | None = None
    version: int = 1

    @property
    def name(self) -> str:
        return f"provisioningTokens/{self.id}"

    def state(self, now: datetime) -> TokenState:
        """Revoked beats expired beats used up: the reason a device sees is the operator's last act."""
        if self.revoke_time is not None:
            return TokenState.REVOKED
        if now >= self.expire_time:
            return TokenState.EXPIRED
        if self.use_count >= self.max_uses:
            return TokenState.USED_UP
        return TokenState.ACTIVE

    def check_open(self, now: datetime) -> None:
        """FAILED_PRECONDITION if the token was revoked or has expired (whatever its use count).

        A registration checks this first and the use count last, so the same serial registering twice
        with a one-time token hears "already registered", not "used up"."""
        state = self.state(now)
        if state is TokenState.REVOKED:
            raise FailedPrecondition("the provisioning token was revoked: ask an operator for a new one",
                                     reason="PROVISIONING_TOKEN_REVOKED")
        if state is TokenState.EXPIRED:
            raise FailedPrecondition(
                f"the provisioning token expired at {self.expire_time.isoformat()}: ask an operator for a new one",
                reason="PROVISIONING_TOKEN_EXPIRED")

    def check_usable(self, now: datetime) -> None:
        """FAILED_PRECONDITION with a stable reason unless the token may register one more device."""
        self.check_open(now)
        if self.state(now) is TokenState.USED_UP:
            raise FailedPrecondition(
                f"the provisioning token has been used {self.use_count} of {self.max_uses} time(s): "
                "ask an operator for a new one", reason="PROVISIONING_TOKEN_USED_UP",
                metadata={"max_uses": str(self.max_uses)})

    def used(self) -> ProvisioningToken:
        return replace(self, use_count=self.use_count + 1, version=self.version + 1)

    def revoked(self, now: datetime) -> ProvisioningToken:
        """Revoking twice keeps the first revoke time (idempotent, as a retried call expects)."""
        if self.revoke_time is not None:
            return self
        return replace(self, revoke_time=now, version=self.version + 1)


def token_expiry(now: datetime, *, expire_time: datetime | None, ttl: timedelta | None) -> datetime:
    """The expiry a create request asks for (one of expire_time or ttl; default 7 days), validated."""
    if expire_time is not None and ttl is not None:
        raise_if([FieldViolation("provisioning_token.ttl", "give expire_time or ttl, not both")])
    if ttl is not None:
        if ttl <= timedelta(0) or ttl > MAX_TOKEN_TTL:
            raise_if([FieldViolation("provisioning_token.ttl", "must be positive and at most 365 days")])
        return now + ttl
    if expire_time is not None:
        if expire_time <= now:
            raise_if([FieldViolation("provisioning_token.expire_time", "must be in the future")])
        if expire_time - now > MAX_TOKEN_TTL:
            raise_if([FieldViolation("provisioning_token.expire_time", "must be at most 365 days from now")])
        return expire_time
    return now + DEFAULT_TOKEN_TTL


def validate_token(token: ProvisioningToken) -> None:
    problems = validate_display_name(token.display_name, "provisioning_token.display_name", required=False)
    if not 1 <= token.max_uses <= MAX_TOKEN_USES:
        problems.append(FieldViolation("provisioning_token.max_uses",
                                       f"must be between 1 (one-time, the default) and {MAX_TOKEN_USES}"))
    problems += validate_labels(token.labels, "provisioning_token.labels")
    raise_if(problems)


# --- registration --------------------------------------------------------------------------------

@dataclass(frozen=True)
class HardwareInfo:
    """What a device says about itself when it registers (kept with the registration, sent in the event)."""

    manufacturer: str = ""
    model: str = ""
    hardware_revision: str = ""
    firmware_version: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("manufacturer", self.manufacturer), ("model", self.model),
                                  ("hardware_revision", self.hardware_revision),
                                  ("firmware_version", self.firmware_version)) if v}


def validate_registration(serial: str, display_name: str, hardware: HardwareInfo) -> None:
    problems: list[FieldViolation] = []
    if not serial.strip():
        problems.append(FieldViolation("serial", "is required: the device's manufacturer serial"))
    problems += validate_serial(serial, "serial")
    problems += validate_display_name(display_name, "display_name", required=False)
    for key, value in hardware.as_dict().items():
        problems += validate_text(value, f"hardware.{key}", MAX_HARDWARE_FIELD)
        if not value.isprintable():
            problems.append(FieldViolation(f"hardware.{key}", "must be printable characters"))
    raise_if(problems)


def check_claim(token: ProvisioningToken, existing: Device, has_secret: bool) -> None:
    """May this registration take over `existing`, the tenant's device with the same serial?

    Only a device nobody registered yet (no secret: e.g. created by an operator or an import ahead of
    delivery), only with a token that allows claiming, and never a retired one. A device that already
    has a secret keeps it: re-provisioning it is an operator's rotate-secret, not a token holder's call.
    """
    if has_secret:
        raise AlreadyExists(f"a device with serial {existing.serial!r} is already registered: an operator can "
                            "rotate its secret (RotateDeviceSecret)", reason="DEVICE_ALREADY_REGISTERED",
                            metadata={"serial": existing.serial})
    if not token.claim_existing:
        raise AlreadyExists(f"a device with serial {existing.serial!r} already exists in this tenant and this "
                            "provisioning token does not allow claiming existing devices",
                            reason="SERIAL_EXISTS", metadata={"serial": existing.serial})
    if existing.state is DeviceState.RETIRED:
        raise FailedPrecondition(f"the device with serial {existing.serial!r} is retired and cannot be claimed",
                                 reason="DEVICE_RETIRED")


# --- device secrets ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceSecret:
    """One valid (or once valid) secret of a device, by its hash; `expire_time` None = no expiry."""

    tenant_id: str
    device_id: str
    id: str
    secret_hash: str
    create_time: datetime
    expire_time: datetime | None = None

    def valid_at(self, now: datetime) -> bool:
        return self.expire_time is None or self.expire_time > now


def issue_secret(tenant_id: str, device_id: str, now: datetime, hasher: SecretHasher) -> tuple[str, DeviceSecret]:
    """A new secret (plain text, to show once) and its stored form."""
    plain = new_device_secret()
    return plain, DeviceSecret(tenant_id=tenant_id, device_id=device_id, id=new_secret_id(),
                               secret_hash=hasher(plain), create_time=now)


def validate_grace_period(grace: timedelta) -> None:
    if grace < timedelta(0) or grace > MAX_GRACE_PERIOD:
        raise_if([FieldViolation("grace_period", "must be between 0 (old secrets stop working now) and 30 days")])


def rotation_expiries(current: Iterable[DeviceSecret], now: datetime,
                      grace: timedelta) -> list[tuple[DeviceSecret, datetime]]:
    """The secrets still valid at `now` whose expiry rotation moves to now + grace (never later than
    they already expire): (secret, new expiry) pairs."""
    until = now + grace
    return [(s, until) for s in current
            if s.valid_at(now) and (s.expire_time is None or s.expire_time > until)]


def valid_secrets(stored: Sequence[DeviceSecret], now: datetime) -> list[DeviceSecret]:
    return sorted((s for s in stored if s.valid_at(now)), key=lambda s: (s.create_time, s.id))


class SecretHasher:
    """`device_secret_hash` with the deployment's key bound (so handlers never hold the raw key)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, secret: str) -> str:
        return device_secret_hash(self._key, secret)
