"""The AIP-160 subset: parsing, error messages, SQL shape, and SQL/in-memory agreement."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    column,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from muster.runtime.errors import InvalidArgument
from muster.runtime.filtering import (
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    And,
    Comparison,
    Expr,
    FieldKind,
    FilterField,
    FilterSchema,
    Not,
    Or,
    matches,
    parse_filter,
    to_sql,
)

STATES = {"ACTIVE": 2, "DEVICE_STATE_ACTIVE": 2, "RETIRED": 3, "DEVICE_STATE_RETIRED": 3}


def _site(value: str) -> str:
    if not value.startswith("sites/"):
        raise ValueError("expected sites/{site}")
    return value.removeprefix("sites/")


SCHEMA = FilterSchema.of(
    FilterField("display_name", FieldKind.STRING),
    FilterField("serial", FieldKind.STRING),
    FilterField("site", FieldKind.STRING, normalize=_site),
    FilterField("state", FieldKind.ENUM, enum_values=STATES),
    FilterField("create_time", FieldKind.TIMESTAMP),
    FilterField("battery", FieldKind.NUMBER),
    FilterField("online", FieldKind.BOOL),
    map_fields={"labels": "labels"},
)
PG_COLUMNS: dict[str, ColumnElement[Any]] = {
    "display_name": column("display_name", String), "serial": column("serial", String),
    "site": column("site_id", String), "state": column("state", Integer),
    "create_time": column("create_time", DateTime(timezone=True)), "battery": column("battery", Float),
    "online": column("online", Boolean), "labels": column("labels", JSONB),
}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy


def _eq(column_: str, value: Any, kind: FieldKind = FieldKind.STRING, **kw: Any) -> Comparison:
    return Comparison(column_, "=", value, kind, **kw)


def _pg(expr: Expr | None, *, literal: bool = True) -> str:
    assert expr is not None
    compiled = to_sql(expr, PG_COLUMNS).compile(
        dialect=PG_DIALECT, compile_kwargs={"literal_binds": literal})
    return " ".join(str(compiled).split())


# --- parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_blank_filter_means_no_filter(text: str) -> None:
    assert parse_filter(text, SCHEMA) is None


@pytest.mark.parametrize(("text", "expected"), [
    ('display_name = "pump 1"', _eq("display_name", "pump 1")),
    ("display_name=pump", _eq("display_name", "pump")),
    ("serial = 'SN-1'", _eq("serial", "SN-1")),
    ('display_name = "say \\"hi\\"\\n"', _eq("display_name", 'say "hi"\n')),
    ('display_name = "pump*"', _eq("display_name", "pump", prefix=True)),
    ("display_name != pump*", Comparison("display_name", "!=", "pump", prefix=True)),
    ('display_name = "pump\\*"', _eq("display_name", "pump*")),
    ('display_name = "a*b"', _eq("display_name", "a*b")),
    ("display_name < m", Comparison("display_name", "<", "m")),
    ("site = sites/abc", _eq("site", "abc")),
    ("state = ACTIVE", _eq("state", 2, FieldKind.ENUM)),
    ('state != "DEVICE_STATE_RETIRED"', Comparison("state", "!=", 3, FieldKind.ENUM)),
    ("battery >= 20", Comparison("battery", ">=", 20, FieldKind.NUMBER)),
    ("battery < -2.5e1", Comparison("battery", "<", -25.0, FieldKind.NUMBER)),
    ("online = true", _eq("online", True, FieldKind.BOOL)),
    ("online != false", Comparison("online", "!=", False, FieldKind.BOOL)),
    ('create_time > "2026-01-01T00:00:00Z"', Comparison("create_time", ">", T0, FieldKind.TIMESTAMP)),
    ("create_time <= 2026-01-01T02:00:00+02:00", Comparison("create_time", "<=", T0, FieldKind.TIMESTAMP)),
    ('create_time = "2026-01-01T00:00:00.123456789Z"',
     _eq("create_time", T0 + timedelta(microseconds=123456), FieldKind.TIMESTAMP)),
    ('labels.floor = "3"', _eq("labels", "3", key="floor")),
    ("labels.room-2_b != x", Comparison("labels", "!=", "x", key="room-2_b")),
    ('labels.floor = "1*"', _eq("labels", "1", key="floor", prefix=True)),
    ("labels.floor:*", Comparison("labels", ":", None, key="floor")),
])
def test_comparison_parses_to_typed_value(text: str, expected: Comparison) -> None:
    assert parse_filter(text, SCHEMA) == expected


def test_timestamps_are_converted_to_utc() -> None:
    parsed = parse_filter("create_time > 2026-01-01T05:30:00+05:30", SCHEMA)
    assert isinstance(parsed, Comparison)
    assert parsed.value == T0 and parsed.value.tzinfo is UTC


A, B, C = (_eq("serial", s) for s in "abc")


@pytest.mark.parametrize(("text", "expected"), [
    ("serial = a AND serial = b AND serial = c", And((A, B, C))),
    ("serial = a OR serial = b AND serial = c", Or((A, And((B, C))))),
    ("serial = a AND serial = b OR serial = c", Or((And((A, B)), C))),
    ("(serial = a OR serial = b) AND serial = c", And((Or((A, B)), C))),
    ("NOT serial = a AND serial = b", And((Not(A), B))),
    ("-serial = a OR serial = b", Or((Not(A), B))),
    ("NOT (serial = a OR serial = b)", Not(Or((A, B)))),
    ("NOT NOT serial = a", Not(Not(A))),
    ("((serial = a))", A),
])
def test_precedence_is_not_then_and_then_or(text: str, expected: Expr) -> None:
    assert parse_filter(text, SCHEMA) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("serial = a)", "unexpected ')' at position 10"),
    ("serial = a AND", "expected a field name, NOT or '(', found end of filter at position 14"),
    ("(serial = a", "expected ')' to close the '(' at position 0, found end of filter at position 11"),
    ("serial", "expected an operator (=, !=, <, >, <=, >=) after 'serial', found end of filter"),
    ("serial = ", "expected a value after '=', found end of filter at position 9"),
    ("serial = (a)", "unexpected '(' at position 9"),
    ("serial = a serial = b", "unexpected 'serial' at position 11"),
    ("serial ! a", "unexpected character '!' at position 7"),
    ('serial = "abc', "unterminated string starting at position 9"),
    ('serial = "a\\qb"', "unknown escape '\\q' at position 11"),
    ("serial = a and serial = b", "unexpected 'and' at position 11 (near 'erial = a and serial'); write AND"),
    ("= a", "unexpected '=' at position 0"),
])
def test_syntax_error_says_where(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_filter(text, SCHEMA)
    assert caught.value.violations[0].field == "filter"
    assert message in caught.value.violations[0].description
    assert caught.value.message.startswith("filter: ")


@pytest.mark.parametrize(("text", "message"), [
    ("colour = red", 'unknown field "colour" at position 0'),
    ("colour = red", "filterable fields: display_name, serial, site, state, create_time, battery, online, "
                     "labels.<key>"),
    ("state = BROKEN", 'unknown state "BROKEN"; expected one of ACTIVE, DEVICE_STATE_ACTIVE'),
    ("state > ACTIVE", "state supports only = and !=, not >"),
    ("online = yes", 'online is true or false, not "yes"'),
    ("battery = lots", 'battery is a number, not "lots"'),
    ("create_time > yesterday", 'invalid timestamp "yesterday" for create_time; use RFC 3339'),
    ('create_time > "2026-01-01T00:00:00"', "invalid timestamp"),
    ('create_time > "2026-13-01T00:00:00Z"', "invalid timestamp"),
    ("site = abc", 'invalid site "abc": expected sites/{site}'),
    ('site = "sites/a*"', "a trailing '*' (prefix match) needs = or != on a text field"),
    ('serial > "a*"', "a trailing '*' (prefix match) needs = or != on a text field, not > on serial"),
    ("battery = 1*", "a trailing '*' (prefix match)"),
    ('labels = "x"', 'labels needs a key, e.g. labels.<key> = "value"'),
    ('labels.Floor = "x"', 'invalid key "Floor" in labels.Floor'),
    ('labels.floor < "3"', "labels.<key> supports only =, != and :*, not <"),
    ('labels.floor:"3"', "':' only checks presence: write labels.floor:*"),
    ("serial:*", "':' only checks a map key's presence"),
    ("serial.x = 1", 'unknown field "serial.x"'),
])
def test_bad_field_or_value_is_explained(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_filter(text, SCHEMA)
    assert caught.value.violations[0].field == "filter"
    assert message in caught.value.violations[0].description


def test_overlong_filter_is_refused() -> None:
    text = " OR ".join(["serial = a"] * 200)
    assert len(text) > MAX_FILTER_LENGTH
    with pytest.raises(InvalidArgument, match=f"longer than {MAX_FILTER_LENGTH} characters"):
        parse_filter(text, SCHEMA)


@pytest.mark.parametrize("opener", ["(", "NOT ", "-"])
def test_deep_nesting_is_refused_not_a_recursion_error(opener: str) -> None:
    closer = ")" if opener == "(" else ""
    assert parse_filter(opener * MAX_DEPTH + "serial = a" + closer * MAX_DEPTH, SCHEMA) is not None
    with pytest.raises(InvalidArgument, match=f"more than {MAX_DEPTH} deep"):
        parse_filter(opener * (MAX_DEPTH + 1) + "serial = a" + closer * (MAX_DEPTH + 1), SCHEMA)


def test_long_flat_conjunction_stays_flat() -> None:
    parsed = parse_filter(" AND ".join(["serial=a"] * 150), SCHEMA)
    assert isinstance(parsed, And) and len(parsed.items) == 150


# --- SQL shape -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "sql"), [
    ("state = ACTIVE", "state = 2"),
    ("serial != a", "serial IS DISTINCT FROM 'a'"),
    ("battery <= 20", "battery <= 20"),
    ('display_name = "50%_off*"', "display_name LIKE '50/%/_off' || '%' ESCAPE '/'"),
    ('display_name != "pump*"', "NOT coalesce((display_name LIKE 'pump' || '%' ESCAPE '/'), false)"),
    ("site = sites/abc AND (serial = a OR serial = b)", "site_id = 'abc' AND (serial = 'a' OR serial = 'b')"),
    ("NOT serial = a", "NOT coalesce(serial = 'a', false)"),
    ("online = true", "online = true"),
    ("create_time >= 2026-01-01T00:00:00Z", "create_time >= '2026-01-01 00:00:00+00:00'"),
    ('labels.floor = "1*"', "(labels ->> 'floor') LIKE '1' || '%' ESCAPE '/'"),
])
def test_to_sql_renders_postgres_predicate(text: str, sql: str) -> None:
    assert _pg(parse_filter(text, SCHEMA)).replace("%%", "%") == sql


def test_label_equality_uses_gin_indexable_containment() -> None:
    expr = parse_filter('labels.floor = "3" AND labels.zone != "b" AND labels.owner:*', SCHEMA)
    assert _pg(expr, literal=False) == (
        "(labels @> %(labels_1)s::JSONB) AND NOT coalesce((labels @> %(labels_2)s::JSONB), false) "
        "AND (labels ? %(labels_3)s::VARCHAR)")
    assert expr is not None
    params = to_sql(expr, PG_COLUMNS).compile(dialect=PG_DIALECT).params
    assert params == {"labels_1": {"floor": "3"}, "labels_2": {"zone": "b"}, "labels_3": "owner"}


# --- in-memory semantics -------------------------------------------------------------------------

RECORD = {"display_name": "Pump 7", "serial": "SN-7", "site": None, "state": 2, "create_time": T0,
          "battery": 40, "online": True, "labels": {"floor": "3"}}


@pytest.mark.parametrize(("text", "expected"), [
    ('display_name = "Pump*"', True),
    ('display_name = "pump*"', False),  # prefix match is case-sensitive
    ("display_name > P", True),
    ("site = sites/x", False),
    ("site != sites/x", True),  # a missing value satisfies only !=
    ("NOT site = sites/x", True),  # NOT is two-valued
    ("site < sites/x", False),
    ("NOT site < sites/x", True),
    ("state = ACTIVE AND battery > 39.5", True),
    ("state = RETIRED OR online = false", False),
    ("create_time < 2026-01-01T00:00:01Z", True),
    ('labels.floor = "3"', True),
    ('labels.floor != "3"', False),
    ('labels.zone != "b"', True),  # no such label: != holds
    ('labels.zone = "b"', False),
    ("labels.floor:*", True),
    ("labels.zone:*", False),
    ("NOT labels.zone:*", True),
])
def test_matches_semantics(text: str, expected: bool) -> None:
    assert matches(parse_filter(text, SCHEMA), RECORD) is expected


def test_matches_none_filter_matches_everything() -> None:
    assert matches(None, {})


def test_matches_treats_missing_map_as_empty() -> None:
    assert matches(parse_filter('labels.a != "x"', SCHEMA), {"labels": None})
    assert not matches(parse_filter("labels.a:*", SCHEMA), {})


# --- property: the parser and `matches` agree with a reference; SQL agrees with `matches` --------

Reference = Callable[[Mapping[str, Any]], bool]
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}
_TIMES = [T0 + timedelta(hours=h) for h in range(3)]
_NAMES = ["", "a", "ab", "b", "a%", "A_b"]


def _reference(field: str, op: str, value: Any, prefix: bool = False) -> Reference:
    def check(record: Mapping[str, Any]) -> bool:
        actual = record.get(field)
        if prefix:
            hit = actual is not None and actual.startswith(value)
            return hit if op == "=" else not hit
        if op == "!=":
            return actual is None or actual != value
        return actual is not None and _OPS[op](actual, value)
    return check


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("*", "\\*") + '"'


@st.composite
def _comparisons(draw: st.DrawFn) -> tuple[str, Reference]:
    op = draw(st.sampled_from(list(_OPS)))
    choice = draw(st.sampled_from(["display_name", "prefix", "state", "battery", "online", "create_time"]))
    if choice == "prefix":
        op, name = draw(st.sampled_from(["=", "!="])), draw(st.sampled_from(_NAMES))
        return f"display_name {op} {_quote(name)[:-1]}*\"", _reference("display_name", op, name, True)
    if choice == "display_name":
        name = draw(st.sampled_from(_NAMES))
        return f"display_name {op} {_quote(name)}", _reference(choice, op, name)
    if choice in ("state", "online"):
        op = draw(st.sampled_from(["=", "!="]))
        token, value = draw(st.sampled_from(
            [("ACTIVE", 2), ("DEVICE_STATE_RETIRED", 3)] if choice == "state" else [("true", True), ("false", False)]))
        return f"{choice} {op} {token}", _reference(choice, op, value)
    if choice == "battery":
        value = draw(st.integers(-2, 2))
        return f"battery {op} {value}", _reference(choice, op, value)
    moment = draw(st.sampled_from(_TIMES))
    return f'create_time {op} "{moment.isoformat()}"', _reference(choice, op, moment)


def _combine(children: st.SearchStrategy[tuple[str, Reference]]) -> st.SearchStrategy[tuple[str, Reference]]:
    def negate(pair: tuple[str, Reference]) -> tuple[str, Reference]:
        return f"NOT ({pair[0]})", lambda r: not pair[1](r)

    def join(pairs: list[tuple[str, Reference]], word: str) -> tuple[str, Reference]:
        text = f" {word} ".join(f"({t})" for t, _ in pairs)
        if word == "AND":
            return text, lambda r: all(check(r) for _, check in pairs)
        return text, lambda r: any(check(r) for _, check in pairs)

    many = st.lists(children, min_size=2, max_size=3)
    return st.one_of(children.map(negate), many.map(lambda p: join(p, "AND")), many.map(lambda p: join(p, "OR")))


FILTERS = st.recursive(_comparisons(), _combine, max_leaves=8)
RECORDS = st.fixed_dictionaries({
    "display_name": st.none() | st.sampled_from([*_NAMES, "abc", "b%"]),
    "state": st.none() | st.sampled_from([2, 3]),
    "battery": st.none() | st.integers(-3, 3),
    "online": st.none() | st.booleans(),
    "create_time": st.none() | st.sampled_from(_TIMES),
})


@given(FILTERS, st.lists(RECORDS, max_size=6))
@settings(max_examples=300)
def test_matches_agrees_with_reference(case: tuple[str, Reference], records: list[dict[str, Any]]) -> None:
    text, reference = case
    expr = parse_filter(text, SCHEMA)
    for record in records:
        assert matches(expr, record) == reference(record), (text, record)


@pytest.fixture(scope="module")
def sqlite() -> Iterator[tuple[Engine, Table]]:
    """SQLite stands in for PostgreSQL to execute the non-JSONB predicates for real."""
    engine = create_engine("sqlite://")
    event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA case_sensitive_like = ON"))
    table = Table("devices", MetaData(), Column("id", Integer, primary_key=True),
                  Column("display_name", String), Column("state", Integer), Column("battery", Integer),
                  Column("online", Boolean), Column("create_time", DateTime(timezone=True)))
    table.metadata.create_all(engine)
    yield engine, table
    engine.dispose()


@given(FILTERS, st.lists(RECORDS, max_size=6))
@settings(max_examples=150)
def test_sql_selects_exactly_the_rows_matches_accepts(
        sqlite: tuple[Engine, Table], case: tuple[str, Reference], records: list[dict[str, Any]]) -> None:
    engine, table = sqlite
    expr = parse_filter(case[0], SCHEMA)
    assert expr is not None
    with engine.begin() as conn:
        conn.execute(table.delete())
        if records:
            conn.execute(insert(table), [{"id": i, **r} for i, r in enumerate(records)])
        found = set(conn.scalars(select(table.c.id).where(to_sql(expr, {c.name: c for c in table.c}))))
    assert found == {i for i, r in enumerate(records) if matches(expr, r)}, case[0]


def test_offsets_other_than_utc_compare_as_instants() -> None:
    later = datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=-1)))  # 02:00Z
    assert matches(parse_filter("create_time > 2026-01-01T01:30:00Z", SCHEMA), {"create_time": later})
