"""How a device reaches the platform: a protocol over a physical link (Ethernet, Wi-Fi, cellular with
its SIM, a serial line, LoRa), and the checks on their identifiers (ICCID and IMEI by their Luhn check
digit), so a mistyped SIM number is refused at the door instead of breaking carrier linking later.
No I/O here."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from muster.runtime.errors import FieldViolation

MAX_TRANSPORTS = 8
MAX_SSID = 32
MAX_APN = 100
MAX_CARRIER = 100
MAX_REGION = 16
MAX_BAUD_RATE = 4_000_000
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_DEV_EUI = re.compile(r"^[0-9a-f]{16}$")
_APN = re.compile(r"^[A-Za-z0-9.-]*$")


class Protocol(enum.IntEnum):
    """Numbered as muster.registry.v1.TransportProtocol."""

    MQTT = 1
    HTTP = 2
    COAP = 3
    LWM2M = 4
    LORAWAN = 5
    MODBUS_TCP = 6
    MODBUS_RTU = 7
    OPC_UA = 8


class SerialStandard(enum.IntEnum):
    UNSPECIFIED = 0
    RS232 = 1
    RS485 = 2


@dataclass(frozen=True)
class Ethernet:
    mac_address: str = ""


@dataclass(frozen=True)
class Wifi:
    ssid: str = ""
    mac_address: str = ""


@dataclass(frozen=True)
class Cellular:
    iccid: str = ""
    imei: str = ""
    apn: str = ""
    carrier: str = ""


@dataclass(frozen=True)
class Serial:
    standard: SerialStandard = SerialStandard.UNSPECIFIED
    baud_rate: int = 0


@dataclass(frozen=True)
class Lora:
    dev_eui: str = ""
    region: str = ""


Link = Ethernet | Wifi | Cellular | Serial | Lora
LINK_NAMES: dict[type, str] = {Ethernet: "ethernet", Wifi: "wifi", Cellular: "cellular", Serial: "serial",
                               Lora: "lora"}
"""The proto oneof field (and JSON key) of each kind of link."""


@dataclass(frozen=True)
class Transport:
    protocol: Protocol | None  # None: the caller left it unspecified (refused by validation)
    link: Link | None = None  # None: connectivity unknown


def luhn_valid(digits: str) -> bool:
    """True when the last digit is the Luhn (mod 10) check digit of the others."""
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iccid_problem(iccid: str) -> str | None:
    """Why `iccid` is not a SIM's ICCID (ITU-T E.118), or None when it is one."""
    if not iccid.isascii() or not iccid.isdigit():
        return "must be digits only"
    if not 19 <= len(iccid) <= 20:
        return f"has {len(iccid)} digits; an ICCID has 19 or 20"
    if not iccid.startswith("89"):
        return 'must start with "89" (the telecom industry prefix)'
    if not luhn_valid(iccid):
        return "fails the Luhn check: the last digit is not the check digit of the others (a typo?)"
    return None


def imei_problem(imei: str) -> str | None:
    """Why `imei` is not a 15-digit IMEI with its Luhn check digit, or None when it is one."""
    if not imei.isascii() or not imei.isdigit() or len(imei) != 15:
        return "must be 15 digits"
    if not luhn_valid(imei):
        return "fails the Luhn check: the last digit is not the check digit of the others (a typo?)"
    return None


def _text(value: str, path: str, limit: int) -> list[FieldViolation]:
    if len(value) > limit:
        return [FieldViolation(path, f"is {len(value)} characters; at most {limit}")]
    if value and not value.isprintable():
        return [FieldViolation(path, "must be printable characters")]
    return []


def _mac(value: str, path: str) -> list[FieldViolation]:
    if value and not _MAC.match(value):
        return [FieldViolation(path, 'must be six lower-case hex pairs separated by ":", e.g. "00:1a:2b:3c:4d:5e"')]
    return []


def _link_problems(link: Link, path: str) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    if isinstance(link, Ethernet):
        problems += _mac(link.mac_address, f"{path}.mac_address")
    elif isinstance(link, Wifi):
        problems += _text(link.ssid, f"{path}.ssid", MAX_SSID) + _mac(link.mac_address, f"{path}.mac_address")
    elif isinstance(link, Cellular):
        if link.iccid and (why := iccid_problem(link.iccid)):
            problems.append(FieldViolation(f"{path}.iccid", why))
        if link.imei and (why := imei_problem(link.imei)):
            problems.append(FieldViolation(f"{path}.imei", why))
        if len(link.apn) > MAX_APN or not _APN.match(link.apn):
            problems.append(FieldViolation(f"{path}.apn", f"must be at most {MAX_APN} of [A-Za-z0-9.-]"))
        problems += _text(link.carrier, f"{path}.carrier", MAX_CARRIER)
    elif isinstance(link, Serial):
        if not 0 <= link.baud_rate <= MAX_BAUD_RATE:
            problems.append(FieldViolation(f"{path}.baud_rate", f"must be between 0 (unknown) and {MAX_BAUD_RATE}"))
    elif isinstance(link, Lora):
        if link.dev_eui and not _DEV_EUI.match(link.dev_eui):
            problems.append(FieldViolation(f"{path}.dev_eui", "must be 16 lower-case hex digits"))
        problems += _text(link.region, f"{path}.region", MAX_REGION)
    return problems


def validate_transports(transports: Sequence[Transport], path: str) -> list[FieldViolation]:
    """Every problem, each naming its field, e.g. `device.transports[1].cellular.iccid`."""
    if len(transports) > MAX_TRANSPORTS:
        return [FieldViolation(path, f"has {len(transports)} transports; at most {MAX_TRANSPORTS}")]
    problems: list[FieldViolation] = []
    seen_iccids: dict[str, int] = {}
    for i, transport in enumerate(transports):
        here = f"{path}[{i}]"
        if transport.protocol is None:
            problems.append(FieldViolation(f"{here}.protocol", "is required: " + ", ".join(
                f"TRANSPORT_PROTOCOL_{p.name}" for p in Protocol)))
        if transport.link is None:
            continue
        link_path = f"{here}.{LINK_NAMES[type(transport.link)]}"
        problems += _link_problems(transport.link, link_path)
        if isinstance(transport.link, Cellular) and transport.link.iccid:
            first = seen_iccids.setdefault(transport.link.iccid, i)
            if first != i:
                problems.append(FieldViolation(f"{link_path}.iccid", f"repeats transports[{first}]'s ICCID"))
    return problems


def iccids_of(transports: Sequence[Transport]) -> list[str]:
    """The SIM ICCIDs among `transports`, in order (what the registry indexes)."""
    return [t.link.iccid for t in transports if isinstance(t.link, Cellular) and t.link.iccid]
