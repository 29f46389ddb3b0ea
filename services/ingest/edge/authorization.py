"""The callout decision and the JWTs it answers with, as pure functions (no I/O): who may connect,
for how long, and to which subjects.

A device may connect while PROVISIONED or ACTIVE with a secret whose keyed hash is one of its current,
unexpired hashes; it is refused when unknown, with a wrong or missing secret, SUSPENDED, RETIRED or
deleted, or when it does not come in over MQTT. Its user JWT allows publish and subscribe on
`muster.v1.devices.{id}` and below only (MQTT `muster/v1/devices/{id}/#`), MQTT connections only,
and expires after the configured TTL or when the secret it used expires, whichever is first.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from muster.registry.v1.resources_pb2 import DeviceState

DEVICE_SUBJECT_PREFIX = "muster.v1.devices"
MQTT_CLIENT_TYPE = "mqtt"
CONNECTABLE_STATES = frozenset({DeviceState.DEVICE_STATE_PROVISIONED, DeviceState.DEVICE_STATE_ACTIVE})
_DEVICE_ID = re.compile(r"^[^.\s/+#*>$]{1,128}$")


class Reason(StrEnum):
    """Why a connect was allowed or refused: the `reason` label of the callout metrics."""

    OK = "ok"
    BAD_REQUEST = "bad_request"
    NOT_MQTT = "not_mqtt"
    UNKNOWN_DEVICE = "unknown_device"
    BAD_SECRET = "bad_secret"  # noqa: S105 - a reason label, not a secret
    SUSPENDED = "suspended"
    RETIRED = "retired"
    DELETED = "deleted"
    NOT_CONNECTABLE = "not_connectable"


@dataclass(frozen=True)
class SecretHash:
    hmac_sha256: str
    expire_time: datetime | None = None  # None: valid until replaced


@dataclass(frozen=True)
class DeviceCredentials:
    """The edge's projection of one device: owner, lifecycle and the secret hashes valid now."""

    device_id: str
    tenant_id: str
    state: int  # DeviceState; UNSPECIFIED until the device's lifecycle is known
    deleted: bool
    secrets: tuple[SecretHash, ...]


@dataclass(frozen=True)
class AuthRequest:
    """What the server tells us about one connect (from the `nats` claim of its request JWT)."""

    server_id: str
    user_nkey: str
    client_id: int
    client_type: str
    username: str
    password: str

    @property
    def device_id(self) -> str:
        return self.username


class BadRequest(ValueError):
    """The request JWT lacks what every callout request carries."""


def parse_request(claims: dict[str, Any]) -> AuthRequest:
    nats = claims.get("nats")
    if not isinstance(nats, dict) or nats.get("type") != "authorization_request":
        raise BadRequest("not an authorization request")
    server, client, opts = nats.get("server_id") or {}, nats.get("client_info") or {}, nats.get("connect_opts") or {}
    user_nkey, server_id = nats.get("user_nkey"), server.get("id")
    if not isinstance(user_nkey, str) or not isinstance(server_id, str) or not user_nkey or not server_id:
        raise BadRequest("the request names no user nkey or server")
    return AuthRequest(server_id=server_id, user_nkey=user_nkey, client_id=int(client.get("id") or 0),
                       client_type=str(client.get("type") or ""), username=str(opts.get("user") or ""),
                       password=str(opts.get("pass") or ""))


def plausible_device_id(username: str) -> bool:
    """A device id is one NATS subject token: anything else can name no device (no lookup needed)."""
    return bool(_DEVICE_ID.match(username))


@dataclass(frozen=True)
class Decision:
    reason: Reason
    secret_expires: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.reason is Reason.OK


def decide(request: AuthRequest, device: DeviceCredentials | None, presented_hash: str, now: datetime) -> Decision:
    """Allow or refuse one connect. `presented_hash` is the keyed hash of the password sent."""
    if request.client_type != MQTT_CLIENT_TYPE:
        return Decision(Reason.NOT_MQTT)
    if device is None or (device.state == DeviceState.DEVICE_STATE_UNSPECIFIED and not device.deleted):
        return Decision(Reason.UNKNOWN_DEVICE)
    if device.deleted:
        return Decision(Reason.DELETED)
    if device.state == DeviceState.DEVICE_STATE_SUSPENDED:
        return Decision(Reason.SUSPENDED)
    if device.state == DeviceState.DEVICE_STATE_RETIRED:
        return Decision(Reason.RETIRED)
    if device.state not in CONNECTABLE_STATES:
        return Decision(Reason.NOT_CONNECTABLE)
    matched = match_secret(device.secrets, presented_hash, now) if request.password else None
    if matched is None:
        return Decision(Reason.BAD_SECRET)
    return Decision(Reason.OK, secret_expires=matched.expire_time)


def match_secret(secrets: Sequence[SecretHash], presented_hash: str, now: datetime) -> SecretHash | None:
    """The unexpired stored hash equal to the presented one (each compared in constant time)."""
    found = None
    for secret in secrets:
        valid = secret.expire_time is None or secret.expire_time > now
        if hmac.compare_digest(secret.hmac_sha256.lower(), presented_hash) and valid:
            found = secret
    return found


def device_subjects(device_id: str) -> list[str]:
    """The device's own subject and everything below it (MQTT `.../{id}/#` also names the parent)."""
    own = f"{DEVICE_SUBJECT_PREFIX}.{device_id}"
    return [own, f"{own}.>"]


def expiry(now: datetime, ttl_seconds: int, secret_expires: datetime | None) -> int:
    """Epoch seconds at which the connection ends: the TTL, or the secret's own expiry if sooner."""
    ends = int(now.timestamp()) + ttl_seconds
    if secret_expires is not None:
        ends = min(ends, int(secret_expires.timestamp()))
    return max(ends, int(now.timestamp()) + 1)


def user_claims(request: AuthRequest, *, issuer: str, account: str, now: datetime, expires: int) -> dict[str, Any]:
    """The device's user JWT claims (`aud` = the account it joins)."""
    subjects = device_subjects(request.device_id)
    return {
        "jti": uuid.uuid4().hex, "iat": int(now.timestamp()), "exp": expires, "iss": issuer,
        "sub": request.user_nkey, "name": request.device_id, "aud": account,
        "nats": {"pub": {"allow": subjects}, "sub": {"allow": subjects},
                 "allowed_connection_types": ["MQTT"], "type": "user", "version": 2},
    }


def response_claims(request: AuthRequest, *, issuer: str, now: datetime, user_jwt: str | None = None,
                    error: str | None = None) -> dict[str, Any]:
    """The authorization response (`aud` = the asking server): a user JWT, or an error."""
    body: dict[str, Any] = {"type": "authorization_response", "version": 2}
    if user_jwt is not None:
        body["jwt"] = user_jwt
    else:
        body["error"] = error or "not authorized"
    return {"jti": uuid.uuid4().hex, "iat": int(now.timestamp()), "iss": issuer, "sub": request.user_nkey,
            "aud": request.server_id, "nats": body}
