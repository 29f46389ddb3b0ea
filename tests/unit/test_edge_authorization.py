"""The device edge's pure parts: the callout decision, the device's JWT claims and NATS JWT encoding."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import nkeys
import orjson
import pytest

from muster.launcher.secrets import new_account_seed
from muster.registry.v1.resources_pb2 import DeviceState
from muster.runtime.secrets import device_secret_hash
from services.ingest.edge.authorization import (
    AuthRequest,
    BadRequest,
    DeviceCredentials,
    Reason,
    SecretHash,
    decide,
    expiry,
    parse_request,
    plausible_device_id,
    response_claims,
    user_claims,
)
from services.ingest.edge.nats_jwt import JwtError, Signer, decode_claims

KEY = b"k" * 32
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _request(user: str = "dev-1", password: str = "s3cret", client_type: str = "mqtt") -> AuthRequest:  # noqa: S107
    return AuthRequest(server_id="NSERVER", user_nkey="UUSER", client_id=7, client_type=client_type,
                       username=user, password=password)


def _device(state: int = DeviceState.DEVICE_STATE_ACTIVE, deleted: bool = False,
            secrets: tuple[SecretHash, ...] = (SecretHash(device_secret_hash(KEY, "s3cret")),)) -> DeviceCredentials:
    return DeviceCredentials("dev-1", "acme", state, deleted, secrets)


def _decide(request: AuthRequest, device: DeviceCredentials | None) -> Reason:
    return decide(request, device, device_secret_hash(KEY, request.password), NOW).reason


@pytest.mark.parametrize("state", [DeviceState.DEVICE_STATE_ACTIVE, DeviceState.DEVICE_STATE_PROVISIONED])
def test_a_connectable_device_with_a_current_secret_is_allowed(state: int) -> None:
    assert _decide(_request(), _device(state)) is Reason.OK


@pytest.mark.parametrize(("device", "request_", "reason"), [
    (None, _request(), Reason.UNKNOWN_DEVICE),
    (_device(DeviceState.DEVICE_STATE_UNSPECIFIED), _request(), Reason.UNKNOWN_DEVICE),  # credentials, no lifecycle yet
    (_device(), _request(password="wrong"), Reason.BAD_SECRET),
    (_device(), _request(password=""), Reason.BAD_SECRET),
    (_device(DeviceState.DEVICE_STATE_SUSPENDED), _request(), Reason.SUSPENDED),
    (_device(DeviceState.DEVICE_STATE_RETIRED), _request(), Reason.RETIRED),
    (_device(deleted=True), _request(), Reason.DELETED),
    (_device(), _request(client_type="nats"), Reason.NOT_MQTT),
])
def test_refusals(device: DeviceCredentials | None, request_: AuthRequest, reason: Reason) -> None:
    assert _decide(request_, device) is reason


def test_an_expired_secret_is_refused_and_one_in_its_grace_period_is_allowed() -> None:
    old = SecretHash(device_secret_hash(KEY, "old"), NOW - timedelta(seconds=1))
    grace = SecretHash(device_secret_hash(KEY, "grace"), NOW + timedelta(minutes=5))
    device = _device(secrets=(old, grace))
    assert _decide(_request(password="old"), device) is Reason.BAD_SECRET
    decision = decide(_request(password="grace"), device, device_secret_hash(KEY, "grace"), NOW)
    assert decision.allowed and decision.secret_expires == grace.expire_time


def test_the_connection_ends_at_the_ttl_or_when_its_secret_expires_if_sooner() -> None:
    assert expiry(NOW, 3600, None) == int(NOW.timestamp()) + 3600
    assert expiry(NOW, 3600, NOW + timedelta(seconds=60)) == int(NOW.timestamp()) + 60


@pytest.mark.parametrize("username", ["", "a.b", "a/b", "a+b", "#", "*", ">", "a b", "$SYS", "x" * 129])
def test_usernames_that_are_not_one_subject_token_name_no_device(username: str) -> None:
    assert not plausible_device_id(username)


def test_the_user_jwt_allows_only_the_devices_subjects_over_mqtt() -> None:
    claims = user_claims(_request(), issuer="AISSUER", account="MUSTER", now=NOW, expires=123)
    assert (claims["sub"], claims["aud"], claims["iss"], claims["exp"]) == ("UUSER", "MUSTER", "AISSUER", 123)
    nats = claims["nats"]
    own = ["muster.v1.devices.dev-1", "muster.v1.devices.dev-1.>"]
    assert nats["pub"] == {"allow": own} and nats["sub"] == {"allow": own}
    assert nats["allowed_connection_types"] == ["MQTT"]
    assert (nats["type"], nats["version"]) == ("user", 2)


def test_the_response_is_addressed_to_the_asking_server_and_user() -> None:
    ok = response_claims(_request(), issuer="AISSUER", now=NOW, user_jwt="a.b.c")
    assert (ok["aud"], ok["sub"]) == ("NSERVER", "UUSER")
    assert ok["nats"] == {"type": "authorization_response", "version": 2, "jwt": "a.b.c"}
    refused = response_claims(_request(), issuer="AISSUER", now=NOW, error="bad_secret")
    assert refused["nats"]["error"] == "bad_secret" and "jwt" not in refused["nats"]


def _request_claims(**nats: Any) -> dict[str, Any]:
    body = {"type": "authorization_request", "user_nkey": "UUSER", "server_id": {"id": "NSERVER"},
            "client_info": {"id": 9, "type": "mqtt", "mqtt_id": "c1"},
            "connect_opts": {"user": "dev-1", "pass": "pw"}, **nats}
    return {"nats": body}


def test_parse_request_reads_what_the_server_sends() -> None:
    assert parse_request(_request_claims()) == AuthRequest("NSERVER", "UUSER", 9, "mqtt", "dev-1", "pw")
    with pytest.raises(BadRequest):
        parse_request(_request_claims(type="authorization_response"))
    with pytest.raises(BadRequest):
        parse_request(_request_claims(user_nkey=""))


def test_jwts_are_signed_by_the_issuer_account_key_and_decode_back() -> None:
    seed = new_account_seed()
    signer = Signer(seed)
    assert signer.public_key == nkeys.from_seed(seed.encode()).public_key.decode()
    token = signer.encode({"sub": "UUSER", "n": 1})
    head, body, sig = token.split(".")
    assert orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))) == {"typ": "JWT",
                                                                                     "alg": "ed25519-nkey"}
    assert "=" not in token
    assert nkeys.from_seed(seed.encode()).verify(f"{head}.{body}".encode(),
                                                 base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    assert decode_claims(token) == {"sub": "UUSER", "n": 1}
    with pytest.raises(JwtError):
        decode_claims("not-a-jwt")


def test_the_signer_refuses_a_seed_that_is_not_an_account_key() -> None:
    user_seed = nkeys.encode_seed(b"\x01" * 32, nkeys.PREFIX_BYTE_USER).decode()
    with pytest.raises(ValueError, match="account"):
        Signer(user_seed)
