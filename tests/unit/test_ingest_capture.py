"""Subjects of the device contract, and reading a captured message's JetStream ack subject."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from muster.runtime.device_inbox import device_message
from muster.runtime.device_topics import device_of, errors_subject, levels_of, mqtt_topic
from services.ingest.capture import TELEMETRY

V1 = "$JS.ACK.MUSTER_TELEMETRY.ingest-telemetry.3.1234.77.1795440926465000123.9"
V2 = "$JS.ACK._.ACCHASH.MUSTER_TELEMETRY.ingest-telemetry.3.1234.77.1795440926465000123.9.rnd"


def test_device_subjects() -> None:
    assert TELEMETRY.subject == "muster.v1.devices.*.telemetry"
    assert device_of("muster.v1.devices.abc.telemetry") == "abc"
    assert device_of("muster.v1.devices.abc.commands.c1.ack") == "abc"
    assert device_of("muster.v2.devices.abc.telemetry") is None and device_of("muster.v1.devices") is None
    assert mqtt_topic("muster.v1.devices.abc.logs") == "muster/v1/devices/abc/logs"
    assert errors_subject("abc") == "muster.v1.devices.abc.errors"
    assert levels_of("muster.v1.devices.abc.commands.c1.ack") == ("commands", "c1", "ack")


@pytest.mark.parametrize("reply", [V1, V2])
def test_inbound_reads_the_ack_subject_as_nats_py_does(reply: str) -> None:
    msg = Msg(_client=None, subject="muster.v1.devices.abc.telemetry", reply=reply, data=b"{}")  # type: ignore[arg-type]
    item = device_message(msg)
    assert item is not None
    meta = msg.metadata
    assert (item.device_id, item.topic, item.levels) == ("abc", "muster/v1/devices/abc/telemetry", ("telemetry",))
    assert (item.stream_seq, item.deliveries, item.received) == (meta.sequence.stream, meta.num_delivered,
                                                                 meta.timestamp)
