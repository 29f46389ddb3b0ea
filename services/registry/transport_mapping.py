"""Device transports between domain objects and protobuf messages."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from muster.registry.v1 import transports_pb2 as tpb
from services.registry.transports import (
    LINK_NAMES,
    Cellular,
    Ethernet,
    Link,
    Lora,
    Protocol,
    Serial,
    SerialStandard,
    Transport,
    Wifi,
)


def _link_to_proto(link: Link, message: tpb.Transport) -> None:
    if isinstance(link, Ethernet):
        message.ethernet.mac_address = link.mac_address
    elif isinstance(link, Wifi):
        message.wifi.CopyFrom(tpb.WifiLink(ssid=link.ssid, mac_address=link.mac_address))
    elif isinstance(link, Cellular):
        message.cellular.CopyFrom(tpb.CellularLink(iccid=link.iccid, imei=link.imei, apn=link.apn,
                                                   carrier=link.carrier))
    elif isinstance(link, Serial):
        message.serial.CopyFrom(tpb.SerialLink(standard=tpb.SerialStandard.ValueType(int(link.standard)),
                                               baud_rate=link.baud_rate))
    else:
        message.lora.CopyFrom(tpb.LoraLink(dev_eui=link.dev_eui, region=link.region))


def transports_to_proto(transports: Sequence[Transport]) -> list[tpb.Transport]:
    found = []
    for transport in transports:
        message = tpb.Transport(protocol=tpb.TransportProtocol.ValueType(int(transport.protocol or 0)))
        if transport.link is not None:
            _link_to_proto(transport.link, message)
        found.append(message)
    return found


def _link_from_proto(message: tpb.Transport) -> Link | None:
    kind = message.WhichOneof("link")
    if kind == LINK_NAMES[Ethernet]:
        return Ethernet(mac_address=message.ethernet.mac_address)
    if kind == LINK_NAMES[Wifi]:
        return Wifi(ssid=message.wifi.ssid, mac_address=message.wifi.mac_address)
    if kind == LINK_NAMES[Cellular]:
        c = message.cellular
        return Cellular(iccid=c.iccid, imei=c.imei, apn=c.apn, carrier=c.carrier)
    if kind == LINK_NAMES[Serial]:
        standard = message.serial.standard
        return Serial(standard=SerialStandard(standard) if standard in SerialStandard._value2member_map_
                      else SerialStandard.UNSPECIFIED, baud_rate=message.serial.baud_rate)
    if kind == LINK_NAMES[Lora]:
        return Lora(dev_eui=message.lora.dev_eui, region=message.lora.region)
    return None


def transports_from_proto(messages: Iterable[tpb.Transport]) -> tuple[Transport, ...]:
    """Unknown protocol numbers become None, which validation refuses naming the field."""
    return tuple(Transport(Protocol(m.protocol) if m.protocol in Protocol._value2member_map_ else None,
                           _link_from_proto(m)) for m in messages)
