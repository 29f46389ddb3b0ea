"""Page sizes, order_by, signed page tokens, and keyset pages that survive concurrent inserts."""

from __future__ import annotations

import base64
import functools
import itertools
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, ColumnElement, Engine, Integer, MetaData, String, Table, column, create_engine, select
from sqlalchemy.dialects import postgresql

from muster.runtime.errors import InvalidArgument
from muster.runtime.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    OrderTerm,
    PageTokens,
    compare_keysets,
    fingerprint,
    keyset_condition,
    order_clauses,
    page_size,
    parse_order_by,
)

SECRET = b"0123456789abcdef-page-token-test"
TOKENS = PageTokens(SECRET)
FP = fingerprint("tenants/t1", 'state = ACTIVE', "display_name desc")
ALLOWED = ("display_name", "serial", "create_time")
DEFAULT = (OrderTerm("create_time"),)
PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy


# --- page_size and order_by ----------------------------------------------------------------------

@pytest.mark.parametrize(("requested", "expected"), [
    (0, DEFAULT_PAGE_SIZE), (1, 1), (MAX_PAGE_SIZE, MAX_PAGE_SIZE), (MAX_PAGE_SIZE + 1, MAX_PAGE_SIZE), (10**9, 500),
])
def test_page_size_defaults_and_clamps(requested: int, expected: int) -> None:
    assert page_size(requested) == expected


def test_negative_page_size_is_invalid() -> None:
    with pytest.raises(InvalidArgument) as caught:
        page_size(-1)
    assert caught.value.violations[0].field == "page_size"


@pytest.mark.parametrize(("text", "expected"), [
    ("", DEFAULT),
    ("  ", DEFAULT),
    ("display_name", (OrderTerm("display_name"),)),
    ("display_name desc, create_time", (OrderTerm("display_name", True), OrderTerm("create_time"))),
    ("  serial   DESC ,create_time asc ", (OrderTerm("serial", True), OrderTerm("create_time"))),
])
def test_parse_order_by(text: str, expected: tuple[OrderTerm, ...]) -> None:
    assert parse_order_by(text, ALLOWED, DEFAULT) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("colour", 'unknown field "colour"; sortable fields: create_time, display_name, serial'),
    ("display_name,", "empty term"),
    ("display_name descending", 'cannot read "display_name descending"'),
    ("display_name desc asc", "cannot read"),
    ("serial, serial desc", '"serial" appears more than once'),
])
def test_bad_order_by_is_explained(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_order_by(text, ALLOWED, DEFAULT)
    assert caught.value.violations[0].field == "order_by"
    assert message in caught.value.violations[0].description


# --- page tokens ---------------------------------------------------------------------------------

KEYSET_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**100), max_value=2**100),
    st.floats(allow_nan=False), st.text(), st.uuids(),
    st.datetimes(timezones=st.sampled_from([UTC, None])),
    # Keyset values come from timestamptz columns: aware, with a fixed offset (named zones can put a
    # local time in a DST gap, which no offset represents exactly).
    st.datetimes(timezones=st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))),
)


@given(st.lists(KEYSET_VALUES, max_size=5), st.text())
def test_token_round_trips_keyset_values(last: list[Any], query: str) -> None:
    token = TOKENS.encode(last=last, fingerprint=query)
    decoded = TOKENS.decode(token, fingerprint=query)
    assert decoded == last
    assert decoded is not None and [type(v) for v in decoded] == [type(v) for v in last]
    assert token.replace("-", "").replace("_", "").isalnum()


def test_empty_token_means_first_page() -> None:
    assert TOKENS.decode("", fingerprint=FP) is None


def _invalid(token: str, tokens: PageTokens = TOKENS) -> str:
    with pytest.raises(InvalidArgument) as caught:
        tokens.decode(token, fingerprint=FP)
    assert caught.value.violations[0].field == "page_token"
    return caught.value.violations[0].description


def _flip(token: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[index] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize("garble", [
    pytest.param(lambda t: _flip(t, 5), id="payload-bit-flipped"),
    pytest.param(lambda t: _flip(t, -1), id="mac-bit-flipped"),
    pytest.param(lambda t: t[:-2], id="truncated"),
    pytest.param(lambda t: t + "AA", id="extended"),
    pytest.param(lambda t: "not a token!", id="not-base64"),
    pytest.param(lambda t: "QUJD", id="too-short"),
    pytest.param(lambda t: "A" * 5000, id="huge"),
])
def test_tampered_token_is_not_valid(garble: Callable[[str], str]) -> None:
    token = TOKENS.encode(last=["pump", 42], fingerprint=FP)
    assert _invalid(garble(token)).startswith("is not valid")


def test_token_from_another_secret_is_not_valid() -> None:
    token = PageTokens(b"another secret, also 16+ bytes").encode(last=[1], fingerprint=FP)
    assert _invalid(token).startswith("is not valid")


def test_token_for_another_query_says_start_again() -> None:
    token = TOKENS.encode(last=[1], fingerprint=fingerprint("tenants/t1", "", "display_name desc"))
    assert _invalid(token) == (
        "was issued for a different filter or order_by; start again without page_token")


def test_fingerprint_tells_parameter_boundaries_apart() -> None:
    assert fingerprint("a", "bc") != fingerprint("ab", "c")
    assert fingerprint("a", "b") == fingerprint("a", "b")


def test_unsupported_keyset_value_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="cannot put a bytes in a page token"):
        TOKENS.encode(last=[b"raw"], fingerprint=FP)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PageTokens(b"short")


# --- SQL shape -----------------------------------------------------------------------------------

PG: dict[str, ColumnElement[Any]] = {"display_name": column("display_name", String),
                                      "serial": column("serial", String)}
ID = column("id", Integer)


def _sql(clause: ColumnElement[Any]) -> str:
    compiled = clause.compile(dialect=PG_DIALECT, compile_kwargs={"literal_binds": True})
    return " ".join(str(compiled).split())


@pytest.mark.parametrize(("order", "last", "sql"), [
    ((), [7], "id > 7"),
    ((OrderTerm("display_name"),), ["m", 7],
     "display_name > 'm' OR display_name IS NULL OR display_name = 'm' AND id > 7"),
    ((OrderTerm("display_name", True), OrderTerm("serial")), ["m", "s", 7],
     "display_name < 'm' OR display_name = 'm' AND (serial > 's' OR serial IS NULL) "
     "OR display_name = 'm' AND serial = 's' AND id > 7"),
    ((OrderTerm("display_name"),), [None, 7], "display_name IS NULL AND id > 7"),
    ((OrderTerm("display_name", True),), [None, 7],
     "display_name IS NOT NULL OR display_name IS NULL AND id > 7"),
])
def test_keyset_condition_shape(order: tuple[OrderTerm, ...], last: list[Any], sql: str) -> None:
    assert _sql(keyset_condition(order, PG, ID, last)) == sql


def test_order_clauses_match_postgres_default_null_placement() -> None:
    clauses = order_clauses((OrderTerm("display_name", True), OrderTerm("serial")), PG, ID)
    assert [_sql(c) for c in clauses] == ["display_name DESC NULLS FIRST", "serial ASC NULLS LAST", "id ASC"]


def test_keyset_of_wrong_length_is_an_invalid_token() -> None:
    with pytest.raises(InvalidArgument, match="page_token"):
        keyset_condition((OrderTerm("serial"),), PG, ID, [7])


# --- pages survive inserts -----------------------------------------------------------------------

Row = tuple[str | None, int, int]  # (display_name, create_minute, id)
ORDERS = [(OrderTerm("display_name"),), (OrderTerm("display_name", True), OrderTerm("create_time")),
          (OrderTerm("create_time", True),), ()]


def _key(order: Sequence[OrderTerm], row: Row) -> list[Any]:
    values = {"display_name": row[0], "create_time": row[1]}
    return [values[t.field] for t in order] + [row[2]]


def _memory_page(rows: list[Row], order: Sequence[OrderTerm], after: list[Any] | None, size: int) -> list[Row]:
    """What a fake repository does: sort with compare_keysets, keep rows after the token's key."""
    def cmp(a: Row, b: Row) -> int:
        return compare_keysets(order, _key(order, a), _key(order, b))
    ordered = sorted(rows, key=functools.cmp_to_key(cmp))
    return [r for r in ordered if after is None or compare_keysets(order, _key(order, r), after) > 0][:size]


@pytest.fixture(scope="module")
def sqlite() -> Iterator[tuple[Engine, Table]]:
    """SQLite (NULLS FIRST/LAST since 3.30) executes keyset_condition and order_clauses for real."""
    engine = create_engine("sqlite://")
    table = Table("devices", MetaData(), Column("id", Integer, primary_key=True),
                  Column("display_name", String), Column("create_time", Integer))
    table.metadata.create_all(engine)
    yield engine, table
    engine.dispose()


def _sql_page(db: tuple[Engine, Table], rows: list[Row], order: Sequence[OrderTerm],
              after: list[Any] | None, size: int) -> list[Row]:
    engine, table = db
    columns = {"display_name": table.c.display_name, "create_time": table.c.create_time}
    with engine.begin() as conn:
        conn.execute(table.delete())
        if rows:
            conn.execute(table.insert(), [{"display_name": n, "create_time": t, "id": i} for n, t, i in rows])
        stmt = select(table.c.display_name, table.c.create_time, table.c.id)
        if after is not None:
            stmt = stmt.where(keyset_condition(order, columns, table.c.id, after))
        stmt = stmt.order_by(*order_clauses(order, columns, table.c.id)).limit(size)
        return [(n, t, i) for n, t, i in conn.execute(stmt)]


ROWS = st.lists(st.tuples(st.none() | st.sampled_from("abcd"), st.integers(0, 3)), max_size=12)


@given(st.sampled_from(ORDERS), ROWS, ROWS, st.integers(1, 4))
@settings(max_examples=150, deadline=None)
def test_paging_survives_inserts(sqlite: tuple[Engine, Table], order: tuple[OrderTerm, ...],
                                 first: list[tuple[str | None, int]], inserted: list[tuple[str | None, int]],
                                 size: int) -> None:
    """Page through `first` while `inserted` rows arrive one per page (ids keep growing, sort keys
    land anywhere): every original row is served exactly once, in order, by SQL and by the fake."""
    for fetch in (functools.partial(_sql_page, sqlite), _memory_page):
        rows: list[Row] = [(n, t, i) for i, (n, t) in enumerate(first)]
        pending = [(n, t, 100 + i) for i, (n, t) in enumerate(inserted)]
        served: list[Row] = []
        after: list[Any] | None = None
        while page := fetch(rows, order, after, size):
            served += page
            after = TOKENS.decode(TOKENS.encode(last=_key(order, page[-1]), fingerprint=FP), fingerprint=FP)
            if pending:
                rows.append(pending.pop())
        assert len(served) == len(set(served)), "a row was served twice"
        assert {r for r in rows if r[2] < 100} <= set(served), "an existing row was skipped"
        keys = [_key(order, r) for r in served]
        assert all(compare_keysets(order, a, b) < 0 for a, b in itertools.pairwise(keys))


def test_compare_keysets_puts_none_last_ascending_first_descending() -> None:
    asc, desc = (OrderTerm("x"),), (OrderTerm("x", True),)
    assert compare_keysets(asc, [None, 1], ["a", 1]) > 0
    assert compare_keysets(desc, [None, 1], ["a", 1]) < 0
    assert compare_keysets(desc, ["a", 1], ["b", 0]) > 0
    assert compare_keysets(asc, ["a", 1], ["a", 2]) < 0
    assert compare_keysets(asc, ["a", 2], ["a", 2]) == 0


def test_datetime_keyset_round_trips_exactly() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC) + timedelta(0)
    assert TOKENS.decode(TOKENS.encode(last=[moment, uuid.UUID(int=1), math.pi], fingerprint=FP),
                         fingerprint=FP) == [moment, uuid.UUID(int=1), math.pi]
