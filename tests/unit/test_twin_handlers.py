"""Twin use cases against the in-memory unit of work: etags, limits, revisions, rollback, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes.twin import FakeTwinStore

from muster.runtime.auth import Principal, Role
from muster.runtime.errors import Aborted, InvalidArgument, NotFound, PermissionDenied
from muster.runtime.pagination import PageTokens
from muster.twin.v1 import events_pb2 as ev
from services.twin.documents import Limits
from services.twin.handlers import Rollback, TwinHandlers, UpdateDesired
from services.twin.twin import Twin

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)
OPERATOR = Principal(subject="ops@acme", role=Role.OPERATOR, tenant="acme")
OTHER = Principal(subject="ops@other", role=Role.OPERATOR, tenant="other")


@pytest.fixture
def store() -> FakeTwinStore:
    s = FakeTwinStore()
    s.add("acme", "d1", NOW)
    return s


def handlers(store: FakeTwinStore, pushed: list[Twin] | None = None, limits: Limits | None = None) -> TwinHandlers:
    ticks = iter(NOW + timedelta(seconds=i) for i in range(1000))
    return TwinHandlers(store.factory(), PageTokens(b"k" * 32), limits or Limits(), clock=lambda: next(ticks),
                        on_desired=pushed.append if pushed is not None else None)


async def test_update_desired_merges_makes_a_revision_emits_and_pushes(store: FakeTwinStore) -> None:
    pushed: list[Twin] = []
    h = handlers(store, pushed)
    twin = await h.get_twin(OPERATOR, "d1")
    after = await h.update_desired(OPERATOR, UpdateDesired("d1", {"fan": {"speed": 1200}}, etag=twin.etag))
    assert after.desired == {"fan": {"speed": 1200}} and after.desired_version == 1
    assert after.etag != twin.etag and not after.in_sync
    assert [p.desired_version for p in pushed] == [1]
    changed = store.payloads(ev.DesiredStateChanged)
    assert [(c.device, c.version, c.actor) for c in changed] == [("devices/d1", 1, "ops@acme")]
    assert [s.in_sync for s in store.payloads(ev.TwinSyncChanged)] == [False]
    revisions, token = await h.list_revisions(OPERATOR, "d1", size=0, token="")
    assert [(r.revision, r.patch, r.actor) for r in revisions] == [(1, {"fan": {"speed": 1200}}, "ops@acme")]
    assert token == ""


async def test_a_stale_etag_is_aborted_and_nothing_is_merged(store: FakeTwinStore) -> None:
    h = handlers(store)
    first = await h.get_twin(OPERATOR, "d1")
    await h.update_desired(OPERATOR, UpdateDesired("d1", {"a": 1}, etag=first.etag))
    with pytest.raises(Aborted) as caught:
        await h.update_desired(OPERATOR, UpdateDesired("d1", {"b": 2}, etag=first.etag))
    assert caught.value.reason == "ETAG_MISMATCH"
    assert store.twins["d1"].desired == {"a": 1} and len(store.revisions) == 1


async def test_a_device_report_does_not_make_the_etag_stale(store: FakeTwinStore) -> None:
    h = handlers(store)
    read = await h.get_twin(OPERATOR, "d1")
    store.twins["d1"] = Twin(**{**read.__dict__, "reported": {"x": 1}, "reported_version": 1})
    after = await h.update_desired(OPERATOR, UpdateDesired("d1", {"a": 1}, etag=read.etag))
    assert after.desired == {"a": 1}


async def test_a_write_without_etag_needs_force(store: FakeTwinStore) -> None:
    h = handlers(store)
    with pytest.raises(InvalidArgument) as caught:
        await h.update_desired(OPERATOR, UpdateDesired("d1", {"a": 1}))
    assert caught.value.violations[0].field == "etag"
    assert (await h.update_desired(OPERATOR, UpdateDesired("d1", {"a": 1}, force=True))).desired == {"a": 1}


async def test_over_the_limit_is_refused_with_size_and_limit(store: FakeTwinStore) -> None:
    h = handlers(store, limits=Limits(max_bytes=300, max_depth=3))
    with pytest.raises(InvalidArgument) as big:
        await h.update_desired(OPERATOR, UpdateDesired("d1", {"a": "x" * 400}, force=True))
    assert big.value.violations[0].field == "patch" and "over the limit of 300 bytes" in big.value.message
    with pytest.raises(InvalidArgument) as deep:
        await h.update_desired(OPERATOR, UpdateDesired("d1", {"a": {"b": {"c": {"d": 1}}}}, force=True))
    assert "4 levels deep" in deep.value.message and "limit of 3" in deep.value.message
    assert store.twins["d1"].desired_version == 0 and not store.events


async def test_rollback_makes_a_new_revision_with_the_old_state(store: FakeTwinStore) -> None:
    h = handlers(store)
    await h.update_desired(OPERATOR, UpdateDesired("d1", {"a": 1, "n": {"x": 1}}, force=True))
    await h.update_desired(OPERATOR, UpdateDesired("d1", {"a": 2, "n": {"y": 2}, "b": True}, force=True))
    after = await h.rollback(OPERATOR, Rollback("d1", 1, force=True))
    assert after.desired == {"a": 1, "n": {"x": 1}} and after.desired_version == 3
    revisions, _ = await h.list_revisions(OPERATOR, "d1", size=0, token="")
    assert [(r.revision, r.rollback_of) for r in revisions] == [(3, 1), (2, None), (1, None)]
    assert revisions[0].patch == {"a": 1, "n": {"y": None}, "b": None}
    assert store.payloads(ev.DesiredStateChanged)[-1].rollback_of == 1
    with pytest.raises(NotFound):
        await h.rollback(OPERATOR, Rollback("d1", 9, force=True))


async def test_revisions_are_paginated_newest_first(store: FakeTwinStore) -> None:
    h = handlers(store)
    for i in range(5):
        await h.update_desired(OPERATOR, UpdateDesired("d1", {"i": i}, force=True))
    seen, token = [], ""
    while True:
        page, token = await h.list_revisions(OPERATOR, "d1", size=2, token=token)
        seen += [r.revision for r in page]
        if not token:
            break
    assert seen == [5, 4, 3, 2, 1]


async def test_other_tenants_twins_are_not_found(store: FakeTwinStore) -> None:
    h = handlers(store)
    with pytest.raises(NotFound):
        await h.get_twin(OTHER, "d1")
    with pytest.raises(NotFound):
        await h.update_desired(OTHER, UpdateDesired("d1", {"a": 1}, force=True))


async def test_platform_admins_need_a_tenant_token(store: FakeTwinStore) -> None:
    admin = Principal(subject="root", role=Role.PLATFORM_ADMIN, tenant=None)
    with pytest.raises(PermissionDenied):
        await handlers(store).get_twin(admin, "d1")
