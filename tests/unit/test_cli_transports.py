"""The CLI's one-line summary of a device's transports (the TRANSPORTS row of `muster devices get`)."""

from __future__ import annotations

from muster.cli import output as out
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import transports_pb2 as tpb


def test_transports_show_protocol_link_and_sim() -> None:
    device = pb.Device(transports=[
        tpb.Transport(protocol=tpb.TRANSPORT_PROTOCOL_MQTT, cellular=tpb.CellularLink(iccid="89014103211118510720")),
        tpb.Transport(protocol=tpb.TRANSPORT_PROTOCOL_MODBUS_TCP, ethernet=tpb.EthernetLink()),
        tpb.Transport(protocol=tpb.TRANSPORT_PROTOCOL_COAP),
        tpb.Transport(protocol=42),  # type: ignore[arg-type]  # newer than this CLI
    ])
    assert out.transports(device) == "MQTT/cellular iccid=89014103211118510720; MODBUS_TCP/ethernet; COAP; 42"
    assert out.transports(pb.Device()) == ""
