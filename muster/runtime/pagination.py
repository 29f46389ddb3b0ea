"""List pagination (AIP-158/132): page sizes, `order_by`, and keyset pages behind opaque tokens.

A page token carries the sort values of the last row served (the order_by fields, then the unique
id), so the next page is "rows after that row" -- unlike OFFSET, inserts and deletes between calls
neither repeat nor skip rows. Tokens are HMAC-signed, so a client can neither forge keyset values
nor replay a token against a different query: each is bound to a fingerprint of the query's
parameters (build one with `fingerprint(parent, filter, order_by, ...)`).

Ordering is PostgreSQL's default, mirrored by `compare_keysets` for in-memory fakes: ascending
puts NULLs last, descending puts them first; the unique tiebreak id always ascends.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, or_

from muster.runtime.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_TOKEN_LENGTH = 4096
_VERSION = 1
_MAC_SIZE = 16


def page_size(requested: int) -> int:
    """0 means the default; more than the maximum is clamped, as AIP-158 asks, not refused."""
    if requested < 0:
        raise InvalidArgument.field("page_size", f"must not be negative (got {requested})")
    return DEFAULT_PAGE_SIZE if requested == 0 else min(requested, MAX_PAGE_SIZE)


@dataclass(frozen=True)
class OrderTerm:
    field: str
    descending: bool = False


def parse_order_by(text: str, allowed: Collection[str],
                   default: Sequence[OrderTerm]) -> tuple[OrderTerm, ...]:
    """`"display_name desc, create_time"` -> terms; blank -> `default`."""
    if not text.strip():
        return tuple(default)
    terms: list[OrderTerm] = []
    for part in text.split(","):
        words = part.split()
        if not words:
            raise InvalidArgument.field("order_by", f"empty term in {text!r}; separate fields with one comma")
        name, direction = words[0], [w.lower() for w in words[1:]]
        if name not in allowed:
            raise InvalidArgument.field(
                "order_by", f'unknown field "{name}"; sortable fields: {", ".join(sorted(allowed))}')
        if direction not in ([], ["asc"], ["desc"]):
            raise InvalidArgument.field(
                "order_by", f'cannot read "{part.strip()}"; write "<field>" or "<field> desc"')
        if any(term.field == name for term in terms):
            raise InvalidArgument.field("order_by", f'"{name}" appears more than once')
        terms.append(OrderTerm(name, direction == ["desc"]))
    return tuple(terms)


def fingerprint(*parts: object) -> str:
    """A stable digest of the query parameters a token must not outlive (parent, filter, order_by,
    show_deleted...); pass the raw request values, as sent."""
    return hashlib.sha256(orjson.dumps([repr(part) for part in parts])).hexdigest()[:32]


def _tag(value: Any) -> list[Any]:
    # Type tags keep datetimes, UUIDs and big ints exact; bool before int (bool is an int).
    if value is None:
        return ["n"]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", str(value)]
    if isinstance(value, float):
        return ["f", repr(value)]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, uuid.UUID):
        return ["u", str(value)]
    raise TypeError(f"cannot put a {type(value).__name__} in a page token")


def _untag(item: Any) -> Any:
    tag, *rest = item
    if tag == "n" and not rest:
        return None
    (payload,) = rest
    if tag == "b" and isinstance(payload, bool):
        return payload
    if not isinstance(payload, str):
        raise ValueError(item)
    parsers: dict[str, Callable[[str], Any]] = {
        "i": int, "f": float, "s": str, "t": datetime.fromisoformat, "u": uuid.UUID}
    return parsers[tag](payload)


def _invalid_token() -> InvalidArgument:
    return InvalidArgument.field("page_token", "is not valid; use next_page_token from the last response")


class PageTokens:
    """Issues and checks page tokens with one service-wide secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("page token secret must be at least 16 bytes")
        self._key = hashlib.sha256(b"muster page token\0" + secret).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_SIZE]

    def encode(self, *, last: Sequence[Any], fingerprint: str) -> str:
        """`last`: the last row's order_by values, then its unique id."""
        payload = orjson.dumps([_VERSION, _digest(fingerprint), [_tag(v) for v in last]])
        return base64.urlsafe_b64encode(payload + self._mac(payload)).rstrip(b"=").decode("ascii")

    def decode(self, token: str, *, fingerprint: str) -> list[Any] | None:
        """The keyset values, or None for the first page ("")."""
        if not token:
            return None
        invalid = _invalid_token()
        if len(token) > MAX_TOKEN_LENGTH:
            raise invalid
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise invalid from None
        payload, mac = raw[:-_MAC_SIZE], raw[-_MAC_SIZE:]
        if len(raw) <= _MAC_SIZE or not hmac.compare_digest(mac, self._mac(payload)):
            raise invalid
        try:
            version, digest, items = orjson.loads(payload)
            values = [_untag(item) for item in items]
        except (ValueError, TypeError, KeyError):
            raise invalid from None
        if version != _VERSION:
            raise invalid
        if digest != _digest(fingerprint):
            raise InvalidArgument.field(
                "page_token",
                "was issued for a different filter or order_by; start again without page_token")
        return values


def _digest(fingerprint: str) -> str:
    # Short: the token only needs to tell queries apart; the HMAC stops forgery.
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:16]


def order_clauses(order: Sequence[OrderTerm], columns: Mapping[str, ColumnElement[Any]],
                  tiebreak: ColumnElement[Any]) -> list[ColumnElement[Any]]:
    """ORDER BY matching `keyset_condition` (NULLS LAST ascending, FIRST descending: PG's default)."""
    clauses = [columns[t.field].desc().nulls_first() if t.descending else columns[t.field].asc().nulls_last()
               for t in order]
    return [*clauses, tiebreak.asc()]


def _after(term: OrderTerm, column: ColumnElement[Any], value: Any) -> ColumnElement[bool] | None:
    """Rows strictly after `value` in this term's direction, NULLs placed as in `order_clauses`;
    None when nothing can be (ascending, NULLs last, after a NULL)."""
    if term.descending:
        return column.is_not(None) if value is None else column < value
    return None if value is None else or_(column > value, column.is_(None))


def _same(column: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def keyset_condition(order: Sequence[OrderTerm], columns: Mapping[str, ColumnElement[Any]],
                     tiebreak: ColumnElement[Any], last: Sequence[Any]) -> ColumnElement[bool]:
    """WHERE for "after the row whose sort key is `last`": (a after x) OR (a = x AND b after y) ...
    OR (all equal AND id > last id)."""
    if len(last) != len(order) + 1:
        raise _invalid_token()
    terms = [(t, columns[t.field]) for t in order]
    disjuncts: list[ColumnElement[bool]] = []
    for i, (term, column) in enumerate([*terms, (OrderTerm(""), tiebreak)]):
        after = _after(term, column, last[i]) if i < len(terms) else tiebreak > last[i]
        if after is not None:
            equal = [_same(col, last[j]) for j, (_, col) in enumerate(terms[:i])]
            disjuncts.append(and_(*equal, after) if equal else after)
    return or_(*disjuncts)


def compare_keysets(order: Sequence[OrderTerm], a: Sequence[Any], b: Sequence[Any]) -> int:
    """In-memory twin of `order_clauses`: <0, 0, >0 as row key `a` sorts before, with, after `b`
    (keys as in `PageTokens.encode`). Use with `functools.cmp_to_key` in fakes."""
    for i, term in enumerate([*order, OrderTerm("", False)]):
        x, y = a[i], b[i]
        if x == y:
            continue
        # None is the largest value: last ascending, first descending.
        result = 1 if x is None or (y is not None and x > y) else -1
        return -result if term.descending else result
    return 0
