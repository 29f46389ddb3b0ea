"""The registry's domain model: tenants, sites and devices, and the rules they keep. No I/O here."""

from __future__ import annotations

import enum
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from muster.runtime.errors import Aborted, FailedPrecondition, FieldViolation, InvalidArgument
from services.registry.transports import Transport, validate_transports

ID_PATTERN = re.compile(r"^[a-z][a-z0-9-]{2,39}$")
DEVICE_ID_PATTERN = re.compile(r"^[a-z0-9]{20}$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
MAX_LABELS = 64
MAX_LABEL_VALUE = 63
MAX_DISPLAY_NAME = 200
MAX_SERIAL = 128
MAX_NOTES = 4096
MAX_ADDRESS = 500

_DEVICE_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_device_id() -> str:
    """20 characters of [a-z0-9] (~103 bits): unguessable, and safe as an MQTT/NATS token.
    One uniform draw below 36**20, written in base 36 (bulk import makes thousands per second)."""
    value = secrets.randbelow(36 ** 20)
    digits = []
    for _ in range(20):
        value, digit = divmod(value, 36)
        digits.append(_DEVICE_ID_ALPHABET[digit])
    return "".join(digits)


def new_site_id() -> str:
    return "s" + "".join(secrets.choice(_DEVICE_ID_ALPHABET) for _ in range(11))


class DeviceState(enum.IntEnum):
    PROVISIONED = 1
    ACTIVE = 2
    SUSPENDED = 3
    RETIRED = 4


ALLOWED_TRANSITIONS: Mapping[DeviceState, frozenset[DeviceState]] = {
    DeviceState.PROVISIONED: frozenset({DeviceState.ACTIVE, DeviceState.RETIRED}),
    DeviceState.ACTIVE: frozenset({DeviceState.SUSPENDED, DeviceState.RETIRED}),
    DeviceState.SUSPENDED: frozenset({DeviceState.ACTIVE, DeviceState.RETIRED}),
    DeviceState.RETIRED: frozenset(),
}


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    altitude: float = 0.0

    def validate(self, path: str) -> list[FieldViolation]:
        problems = []
        if not -90.0 <= self.latitude <= 90.0:
            problems.append(FieldViolation(f"{path}.latitude", "must be between -90 and 90"))
        if not -180.0 <= self.longitude <= 180.0:
            problems.append(FieldViolation(f"{path}.longitude", "must be between -180 and 180"))
        return problems


def etag_of(version: int) -> str:
    return f'"{version}"'


def check_etag(given: str, version: int, resource: str) -> None:
    """Refuse a write made against an older version than the stored one (ABORTED)."""
    if given and given != etag_of(version):
        raise Aborted(f"{resource} has changed since etag {given} was read (now {etag_of(version)}): "
                      "read it again and retry", reason="ETAG_MISMATCH")


@dataclass(frozen=True)
class Tenant:
    id: str
    display_name: str
    create_time: datetime
    update_time: datetime
    version: int = 1

    @property
    def name(self) -> str:
        return f"tenants/{self.id}"


@dataclass(frozen=True)
class Site:
    tenant_id: str
    id: str
    display_name: str
    create_time: datetime
    update_time: datetime
    address: str = ""
    time_zone: str = "UTC"
    location: Location | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    version: int = 1

    @property
    def name(self) -> str:
        return f"sites/{self.id}"


@dataclass(frozen=True)
class Device:
    tenant_id: str
    id: str
    create_time: datetime
    update_time: datetime
    display_name: str = ""
    site_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    serial: str = ""
    notes: str = ""
    location: Location | None = None
    state: DeviceState = DeviceState.PROVISIONED
    template_id: str | None = None
    transports: tuple[Transport, ...] = ()
    version: int = 1

    @property
    def name(self) -> str:
        return f"devices/{self.id}"

    def transition(self, to: DeviceState, now: datetime) -> Device:
        """The device in state `to`, or FAILED_PRECONDITION if the lifecycle forbids it."""
        if to not in ALLOWED_TRANSITIONS[self.state]:
            allowed = ", ".join(s.name for s in sorted(ALLOWED_TRANSITIONS[self.state])) or "none (final)"
            raise FailedPrecondition(
                f"device {self.id} is {self.state.name}; it cannot become {to.name} "
                f"(allowed from {self.state.name}: {allowed})",
                reason="INVALID_STATE_TRANSITION", metadata={"from": self.state.name, "to": to.name})
        return replace(self, state=to, update_time=now, version=self.version + 1)


# --- validation shared by create and update -------------------------------------------------

def validate_id(value: str, path: str) -> list[FieldViolation]:
    if not ID_PATTERN.match(value):
        return [FieldViolation(path, "must be 3-40 of [a-z0-9-], starting with a letter")]
    return []


def validate_display_name(value: str, path: str, *, required: bool) -> list[FieldViolation]:
    if required and not value.strip():
        return [FieldViolation(path, "is required")]
    if len(value) > MAX_DISPLAY_NAME:
        return [FieldViolation(path, f"is {len(value)} characters; at most {MAX_DISPLAY_NAME}")]
    if any(ch in value for ch in "\x00\r\n"):
        return [FieldViolation(path, "must be one line of text")]
    return []


def validate_labels(labels: Mapping[str, str], path: str) -> list[FieldViolation]:
    problems = []
    if len(labels) > MAX_LABELS:
        problems.append(FieldViolation(path, f"has {len(labels)} labels; at most {MAX_LABELS}"))
    for key, value in labels.items():
        if not LABEL_KEY.match(key):
            problems.append(FieldViolation(f"{path}.{key}", "keys are 1-63 of [a-z0-9_-], starting with a letter"))
        elif len(value) > MAX_LABEL_VALUE:
            problems.append(FieldViolation(f"{path}.{key}", f"values are at most {MAX_LABEL_VALUE} characters"))
    return problems


def validate_text(value: str, path: str, limit: int) -> list[FieldViolation]:
    if len(value) > limit:
        return [FieldViolation(path, f"is {len(value)} characters; at most {limit}")]
    return []


def validate_serial(value: str, path: str) -> list[FieldViolation]:
    if len(value) > MAX_SERIAL:
        return [FieldViolation(path, f"is {len(value)} characters; at most {MAX_SERIAL}")]
    if value and not value.isprintable():
        return [FieldViolation(path, "must be printable characters")]
    return []


def validate_time_zone(value: str, path: str) -> list[FieldViolation]:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return [FieldViolation(path, f"{value!r} is not an IANA time zone such as 'Europe/Berlin'")]
    return []


def raise_if(problems: list[FieldViolation]) -> None:
    if problems:
        summary = "; ".join(f"{p.field}: {p.description}" for p in problems)
        raise InvalidArgument(summary, violations=problems)


def validate_tenant(tenant: Tenant) -> None:
    raise_if(validate_id(tenant.id, "tenant_id")
             + validate_display_name(tenant.display_name, "tenant.display_name", required=True))


def validate_site(site: Site) -> None:
    raise_if(validate_id(site.id, "site_id")
             + validate_display_name(site.display_name, "site.display_name", required=True)
             + validate_text(site.address, "site.address", MAX_ADDRESS)
             + validate_time_zone(site.time_zone, "site.time_zone")
             + (site.location.validate("site.location") if site.location else [])
             + validate_labels(site.labels, "site.labels"))


def validate_device(device: Device) -> None:
    raise_if(validate_display_name(device.display_name, "device.display_name", required=False)
             + validate_labels(device.labels, "device.labels")
             + validate_serial(device.serial, "device.serial")
             + validate_text(device.notes, "device.notes", MAX_NOTES)
             + (device.location.validate("device.location") if device.location else [])
             + validate_transports(device.transports, "device.transports"))
