"""The device side of the twin against in-memory fakes: reports merged in stream order, duplicates and
late reports never roll back, bad input refused with a code and nothing changed, twin/get answered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fakes.twin import FakeTwinStore

from muster.runtime.device_inbox import DeviceMessage, UnknownDevices
from muster.twin.v1 import events_pb2 as ev
from services.twin.documents import Limits
from services.twin.inbox import TwinInbox
from services.twin.reports import Refusal, parse_report

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)


def message(device: str, seq: int, payload: object, topic: str = "twin/reported", deliveries: int = 1) -> DeviceMessage:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return DeviceMessage(device, f"muster/v1/devices/{device}/{topic}", data, seq, NOW, deliveries)


class Answers:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, object]]] = []

    async def __call__(self, device_id: str, levels: str, payload: bytes) -> None:
        self.sent.append((device_id, levels, orjson.loads(payload)))


@pytest.fixture
def store() -> FakeTwinStore:
    s = FakeTwinStore()
    s.add("acme", "d1", NOW)
    return s


GRACE = timedelta(minutes=5)


def inbox(store: FakeTwinStore, answers: Answers | None = None, now: datetime = NOW) -> TwinInbox:
    return TwinInbox(store.factory(), answers or Answers(), Limits(max_bytes=256, max_depth=3),
                     unknown=UnknownDevices(GRACE), clock=lambda: now)


async def test_reports_merge_in_stream_order_and_emit(store: FakeTwinStore) -> None:
    result = await inbox(store).handle([message("d1", 12, {"state": {"t": 2, "fw": "1.1"}}),
                                        message("d1", 10, {"state": {"t": 1}})])
    assert not result.errors and store.twins["d1"].reported == {"t": 2, "fw": "1.1"}
    assert [e.version for e in store.payloads(ev.ReportedStateChanged)] == [1, 2]
    assert store.commits == 1


async def test_a_late_or_duplicate_report_never_rolls_back(store: FakeTwinStore) -> None:
    box = inbox(store)
    await box.handle([message("d1", 20, {"state": {"t": 5, "gone": None}})])
    before = store.twins["d1"]
    await box.handle([message("d1", 20, {"state": {"t": 5, "gone": None}}),  # redelivered
                      message("d1", 19, {"state": {"t": 4, "gone": 1}})])  # older, arrives late
    assert store.twins["d1"] == before and len(store.payloads(ev.ReportedStateChanged)) == 1


@pytest.mark.parametrize(("payload", "code"), [
    (b"not json", "NOT_JSON"),
    (b"[1, 2]", "NOT_OBJECT"),
    ({"state": [1]}, "INVALID_FIELD"),
    ({"state": {"a": 1}, "colour": "red"}, "INVALID_FIELD"),
    ({"state": {"a": {"b": {"c": {"d": 1}}}}}, "DOCUMENT_TOO_DEEP"),
    ({"state": {"a": "x" * 300}}, "DOCUMENT_TOO_LARGE"),
    (b"{" + b" " * 600 + b"}", "PAYLOAD_TOO_LARGE"),
    ({"state": {"a": 1}, "version": "7"}, "INVALID_FIELD"),
    ({"rejected": {"no-slash": {"code": "X"}}}, "INVALID_FIELD"),
    ({"rejected": {"/a": {"message": "no code"}}}, "INVALID_FIELD"),
    ({}, "INVALID_FIELD"),
])
async def test_bad_reports_are_refused_and_change_nothing(store: FakeTwinStore, payload: object, code: str) -> None:
    result = await inbox(store).handle([message("d1", 5, payload)])
    assert [(e.device_id, e.code) for e in result.errors] == [("d1", code)]
    assert store.twins["d1"].reported == {} and not store.events


async def test_an_unknown_device_is_retried_within_the_grace_then_refused(store: FakeTwinStore) -> None:
    """However often it came back: what counts is the message's age (the projection may lag minutes)."""
    young = await inbox(store, now=NOW + GRACE - timedelta(seconds=1)).handle(
        [message("nope", 1, {"state": {"a": 1}}, deliveries=50), message("nope", 2, b"{}", "twin/get")])
    assert set(young.retry) == {0, 1} and not young.errors
    old = await inbox(store, now=NOW + GRACE).handle(
        [message("nope", 1, {"state": {"a": 1}}, deliveries=2), message("nope", 2, b"{}", "twin/get")])
    assert [e.code for e in old.errors] == ["UNKNOWN_DEVICE", "UNKNOWN_DEVICE"] and not old.retry


async def test_twin_get_is_answered_with_the_whole_twin(store: FakeTwinStore) -> None:
    answers = Answers()
    await inbox(store, answers).handle([message("d1", 3, {"state": {"a": 1}}), message("d1", 4, b"{}", "twin/get")])
    assert answers.sent == [("d1", "twin/get/accepted", {"desired": {}, "desired_version": 0, "reported": {"a": 1},
                                                          "reported_version": 1, "delta": {}})]


async def test_rejections_are_recorded_and_withdrawn(store: FakeTwinStore) -> None:
    box = inbox(store)
    await box.handle([message("d1", 3, {"rejected": {"/fan": {"code": "OUT_OF_RANGE", "message": "max 3000"}},
                                        "version": 0})])
    assert store.twins["d1"].rejections["/fan"].code == "OUT_OF_RANGE"
    await box.handle([message("d1", 4, {"rejected": {"/fan": None}})])
    assert store.twins["d1"].rejections == {}


def test_a_report_keeps_integers() -> None:
    report = parse_report(b'{"state": {"a": 5.0, "b": 1.5}}', Limits())
    assert not isinstance(report, Refusal) and report.state == {"a": 5, "b": 1.5}
