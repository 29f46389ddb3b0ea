r"""A subset of the AIP-160 filter language for List RPCs: `parse_filter` turns the request's text
into a typed AST checked against the resource's schema, `to_sql` renders it as SQLAlchemy Core,
and `matches` evaluates it in memory with the same semantics (for fakes in unit tests).

    expr    := and ("OR" and)*
    and     := unary ("AND" unary)*
    unary   := ("NOT" | "-") unary | "(" expr ")" | compare
    compare := field op value      op: = != < > <= >=, and `<map>.<key>:*` (key present)
    field   := name | map "." key  key: [a-z0-9_-]+
    value   := "double" or 'single' quoted (escapes \\ \" \' \n \t \r \*) | bare word | number | true/false

Deliberate choices, so callers can rely on them:
- Precedence is the usual NOT > AND > OR. (AIP-160 binds OR tighter than AND, which surprises
  everyone who reads `a AND b OR c`; use parentheses when in doubt.) Keywords are upper case;
  juxtaposition (implicit AND) is not supported.
- A string value ending in an unescaped `*` with `=` / `!=` is a prefix match
  (`display_name = "pump*"`); `\\*` is a literal star.
- A missing (NULL) value satisfies only `!=`; NOT is two-valued (the SQL side wraps in COALESCE).
- Enums and booleans support only `=` / `!=`; `<` and `>` on strings are lexical (on the SQL side
  in the column's collation). Timestamps are RFC 3339 with an offset, compared as instants.
"""

from __future__ import annotations

import enum
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from typing import Any, TypeAlias, cast

from sqlalchemy import ColumnElement, and_, false, func, not_, or_

from muster.runtime.errors import InvalidArgument, MusterError

MAX_FILTER_LENGTH = 2000
MAX_DEPTH = 32
_KEY = re.compile(r"[a-z0-9_-]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.([0-9]+))?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})")
_OPS = ("<=", ">=", "!=", "=", "<", ">", ":")
_FIELD_STOP = frozenset("()\"'=<>!:")
_VALUE_STOP = frozenset("()\"'=<>!")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "*": "*"}
_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}


class FieldKind(enum.Enum):
    STRING = "string"
    TIMESTAMP = "timestamp"
    ENUM = "enum"
    NUMBER = "number"
    BOOL = "bool"


@dataclass(frozen=True)
class FilterField:
    """One filterable field. `enum_values` maps filter tokens to stored values
    ({"ACTIVE": 2, "DEVICE_STATE_ACTIVE": 2}); `normalize` turns a STRING value into the stored
    form ("sites/abc" -> "abc") and may raise ValueError or InvalidArgument to reject it."""

    name: str
    kind: FieldKind
    enum_values: Mapping[str, Any] = dataclass_field(default_factory=dict)
    normalize: Callable[[str], Any] | None = None


@dataclass(frozen=True)
class FilterSchema:
    """What a List RPC lets callers filter on. `map_fields` maps a string->string map's filter
    name to its column key (`{"labels": "labels"}` allows `labels.<key>`)."""

    fields: Mapping[str, FilterField]
    map_fields: Mapping[str, str] = dataclass_field(default_factory=dict)

    @classmethod
    def of(cls, *fields: FilterField, map_fields: Mapping[str, str] | None = None) -> FilterSchema:
        return cls({f.name: f for f in fields}, dict(map_fields or {}))

    def describe(self) -> str:
        return ", ".join([*self.fields, *(f"{m}.<key>" for m in self.map_fields)])


@dataclass(frozen=True)
class Comparison:
    """`column` keys `to_sql`'s columns and `matches`' record; `key` is set for `<map>.<key>`."""

    column: str
    op: str
    value: Any
    kind: FieldKind = FieldKind.STRING
    key: str | None = None
    prefix: bool = False


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


Expr: TypeAlias = Comparison | And | Or | Not


@dataclass(frozen=True)
class _Token:
    kind: str  # ( ) op word string AND OR NOT - end
    text: str
    pos: int
    value: str = ""
    wildcard: bool = False


def _error(description: str) -> InvalidArgument:
    return InvalidArgument.field("filter", description)


def _where(text: str, pos: int) -> str:
    near = text[max(0, pos - 10):pos + 10].replace("\n", " ")
    return f"at position {pos} (near {near!r})" if near else f"at position {pos}"


def _tokenize(text: str) -> list[_Token]:
    """Context-sensitive: right after an operator we read a value, in which `-` and `:` are
    ordinary characters (`-5`, `2026-01-01T00:00:00Z`); elsewhere a leading `-` means NOT."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        value_pos = bool(tokens) and tokens[-1].kind == "op"
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if ch.isspace():
            i += 1
        elif ch in "()" or (ch == "-" and not value_pos):
            tokens.append(_Token(ch, ch, i))
            i += 1
        elif ch in "\"'":
            token = _string(text, i)
            tokens.append(token)
            i += len(token.text)
        elif op is not None:
            tokens.append(_Token("op", op, i))
            i += len(op)
        else:
            stop, j = (_VALUE_STOP if value_pos else _FIELD_STOP), i
            while j < n and text[j] not in stop and not text[j].isspace():
                j += 1
            if j == i:
                raise _error(f"unexpected character {ch!r} {_where(text, i)}")
            word = text[i:j]
            kind = word if not value_pos and word in ("AND", "OR", "NOT") else "word"
            star = value_pos and word.endswith("*")
            tokens.append(_Token(kind, word, i, word[:-1] if star else word, star))
            i = j
    tokens.append(_Token("end", "", n))
    return tokens


def _string(text: str, start: int) -> _Token:
    out: list[str] = []
    quote, i, star = text[start], start + 1, False
    while i < len(text):
        ch = text[i]
        if ch == quote:
            value = "".join(out[:-1] if star else out)
            return _Token("string", text[start:i + 1], start, value, star)
        if ch == "\\" and i + 1 < len(text):
            if text[i + 1] not in _ESCAPES:
                raise _error(f"unknown escape '\\{text[i + 1]}' {_where(text, i)}")
            out.append(_ESCAPES[text[i + 1]])
            i, star = i + 2, False
            continue
        out.append(ch)
        i, star = i + 1, ch == "*"
    raise _error(f"unterminated string starting {_where(text, start)}")


def parse_filter(text: str, schema: FilterSchema) -> Expr | None:
    """Parse and type-check `text`; None when it is blank (no filtering)."""
    if len(text) > MAX_FILTER_LENGTH:
        raise _error(f"is longer than {MAX_FILTER_LENGTH} characters")
    if not text.strip():
        return None
    return _Parser(text, schema).parse()


class _Parser:
    def __init__(self, text: str, schema: FilterSchema) -> None:
        self.text, self.schema, self.tokens, self.i, self.depth = text, schema, _tokenize(text), 0, 0

    def take(self) -> _Token:
        self.i += 1
        return self.tokens[self.i - 1]

    def unexpected(self, tok: _Token, expected: str) -> InvalidArgument:
        if tok.kind == "end":
            return _error(f"expected {expected}, found end of filter at position {tok.pos}")
        return _error(f"unexpected {tok.text!r} {_where(self.text, tok.pos)}; expected {expected}")

    def parse(self) -> Expr:
        expr = self.or_()
        tok = self.tokens[self.i]
        if tok.kind != "end":
            hint = f"; write {tok.text.upper()} in upper case" if tok.text.upper() in ("AND", "OR") else ""
            raise _error(f"unexpected {tok.text!r} {_where(self.text, tok.pos)}{hint}")
        return expr

    def or_(self) -> Expr:
        items = [self.and_()]
        while self.tokens[self.i].kind == "OR" and self.take():
            items.append(self.and_())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self) -> Expr:
        items = [self.unary()]
        while self.tokens[self.i].kind == "AND" and self.take():
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Expr:
        tok = self.tokens[self.i]
        if tok.kind not in ("NOT", "-", "("):
            return self.comparison()
        self.take()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(f"nests NOT and parentheses more than {MAX_DEPTH} deep {_where(self.text, tok.pos)}")
        result: Expr
        if tok.kind == "(":
            result = self.or_()
            close = self.take()
            if close.kind != ")":
                raise self.unexpected(close, f"')' to close the '(' at position {tok.pos}")
        else:
            result = Not(self.unary())
        self.depth -= 1
        return result

    def comparison(self) -> Comparison:
        name = self.take()
        if name.kind != "word":
            raise self.unexpected(name, "a field name, NOT or '('")
        op = self.take()
        if op.kind != "op":
            raise self.unexpected(op, f"an operator (=, !=, <, >, <=, >=) after {name.text!r}")
        value = self.take()
        if value.kind not in ("word", "string"):
            raise self.unexpected(value, f"a value after '{op.text}'")
        return self.typed(name, op.text, value)

    def typed(self, name: _Token, op: str, value: _Token) -> Comparison:
        base, dot, key = name.text.partition(".")
        if base in self.schema.map_fields:
            column = self.schema.map_fields[base]
            if not dot:
                raise _error(f'{base} needs a key, e.g. {base}.<key> = "value"')
            if not _KEY.fullmatch(key):
                raise _error(f'invalid key "{key}" in {name.text}; keys use a-z, 0-9, "_" and "-"')
            if op == ":":
                if value.text != "*":
                    raise _error(f"':' only checks presence: write {name.text}:*")
                return Comparison(column, ":", None, key=key)
            if op not in ("=", "!="):
                raise _error(f"{base}.<key> supports only =, != and :*, not {op}")
            return Comparison(column, op, value.value, key=key, prefix=value.wildcard)
        spec = self.schema.fields.get(name.text)
        if spec is None:
            raise _error(f'unknown field "{name.text}" {_where(self.text, name.pos)}; '
                         f"filterable fields: {self.schema.describe()}")
        if op == ":":
            raise _error(f"':' only checks a map key's presence, e.g. labels.<key>:*; use = on {spec.name}")
        if value.wildcard and (spec.kind is not FieldKind.STRING or op not in ("=", "!=") or spec.normalize):
            raise _error(f"a trailing '*' (prefix match) needs = or != on a text field, not {op} on {spec.name}")
        if spec.kind in (FieldKind.ENUM, FieldKind.BOOL) and op not in ("=", "!="):
            raise _error(f"{spec.name} supports only = and !=, not {op}")
        return Comparison(spec.name, op, _convert(spec, value), spec.kind, prefix=value.wildcard)


def _convert(spec: FilterField, token: _Token) -> Any:
    raw = token.value
    if spec.kind is FieldKind.ENUM:
        if raw not in spec.enum_values:
            raise _error(f'unknown {spec.name} "{raw}"; expected one of {", ".join(spec.enum_values)}')
        return spec.enum_values[raw]
    if spec.kind is FieldKind.BOOL:
        if raw not in ("true", "false"):
            raise _error(f'{spec.name} is true or false, not "{raw}"')
        return raw == "true"
    if spec.kind is FieldKind.NUMBER:
        if not _NUMBER.fullmatch(raw):
            raise _error(f'{spec.name} is a number, not "{raw}"')
        return int(raw) if raw.lstrip("-").isdigit() else float(raw)
    if spec.kind is FieldKind.TIMESTAMP:
        moment = parse_timestamp(raw)
        if moment is None:
            raise _error(f'invalid timestamp "{raw}" for {spec.name}; '
                         'use RFC 3339 with an offset, e.g. "2026-01-01T00:00:00Z"')
        return moment
    if spec.normalize is None:
        return raw
    try:
        return spec.normalize(raw)
    except (ValueError, MusterError) as exc:
        detail = exc.message if isinstance(exc, MusterError) else str(exc)
        raise _error(f'invalid {spec.name} "{raw}": {detail}') from exc


def parse_timestamp(text: str) -> datetime | None:
    """RFC 3339 with an offset -> aware UTC datetime (fractions beyond microseconds truncated)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    if match.group(1) and len(match.group(1)) > 6:
        text = text[:match.start(1) + 6] + text[match.end(1):]
    try:
        return datetime.fromisoformat(text.upper()).astimezone(UTC)
    except ValueError:
        return None


def to_sql(expr: Expr, columns: Mapping[str, ColumnElement[Any]]) -> ColumnElement[bool]:
    """SQLAlchemy Core predicate; map fields are JSONB columns (`=` uses `@>`, GIN-indexable)."""
    if isinstance(expr, And):
        return and_(*(to_sql(item, columns) for item in expr.items))
    if isinstance(expr, Or):
        return or_(*(to_sql(item, columns) for item in expr.items))
    if isinstance(expr, Not):
        return _negate(to_sql(expr.item, columns))
    return _compare_sql(expr, columns[expr.column])


def _negate(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    # COALESCE keeps NOT two-valued: NOT (site = 'x') must include rows whose site is NULL.
    return not_(func.coalesce(condition, false()))


def _compare_sql(c: Comparison, column: ColumnElement[Any]) -> ColumnElement[bool]:
    condition: ColumnElement[bool]
    if c.key is not None:
        jsonb = cast(Any, column)
        if c.op == ":":
            return cast("ColumnElement[bool]", jsonb.has_key(c.key))
        if c.prefix:
            condition = jsonb[c.key].astext.startswith(c.value, autoescape=True)
        else:
            condition = jsonb.contains({c.key: c.value})
        return condition if c.op == "=" else _negate(condition)
    if c.prefix:
        condition = column.startswith(c.value, autoescape=True)
        return condition if c.op == "=" else _negate(condition)
    if c.op == "!=":
        return column.is_distinct_from(c.value)
    return cast("ColumnElement[bool]", operator.eq(column, c.value) if c.op == "=" else _ORDER[c.op](column, c.value))


def matches(expr: Expr | None, record: Mapping[str, Any]) -> bool:
    """In-memory twin of `to_sql`: `record` maps column keys to values (maps as dicts)."""
    if expr is None:
        return True
    if isinstance(expr, And):
        return all(matches(item, record) for item in expr.items)
    if isinstance(expr, Or):
        return any(matches(item, record) for item in expr.items)
    if isinstance(expr, Not):
        return not matches(expr.item, record)
    actual = record.get(expr.column)
    if expr.key is not None:
        labels: Mapping[str, Any] = actual or {}
        if expr.op == ":":
            return expr.key in labels
        actual = labels.get(expr.key)
    if expr.op in ("=", "!="):
        if expr.prefix:
            equal = isinstance(actual, str) and actual.startswith(expr.value)
        else:
            equal = actual is not None and actual == expr.value
        return equal == (expr.op == "=")
    try:
        return actual is not None and bool(_ORDER[expr.op](actual, expr.value))
    except TypeError:
        return False
