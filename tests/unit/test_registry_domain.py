"""The registry's domain rules: lifecycle, validation and etags (no I/O)."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest

from muster.runtime.errors import Aborted, FailedPrecondition, InvalidArgument
from services.registry.domain import (
    ALLOWED_TRANSITIONS,
    DEVICE_ID_PATTERN,
    ID_PATTERN,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    Device,
    DeviceState,
    Location,
    Site,
    Tenant,
    check_etag,
    etag_of,
    new_device_id,
    new_site_id,
    validate_device,
    validate_display_name,
    validate_id,
    validate_labels,
    validate_serial,
    validate_site,
    validate_tenant,
    validate_time_zone,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
S = DeviceState

LIFECYCLE = {
    (S.PROVISIONED, S.ACTIVE), (S.PROVISIONED, S.RETIRED),
    (S.ACTIVE, S.SUSPENDED), (S.ACTIVE, S.RETIRED),
    (S.SUSPENDED, S.ACTIVE), (S.SUSPENDED, S.RETIRED),
}
"""The documented lifecycle, written out independently of ALLOWED_TRANSITIONS."""


def _device(state: DeviceState = S.PROVISIONED, **changes: object) -> Device:
    fields: dict[str, object] = {"tenant_id": "acme", "id": "a" * 20, "create_time": T0, "update_time": T0,
                                 "state": state, "version": 3}
    fields.update(changes)
    return Device(**fields)  # type: ignore[arg-type]


def _site(**changes: object) -> Site:
    fields: dict[str, object] = {"tenant_id": "acme", "id": "plant-1", "display_name": "Plant 1",
                                 "create_time": T0, "update_time": T0}
    fields.update(changes)
    return Site(**fields)  # type: ignore[arg-type]


def _fields(error: InvalidArgument) -> list[str]:
    return [v.field for v in error.violations]


# --- lifecycle -------------------------------------------------------------------------------------

def test_allowed_transitions_table_is_the_documented_lifecycle() -> None:
    table = {(src, dst) for src, targets in ALLOWED_TRANSITIONS.items() for dst in targets}
    assert table == LIFECYCLE
    assert set(ALLOWED_TRANSITIONS) == set(DeviceState)


@pytest.mark.parametrize(("src", "dst"), sorted(LIFECYCLE))
def test_allowed_transition_moves_state_bumps_version_and_update_time(src: DeviceState, dst: DeviceState) -> None:
    before = _device(src)
    after = before.transition(dst, LATER)
    assert (after.state, after.version, after.update_time) == (dst, 4, LATER)
    assert (after.create_time, after.id, after.tenant_id) == (T0, before.id, "acme")
    assert before.state is src  # the original is untouched (frozen value)


@pytest.mark.parametrize(("src", "dst"),
                         sorted(set(itertools.product(DeviceState, DeviceState)) - LIFECYCLE))
def test_forbidden_transition_is_failed_precondition_naming_both_states(src: DeviceState, dst: DeviceState) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        _device(src).transition(dst, LATER)
    error = caught.value
    assert error.reason == "INVALID_STATE_TRANSITION"
    assert error.metadata == {"from": src.name, "to": dst.name}
    assert src.name in error.message and dst.name in error.message


@pytest.mark.parametrize("dst", list(DeviceState))
def test_retired_is_final(dst: DeviceState) -> None:
    with pytest.raises(FailedPrecondition, match=r"none \(final\)"):
        _device(S.RETIRED).transition(dst, LATER)


def test_new_device_starts_provisioned_at_version_one() -> None:
    device = Device(tenant_id="acme", id=new_device_id(), create_time=T0, update_time=T0)
    assert (device.state, device.version, device.name) == (S.PROVISIONED, 1, f"devices/{device.id}")


# --- ids -------------------------------------------------------------------------------------------

def test_generated_ids_match_their_patterns_and_differ() -> None:
    devices = {new_device_id() for _ in range(200)}
    sites = {new_site_id() for _ in range(200)}
    assert len(devices) == 200 and len(sites) == 200
    assert all(DEVICE_ID_PATTERN.match(d) for d in devices)
    assert all(ID_PATTERN.match(s) for s in sites)


@pytest.mark.parametrize("value", ["abc", "acme-corp", "a" + "1" * 39, "t-0"])
def test_valid_ids(value: str) -> None:
    assert validate_id(value, "tenant_id") == []


@pytest.mark.parametrize("value", ["", "ab", "a" * 41, "1abc", "-abc", "Acme", "acme_corp", "acme.corp",
                                   "acme/x", "ac me", "acmé"])
def test_invalid_ids_name_the_field(value: str) -> None:
    problems = validate_id(value, "tenant_id")
    assert [p.field for p in problems] == ["tenant_id"]


# --- labels ----------------------------------------------------------------------------------------

def test_valid_labels() -> None:
    labels = {"env": "prod", "floor_3": "", "a": "x" * MAX_LABEL_VALUE, "k" + "-" * 62: "v"}
    assert validate_labels(labels, "device.labels") == []


@pytest.mark.parametrize("key", ["", "Env", "3rd", "_x", "env.zone", "env zone", "k" * 64, "ümlaut"])
def test_invalid_label_key_names_the_key(key: str) -> None:
    problems = validate_labels({key: "v"}, "device.labels")
    assert [p.field for p in problems] == [f"device.labels.{key}"]
    assert "keys are" in problems[0].description


def test_label_value_too_long_names_the_key() -> None:
    problems = validate_labels({"env": "x" * (MAX_LABEL_VALUE + 1)}, "site.labels")
    assert [p.field for p in problems] == ["site.labels.env"]


def test_too_many_labels() -> None:
    problems = validate_labels({f"k{i}": "v" for i in range(MAX_LABELS + 1)}, "device.labels")
    assert [p.field for p in problems] == ["device.labels"]
    assert validate_labels({f"k{i}": "v" for i in range(MAX_LABELS)}, "device.labels") == []


# --- time zones, locations, text -------------------------------------------------------------------

@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Asia/Kolkata"])
def test_iana_time_zones_are_valid(zone: str) -> None:
    assert validate_time_zone(zone, "site.time_zone") == []


@pytest.mark.parametrize("zone", ["", "Mars/Olympus_Mons", "Europe", "europe/berlin ", "../../etc/passwd",
                                  "/etc/localtime", "Europe/../UTC", "zone.tab", "Europe/Berlin\x00", "+02:00"])
def test_bad_time_zones_are_field_violations_not_crashes(zone: str) -> None:
    problems = validate_time_zone(zone, "site.time_zone")
    assert [p.field for p in problems] == ["site.time_zone"]
    assert "IANA" in problems[0].description


@pytest.mark.parametrize(("lat", "lon"), [(0.0, 0.0), (90.0, 180.0), (-90.0, -180.0), (52.52, 13.405)])
def test_locations_in_range(lat: float, lon: float) -> None:
    assert Location(lat, lon).validate("site.location") == []


@pytest.mark.parametrize(("lat", "lon", "bad"), [
    (90.0001, 0.0, ["site.location.latitude"]),
    (-91.0, 0.0, ["site.location.latitude"]),
    (0.0, 180.5, ["site.location.longitude"]),
    (0.0, -181.0, ["site.location.longitude"]),
    (100.0, 200.0, ["site.location.latitude", "site.location.longitude"]),
    (math.nan, 0.0, ["site.location.latitude"]),
    (0.0, math.inf, ["site.location.longitude"]),
])
def test_locations_out_of_range(lat: float, lon: float, bad: list[str]) -> None:
    assert [p.field for p in Location(lat, lon).validate("site.location")] == bad


@pytest.mark.parametrize(("value", "required", "ok"), [
    ("Pump 7", True, True), ("", False, True), ("", True, False), ("   ", True, False),
    ("x" * 200, True, True), ("x" * 201, True, False), ("two\nlines", False, False), ("nul\x00", False, False),
])
def test_display_name_rules(value: str, required: bool, ok: bool) -> None:
    assert (validate_display_name(value, "device.display_name", required=required) == []) is ok


@pytest.mark.parametrize(("value", "ok"), [("", True), ("SN-0001", True), ("x" * 128, True), ("x" * 129, False),
                                           ("tab\there", False), ("bell\x07", False)])
def test_serial_rules(value: str, ok: bool) -> None:
    assert (validate_serial(value, "device.serial") == []) is ok


def test_validate_site_reports_every_problem_at_once() -> None:
    site = _site(id="X", display_name="", time_zone="Nowhere/Town", location=Location(91.0, 0.0),
                 labels={"Bad": "v"})
    with pytest.raises(InvalidArgument) as caught:
        validate_site(site)
    assert _fields(caught.value) == ["site_id", "site.display_name", "site.time_zone", "site.location.latitude",
                                     "site.labels.Bad"]
    assert "site.time_zone" in caught.value.message  # the message alone tells a person what to fix


def test_valid_site_and_device_pass() -> None:
    validate_site(_site(time_zone="Europe/Berlin", location=Location(52.5, 13.4), labels={"env": "prod"}))
    validate_device(_device(display_name="Pump 7", labels={"env": "prod"}, serial="SN-1", notes="n" * 4096))


def test_validate_device_reports_each_bad_field() -> None:
    device = _device(display_name="a\nb", labels={"Env": "x"}, serial="s" * 129, notes="n" * 4097,
                     location=Location(0.0, 999.0))
    with pytest.raises(InvalidArgument) as caught:
        validate_device(device)
    assert _fields(caught.value) == ["device.display_name", "device.labels.Env", "device.serial", "device.notes",
                                     "device.location.longitude"]


def test_validate_tenant_requires_id_and_display_name() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_tenant(Tenant(id="A!", display_name=" ", create_time=T0, update_time=T0))
    assert _fields(caught.value) == ["tenant_id", "tenant.display_name"]


# --- etags -----------------------------------------------------------------------------------------

def test_etag_is_the_quoted_version() -> None:
    assert etag_of(7) == '"7"'


def test_matching_or_absent_etag_passes() -> None:
    check_etag('"7"', 7, "devices/x")
    check_etag("", 7, "devices/x")


@pytest.mark.parametrize("given", ['"6"', '"8"', "7", "W/\"7\"", "*"])
def test_stale_or_foreign_etag_is_aborted(given: str) -> None:
    with pytest.raises(Aborted) as caught:
        check_etag(given, 7, "devices/x")
    assert caught.value.reason == "ETAG_MISMATCH"
    assert "devices/x" in caught.value.message and '"7"' in caught.value.message
