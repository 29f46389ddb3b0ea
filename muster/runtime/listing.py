"""One way for every List RPC to turn (filter, order_by, page_size, page_token) into a keyset query."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from muster.runtime.filtering import Expr, FilterSchema, parse_filter
from muster.runtime.pagination import OrderTerm, PageTokens, fingerprint, page_size, parse_order_by

T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    """A validated page request, ready for a repository."""

    filter: Expr | None
    order: tuple[OrderTerm, ...]
    after: Sequence[Any] | None
    limit: int
    fingerprint: str

    @property
    def fetch(self) -> int:
        """Rows to read: one past the page, to know whether another page follows."""
        return self.limit + 1


@dataclass(frozen=True)
class Listing:
    """What a resource allows: filterable fields, sortable fields and the default order."""

    schema: FilterSchema
    sortable: Collection[str]
    default_order: tuple[OrderTerm, ...]

    def page(self, tokens: PageTokens, *, filter_text: str, order_by: str, size: int, token: str,
             scope: str) -> Page:
        """Validate the request; `scope` (e.g. the tenant) binds page tokens to their caller."""
        expr = parse_filter(filter_text, self.schema)
        order = parse_order_by(order_by, self.sortable, self.default_order)
        bound_to = fingerprint(scope, filter_text, order_by)
        after = tokens.decode(token, fingerprint=bound_to)
        return Page(filter=expr, order=order, after=after, limit=page_size(size), fingerprint=bound_to)

    @staticmethod
    def finish(tokens: PageTokens, page: Page, rows: Sequence[T],
               keyset: Callable[[T], Sequence[Any]]) -> tuple[list[T], str]:
        """Cut the rows a repository fetched (`page.fetch`, one more than asked) into the page and the
        token for the next one; the token is empty exactly when nothing follows."""
        items = list(rows[: page.limit])
        if len(rows) <= page.limit:
            return items, ""
        return items, tokens.encode(last=list(keyset(items[-1])), fingerprint=page.fingerprint)
