"""Presence beyond connect and disconnect, end to end: a device that announced its heartbeat interval
and goes silent while connected becomes STALE, and ONLINE again on its next message; telemetry (through
ingest's LatestTelemetryChanged) advances last_seen; the 24 h / 72 h disconnect counts over a history of
NATS disconnect advisories of several ages and reasons. Real NATS (JetStream + MQTT), PostgreSQL,
ingest, twin."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import nats
import orjson
import pytest
from helpers import PlatformLike, field_violations, service_nats_url

from muster.runtime.bus import EVENTS_STREAM
from muster.runtime.events import nats_subject
from muster.twin.v1 import connectivity_service_pb2 as pb
from muster.twin.v1 import events_pb2 as tev
from services.twin.system_events import advisory_event

from .connectivity_support import log_of, until
from .edge_support import connected
from .twin_support import TwinDevice, TwinStub, twin_device
from .twin_support import twin_channel as twin_channel  # fixture
from .twin_support import twins as twins  # fixture

pytestmark = pytest.mark.platform


async def test_a_silent_device_that_announced_its_interval_is_stale_then_online_on_traffic(
        platform: PlatformLike, twins: TwinStub, twin_channel: grpc.aio.Channel) -> None:
    device = await twin_device(platform, twins)
    async with connected(platform, device.device) as mqtt:
        await mqtt.publish(device.topic("status"), b'{"online": true, "heartbeat_interval": 1}', qos=1)
        online = await until(twin_channel, device, lambda c: c.presence == tev.PRESENCE_ONLINE
                             and c.stale_after.ToTimedelta() == timedelta(seconds=2))
        # connected all along (keep-alive pings are not traffic), but silent past two intervals
        stale = await until(twin_channel, device, lambda c: c.presence == tev.PRESENCE_STALE, timeout=20)
        assert stale.reason == "silent" and stale.session.session_id == online.session.session_id
        assert stale.since.ToDatetime() >= online.last_seen.ToDatetime() + timedelta(seconds=2)
        await mqtt.publish(device.topic("heartbeat"), b'{"battery": 90}', qos=1)
        back = await until(twin_channel, device, lambda c: c.presence == tev.PRESENCE_ONLINE)
    assert back.reason == "traffic" and back.since.ToDatetime() > stale.since.ToDatetime()


async def test_telemetry_advances_last_seen(platform: PlatformLike, twins: TwinStub,
                                            twin_channel: grpc.aio.Channel) -> None:
    """A connected device that sends only telemetry (no birth, no twin or heartbeat messages): nothing but
    ingest's LatestTelemetryChanged can tell the twin, and last_seen is the reading's own time."""
    device = await twin_device(platform, twins)
    async with connected(platform, device.device) as mqtt:
        online = await until(twin_channel, device, lambda c: c.presence == tev.PRESENCE_ONLINE)
        assert not online.HasField("last_seen")
        sent = datetime.now(UTC).replace(microsecond=123000) + timedelta(seconds=30)  # unlike any other time
        payload = orjson.dumps({"ts": int(sent.timestamp() * 1000), "metrics": {"temp": 21.5}})
        await mqtt.publish(device.topic("telemetry"), payload, qos=1)
        seen = await until(twin_channel, device, lambda c: c.HasField("last_seen"), timeout=30)
    assert seen.last_seen.ToDatetime(tzinfo=UTC) == sent


def _advisory(device: TwinDevice, cid: int, started: datetime, stopped: datetime | None = None,
              reason: str = "", account: str = "MUSTER") -> dict[str, object]:
    kind = "client_disconnect" if stopped else "client_connect"
    client: dict[str, object] = {"start": started.isoformat().replace("+00:00", "Z"), "host": "10.0.0.9",
                                 "port": 40000 + cid, "id": cid, "acc": account, "user": device.id,
                                 "client_type": "mqtt", "client_id": f"{device.id}-{cid}"}
    if stopped:
        client["stop"] = stopped.isoformat().replace("+00:00", "Z")
    return {"type": f"io.nats.server.advisory.v1.{kind}", "id": uuid.uuid4().hex, "server": {"id": "NHISTORY"},
            "timestamp": (stopped or started).isoformat().replace("+00:00", "Z"), "reason": reason, "client": client}


async def test_disconnect_counts_cover_24_and_72_hours_by_reason(platform: PlatformLike, twins: TwinStub,
                                                                 twin_channel: grpc.aio.Channel) -> None:
    """Sessions ended `hours` ago for NATS's `reason`, as the twin's advisory relay would have
    republished them: counted by age and abnormality; refused connects never count."""
    device = await twin_device(platform, twins)
    now = datetime.now(UTC)
    history = [(80, "Read Error"), (30, "Client Closed"), (29, "Write Error"), (10, "Kicked"),
               (2, "Read Error"), (1, "Client Closed")]
    advisories = []
    for cid, (hours, reason) in enumerate(history, start=1):
        ended = now - timedelta(hours=hours)
        advisories += [_advisory(device, cid, ended - timedelta(minutes=5)),
                       _advisory(device, cid, ended - timedelta(minutes=5), ended, reason)]
    advisories.append(_advisory(device, 99, now - timedelta(minutes=30), now - timedelta(minutes=30),
                                "Authentication Failure", account="$G"))
    nc = await nats.connect(service_nats_url(platform))
    try:
        js = nc.jetstream()
        for document in advisories:
            raw = orjson.dumps(document)
            event = advisory_event(orjson.loads(raw), raw)
            assert event is not None
            await js.publish(nats_subject(event), event.SerializeToString(), headers={"Nats-Msg-Id": event.id},
                             stream=EVENTS_STREAM)
    finally:
        await nc.close()
    counted = await until(twin_channel, device, lambda c: c.disconnects_72h >= 5, timeout=20)
    assert (counted.disconnects_24h, counted.abnormal_disconnects_24h) == (3, 2)  # 10 h kicked, 2 h read error, 1 h
    assert (counted.disconnects_72h, counted.abnormal_disconnects_72h) == (5, 3)  # + 30 h closed, 29 h write error
    assert counted.presence == tev.PRESENCE_OFFLINE and counted.reason == "client_disconnect"
    assert counted.session.client_id == f"{device.id}-6"
    troubles = await log_of(twin_channel, device, 'kind = DISCONNECTED AND NOT reason = "CLIENT_DISCONNECT"')
    assert [e.reason for e in troubles] == [  # newest first, the default 72 hours
        pb.DISCONNECT_REASON_AUTH_REFUSED, pb.DISCONNECT_REASON_KEEPALIVE_TIMEOUT, pb.DISCONNECT_REASON_KICKED,
        pb.DISCONNECT_REASON_CONNECTION_LOST]
    connects = await log_of(twin_channel, device, "kind = CONNECTION_EVENT_KIND_CONNECTED")
    assert len(connects) == 5 and {e.kind for e in connects} == {pb.CONNECTION_EVENT_KIND_CONNECTED}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await log_of(twin_channel, device, "reason = SOMETIMES")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "filter" in field_violations(refused.value)
