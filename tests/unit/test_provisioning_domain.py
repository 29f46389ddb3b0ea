"""Rules of provisioning tokens and device secrets, without I/O: use counts, expiry, revocation,
claiming a device with the same serial, rotation grace, and the shared keyed hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from muster.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from muster.runtime.secrets import (
    device_secret_hash,
    new_device_secret,
    new_device_secret_key,
    parse_device_secret_key,
    verify_device_secret,
)
from services.registry.domain import Device, DeviceState
from services.registry.provisioning import (
    DEFAULT_TOKEN_TTL,
    TOKEN_PREFIX,
    DeviceSecret,
    HardwareInfo,
    ProvisioningToken,
    SecretHasher,
    TokenState,
    check_claim,
    issue_secret,
    new_token_secret,
    rotation_expiries,
    token_expiry,
    valid_secrets,
    validate_grace_period,
    validate_registration,
    validate_token,
)

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
KEY = bytes(range(32))


def token(**fields: object) -> ProvisioningToken:
    values: dict[str, object] = {"tenant_id": "acme", "id": "p" + "0" * 15, "secret_hash": "h", "create_time": NOW,
                                 "expire_time": NOW + timedelta(days=1), **fields}
    return ProvisioningToken(**values)  # type: ignore[arg-type]


def device(**fields: object) -> Device:
    values: dict[str, object] = {"tenant_id": "acme", "id": "d" * 20, "create_time": NOW, "update_time": NOW,
                                 "serial": "SN-1", **fields}
    return Device(**values)  # type: ignore[arg-type]


def reason(exc: pytest.ExceptionInfo[BaseException]) -> str:
    return str(getattr(exc.value, "reason", ""))


# --- use counts, expiry, revocation ----------------------------------------------------------------

def test_a_one_time_token_is_used_up_after_one_use() -> None:
    fresh = token()
    assert fresh.max_uses == 1 and fresh.state(NOW) is TokenState.ACTIVE
    used = fresh.used()
    assert used.use_count == 1 and used.state(NOW) is TokenState.USED_UP
    with pytest.raises(FailedPrecondition) as exc:
        used.check_usable(NOW)
    assert reason(exc) == "PROVISIONING_TOKEN_USED_UP"


def test_a_multi_use_token_counts_down_to_its_limit() -> None:
    current = token(max_uses=3)
    for _ in range(3):
        current.check_usable(NOW)
        current = current.used()
    assert current.state(NOW) is TokenState.USED_UP


def test_a_token_is_expired_from_its_expire_time_on() -> None:
    t = token()
    t.check_usable(t.expire_time - timedelta(microseconds=1))
    with pytest.raises(FailedPrecondition) as exc:
        t.check_usable(t.expire_time)
    assert reason(exc) == "PROVISIONING_TOKEN_EXPIRED"


def test_revocation_wins_over_expiry_and_use_count_and_is_idempotent() -> None:
    revoked = token(use_count=1).revoked(NOW)
    assert revoked.state(NOW + timedelta(days=5)) is TokenState.REVOKED
    with pytest.raises(FailedPrecondition) as exc:
        revoked.check_usable(NOW)
    assert reason(exc) == "PROVISIONING_TOKEN_REVOKED"
    assert revoked.revoked(NOW + timedelta(hours=1)) is revoked


def test_expiry_defaults_to_seven_days_and_takes_ttl_or_expire_time_not_both() -> None:
    assert token_expiry(NOW, expire_time=None, ttl=None) == NOW + DEFAULT_TOKEN_TTL
    assert token_expiry(NOW, expire_time=None, ttl=timedelta(hours=2)) == NOW + timedelta(hours=2)
    assert token_expiry(NOW, expire_time=NOW + timedelta(days=2), ttl=None) == NOW + timedelta(days=2)
    with pytest.raises(InvalidArgument) as both:
        token_expiry(NOW, expire_time=NOW + timedelta(days=2), ttl=timedelta(hours=1))
    assert both.value.violations[0].field == "provisioning_token.ttl"


@pytest.mark.parametrize(("expire_time", "ttl", "field"), [
    (NOW - timedelta(seconds=1), None, "provisioning_token.expire_time"),
    (NOW + timedelta(days=366), None, "provisioning_token.expire_time"),
    (None, timedelta(0), "provisioning_token.ttl"),
    (None, timedelta(days=366), "provisioning_token.ttl"),
])
def test_expiry_out_of_range_is_refused_naming_the_field(expire_time: datetime | None, ttl: timedelta | None,
                                                         field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        token_expiry(NOW, expire_time=expire_time, ttl=ttl)
    assert [v.field for v in exc.value.violations] == [field]


@pytest.mark.parametrize("max_uses", [0, -1, 1_000_001])
def test_max_uses_must_be_between_one_and_a_million(max_uses: int) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_token(token(max_uses=max_uses))
    assert [v.field for v in exc.value.violations] == ["provisioning_token.max_uses"]


def test_token_secrets_are_prefixed_and_random() -> None:
    a, b = new_token_secret(), new_token_secret()
    assert a.startswith(TOKEN_PREFIX) and a != b and len(a) >= len(TOKEN_PREFIX) + 43


# --- registration: same serial -------------------------------------------------------------------

def test_a_registered_serial_is_never_claimed_even_with_a_claiming_token() -> None:
    with pytest.raises(AlreadyExists) as exc:
        check_claim(token(claim_existing=True), device(), has_secret=True)
    assert reason(exc) == "DEVICE_ALREADY_REGISTERED"


def test_an_unregistered_serial_is_claimed_only_with_a_claiming_token() -> None:
    with pytest.raises(AlreadyExists) as exc:
        check_claim(token(), device(), has_secret=False)
    assert reason(exc) == "SERIAL_EXISTS"
    check_claim(token(claim_existing=True), device(), has_secret=False)


def test_a_retired_device_cannot_be_claimed() -> None:
    with pytest.raises(FailedPrecondition) as exc:
        check_claim(token(claim_existing=True), device(state=DeviceState.RETIRED), has_secret=False)
    assert reason(exc) == "DEVICE_RETIRED"


def test_registration_needs_a_serial_and_printable_hardware_fields() -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_registration("", "", HardwareInfo(model="x" * 201, firmware_version="1.0\n"))
    assert {v.field for v in exc.value.violations} == {"serial", "hardware.model", "hardware.firmware_version"}


# --- secrets and rotation ----------------------------------------------------------------------

def test_issued_secrets_have_256_bits_and_are_stored_only_as_their_keyed_hash() -> None:
    plain, stored = issue_secret("acme", "d" * 20, NOW, SecretHasher(KEY))
    assert len(plain) == 43  # 32 bytes, URL-safe base64 without padding
    assert plain not in stored.secret_hash
    assert stored.secret_hash == device_secret_hash(KEY, plain)
    assert verify_device_secret(KEY, plain, stored.secret_hash)
    assert not verify_device_secret(KEY, plain + "x", stored.secret_hash)
    assert not verify_device_secret(bytes(32), plain, stored.secret_hash)  # another deployment's key


def test_the_hash_is_hex_hmac_sha256() -> None:
    # RFC 4231, test case 2
    assert device_secret_hash(b"Jefe", "what do ya want for nothing?") == \
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_deployment_keys_are_hex_and_at_least_32_bytes() -> None:
    assert len(parse_device_secret_key(new_device_secret_key())) == 32
    for bad in ("zz" * 32, "ab" * 31):
        with pytest.raises(ValueError, match="device secret key"):
            parse_device_secret_key(bad)


def test_new_device_secrets_differ() -> None:
    assert len({new_device_secret() for _ in range(100)}) == 100


def secret(sid: str, expire_time: datetime | None = None, created: datetime = NOW) -> DeviceSecret:
    return DeviceSecret("acme", "d" * 20, sid, f"hash-{sid}", created, expire_time)


def test_rotation_without_grace_ends_every_valid_secret_now() -> None:
    current = [secret("k1"), secret("k2", NOW + timedelta(hours=1))]
    assert rotation_expiries(current, NOW, timedelta(0)) == [(current[0], NOW), (current[1], NOW)]


def test_rotation_with_grace_keeps_old_secrets_until_then_but_never_extends_one() -> None:
    soon, later = secret("k1", NOW + timedelta(minutes=5)), secret("k2", NOW + timedelta(days=2))
    forever, gone = secret("k3"), secret("k0", NOW - timedelta(seconds=1))
    moved = rotation_expiries([soon, later, forever, gone], NOW, timedelta(hours=1))
    assert moved == [(later, NOW + timedelta(hours=1)), (forever, NOW + timedelta(hours=1))]


def test_valid_secrets_are_those_not_yet_expired_oldest_first() -> None:
    a, b = secret("ka", created=NOW - timedelta(days=1)), secret("kb", NOW + timedelta(seconds=1))
    c = secret("kc", NOW)
    assert valid_secrets([b, c, a], NOW) == [a, b]


@pytest.mark.parametrize("grace", [timedelta(seconds=-1), timedelta(days=31)])
def test_grace_period_is_between_zero_and_thirty_days(grace: timedelta) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_grace_period(grace)
    assert [v.field for v in exc.value.violations] == ["grace_period"]
