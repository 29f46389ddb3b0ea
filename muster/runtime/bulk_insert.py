"""Many rows in ONE statement: `INSERT ... SELECT * FROM unnest($1::type[], $2::type[], ...)`.

An executemany sends (and SQLAlchemy processes) one parameter set per row; this sends one array per
column, so a batch of thousands costs one round trip and one plan. It is a plain INSERT, so
row-level security, constraints and triggers apply as usual (COPY FROM is refused on RLS tables).
JSON(B) columns travel as text and are cast back in the statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import ARRAY, JSON, Column, Table, TextClause, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.db import json_dumps


def _is_json(column: Column[Any]) -> bool:
    return isinstance(column.type, JSON)


@cache
def _statement(table: Table, columns: tuple[str, ...], dialect: Dialect, on_conflict: str) -> TextClause:
    arrays, selected = [], []
    for i, name in enumerate(columns):
        column = table.c[name]
        if isinstance(column.type, ARRAY):
            raise TypeError(f"{table.name}.{name}: unnest would flatten an array column; use an executemany")
        sql_type = "TEXT" if _is_json(column) else column.type.compile(dialect=dialect)
        arrays.append(f"CAST(:p{i} AS {sql_type}[])")
        selected.append(f"c{i}::{column.type.compile(dialect=dialect)}" if _is_json(column) else f"c{i}")
    quote = dialect.identifier_preparer
    names = ", ".join(quote.quote(name) for name in columns)
    aliases = ", ".join(f"c{i}" for i in range(len(columns)))
    # Identifiers come from the table's metadata (quoted), values only ever travel as parameters.
    return text(f"INSERT INTO {quote.format_table(table)} ({names}) "  # noqa: S608
                f"SELECT {', '.join(selected)} FROM unnest({', '.join(arrays)}) AS u({aliases}) {on_conflict}")


async def insert_rows(conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]], *,
                      on_conflict: str = "") -> None:
    """Insert `rows` (all with the same keys; columns left out get their defaults) in one statement.

    `on_conflict`: a constant `ON CONFLICT ...` clause (an upsert; the rows must then hold each key
    once: PostgreSQL refuses to update one row twice in a statement)."""
    if not rows:
        return
    columns = tuple(rows[0])
    params: dict[str, list[Any]] = {}
    for i, name in enumerate(columns):
        values = [row[name] for row in rows]
        if _is_json(table.c[name]):
            values = [None if v is None else json_dumps(v) for v in values]
        params[f"p{i}"] = values
    await conn.execute(_statement(table, columns, conn.dialect, on_conflict), params)
