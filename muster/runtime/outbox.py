"""Transactional outbox: events are rows written in the same transaction as the state change.

`OutboxTables(schema)` describes the two infrastructure tables every service schema has:
`outbox` (events waiting for the relay) and `applied_events` (ids of events a consumer of this
service already applied, for idempotency). Migrations create them from the same definitions.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.runtime.bulk_insert import insert_rows
from muster.runtime.events import nats_subject


class OutboxTables:
    """The outbox and applied-events tables of one service schema."""

    def __init__(self, schema: str, metadata: MetaData | None = None) -> None:
        self.schema = schema
        self.metadata = metadata or MetaData(schema=schema)
        self.outbox = Table(
            "outbox", self.metadata,
            Column("seq", BigInteger, Identity(always=True), primary_key=True),
            Column("id", UUID(as_uuid=False), nullable=False, unique=True),
            Column("tenant_id", Text, nullable=False),
            Column("type", Text, nullable=False),
            Column("subject", Text, nullable=False),
            Column("nats_subject", Text, nullable=False),
            Column("payload", LargeBinary, nullable=False),
            Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
            Column("published_at", DateTime(timezone=True)),
            Index("outbox_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
            schema=schema,
        )
        self.applied_events = Table(
            "applied_events", self.metadata,
            Column("consumer", String(100), primary_key=True),
            Column("event_id", UUID(as_uuid=False), primary_key=True),
            Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
            schema=schema,
        )

    async def append(self, conn: AsyncConnection, events: Sequence[Event]) -> None:
        """Write events in the caller's transaction: they go out if and only if it commits."""
        if not events:
            return
        await insert_rows(conn, self.outbox, [
            {"id": e.id, "tenant_id": e.tenant, "type": e.type, "subject": e.subject,
             "nats_subject": nats_subject(e), "payload": e.SerializeToString()}
            for e in events
        ])
