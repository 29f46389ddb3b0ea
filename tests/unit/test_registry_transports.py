"""Device transports: ICCID and IMEI checked by length, prefix and Luhn check digit (on published, real
numbers and the same numbers with one digit wrong), every refusal naming its field path, and the
stored JSON and the proto carrying every field both ways."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import transports_pb2 as tpb
from muster.runtime.errors import InvalidArgument
from services.registry.domain import Device, validate_device
from services.registry.transport_mapping import transports_from_proto, transports_to_proto
from services.registry.transport_repository import transports_from_json, transports_to_json
from services.registry.transports import (
    MAX_TRANSPORTS,
    Cellular,
    Ethernet,
    Lora,
    Protocol,
    Serial,
    SerialStandard,
    Transport,
    Wifi,
    iccid_problem,
    iccids_of,
    imei_problem,
    luhn_valid,
    validate_transports,
)

from .registry_handlers_support import A

# Published sample SIMs (AT&T's 20-digit, a UK 19-digit) and the IMEI from the GSMA/Wikipedia example.
REAL_ICCIDS = ["89014103211118510720", "8944500102198304826"]
REAL_IMEI = "490154203237518"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("iccid", REAL_ICCIDS)
def test_real_iccids_pass(iccid: str) -> None:
    assert luhn_valid(iccid) and iccid_problem(iccid) is None


@pytest.mark.parametrize("iccid", REAL_ICCIDS)
def test_a_wrong_check_digit_fails_the_luhn_check(iccid: str) -> None:
    wrong = iccid[:-1] + str((int(iccid[-1]) + 1) % 10)
    assert not luhn_valid(wrong)
    assert "Luhn" in (iccid_problem(wrong) or "")


def test_swapped_neighbour_digits_are_caught() -> None:
    iccid = REAL_ICCIDS[0]
    swapped = iccid[:5] + iccid[6] + iccid[5] + iccid[7:]
    assert swapped != iccid and iccid_problem(swapped) is not None


@pytest.mark.parametrize(("iccid", "why"), [
    ("890141032111185107", "18 digits"),
    ("890141032111185107200", "21 digits"),
    ("12014103211118510720", '"89"'),
    ("8901410321111851072O", "digits only"),  # a letter O
    ("\uff18\uff19014103211118510720", "digits only"),  # full-width digits are not ASCII
])
def test_malformed_iccids_say_why(iccid: str, why: str) -> None:
    assert why in (iccid_problem(iccid) or "")


def test_imei_is_15_digits_with_a_luhn_check_digit() -> None:
    assert imei_problem(REAL_IMEI) is None
    assert "Luhn" in (imei_problem(REAL_IMEI[:-1] + "9") or "")
    assert imei_problem(REAL_IMEI[:-1]) == "must be 15 digits"


def test_every_problem_names_its_field_path() -> None:
    transports = [
        Transport(Protocol.MQTT, Ethernet("00:1a:2b:3c:4d:5e")),
        Transport(Protocol.MQTT, Cellular(iccid="89014103211118510721", imei="490154203237519", apn="bad apn")),
        Transport(None, Wifi(ssid="x" * 33, mac_address="00-1A-2B-3C-4D-5E")),
        Transport(Protocol.MODBUS_RTU, Serial(SerialStandard.RS485, baud_rate=-1)),
        Transport(Protocol.LORAWAN, Lora(dev_eui="xyz")),
    ]
    fields = [v.field for v in validate_transports(transports, "device.transports")]
    assert fields == ["device.transports[1].cellular.iccid", "device.transports[1].cellular.imei",
                      "device.transports[1].cellular.apn", "device.transports[2].protocol",
                      "device.transports[2].wifi.ssid", "device.transports[2].wifi.mac_address",
                      "device.transports[3].serial.baud_rate", "device.transports[4].lora.dev_eui"]


def test_the_same_sim_twice_in_one_device_is_refused() -> None:
    sim = Transport(Protocol.MQTT, Cellular(iccid=REAL_ICCIDS[0]))
    (problem,) = validate_transports([sim, Transport(Protocol.HTTP), sim], "device.transports")
    assert problem.field == "device.transports[2].cellular.iccid" and "transports[0]" in problem.description


def test_at_most_eight_transports() -> None:
    (problem,) = validate_transports([Transport(Protocol.HTTP)] * (MAX_TRANSPORTS + 1), "device.transports")
    assert problem.field == "device.transports"


def test_validate_device_refuses_a_bad_iccid_naming_the_field() -> None:
    device = Device(tenant_id=A, id="d" * 20, create_time=T0, update_time=T0, transports=(
        Transport(Protocol.MQTT), Transport(Protocol.MQTT, Cellular(iccid="89014103211118510721"))))
    with pytest.raises(InvalidArgument) as caught:
        validate_device(device)
    assert [v.field for v in caught.value.violations] == ["device.transports[1].cellular.iccid"]


ALL_KINDS = (
    Transport(Protocol.MQTT, Cellular(iccid=REAL_ICCIDS[0], imei=REAL_IMEI, apn="iot.example.com", carrier="Acme")),
    Transport(Protocol.HTTP, Wifi(ssid="plant-wlan", mac_address="00:1a:2b:3c:4d:5e")),
    Transport(Protocol.MODBUS_TCP, Ethernet(mac_address="00:1a:2b:3c:4d:5f")),
    Transport(Protocol.MODBUS_RTU, Serial(SerialStandard.RS485, 19200)),
    Transport(Protocol.LORAWAN, Lora(dev_eui="0004a30b001c0530", region="EU868")),
    Transport(Protocol.COAP),
)


def test_json_round_trip_keeps_every_field() -> None:
    assert transports_from_json(transports_to_json(ALL_KINDS)) == ALL_KINDS
    assert transports_to_json(ALL_KINDS[:1]) == [{"protocol": 1, "cellular": {
        "iccid": REAL_ICCIDS[0], "imei": REAL_IMEI, "apn": "iot.example.com", "carrier": "Acme"}}]


def test_proto_round_trip_keeps_every_field() -> None:
    messages = transports_to_proto(ALL_KINDS)
    assert [m.WhichOneof("link") for m in messages] == ["cellular", "wifi", "ethernet", "serial", "lora", None]
    assert transports_from_proto(pb.Device(transports=messages).transports) == ALL_KINDS


def test_an_unknown_protocol_number_is_refused_by_validation() -> None:
    (transport,) = transports_from_proto([tpb.Transport(protocol=99)])  # type: ignore[arg-type]
    assert transport.protocol is None
    assert [v.field for v in validate_transports([transport], "device.transports")] == ["device.transports[0].protocol"]


def test_iccids_of_lists_only_cellular_sims() -> None:
    assert iccids_of(ALL_KINDS) == [REAL_ICCIDS[0]]
