"""The connectivity and health slice's tables (schema `twin`, on the twin's metadata; migration 0002).

`connection_log` is append-only: one row per (device, session, kind), so a repeated event is a no-op
(ON CONFLICT DO NOTHING); wills seen on `status` are rows of kind WILL keyed by their stream sequence, so a
disconnect's "client disconnect" reads as "connection lost" whichever of the two arrived first.
`connectivity` is each device's derived presence (no row: never seen). `device_health` holds the latest
heartbeat only; its history is telemetry (ingest).
"""

from sqlalchemy import BigInteger, Column, DateTime, Float, Index, PrimaryKeyConstraint, SmallInteger, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from services.twin.tables import metadata

TENANT_OWNED = ("connectivity", "connection_log", "device_health")

WILL_KIND = 3  # connection_log.kind of a will (1 and 2 are ConnectionEventKind CONNECTED/DISCONNECTED)

connectivity = Table(
    "connectivity", metadata,
    Column("device_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("presence", SmallInteger, nullable=False),  # Presence
    Column("reason", Text, nullable=False),
    Column("since", DateTime(timezone=True)),
    Column("session_id", Text),  # the current or last session
    Column("client_id", Text),
    Column("remote_address", Text),
    Column("protocol", Text),
    Column("connected_at", DateTime(timezone=True)),
    Column("disconnected_at", DateTime(timezone=True)),
    Column("disconnect_reason", SmallInteger, nullable=False, server_default=text("0")),
    Column("detail", Text, nullable=False, server_default=text("''")),
    Column("last_seen", DateTime(timezone=True)),
    Column("will_at", DateTime(timezone=True)),
    Column("stale_after_seconds", Float),  # the device's own, from its birth message
    Index("connectivity_online", "device_id", postgresql_where=text("presence = 2")),  # the stale sweep
    Index("connectivity_open_sessions", "session_id", postgresql_where=text("disconnected_at IS NULL")),
)

connection_log = Table(
    "connection_log", metadata,
    Column("tenant_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("kind", SmallInteger, nullable=False),  # 1 CONNECTED, 2 DISCONNECTED, 3 WILL
    Column("time", DateTime(timezone=True), nullable=False),
    Column("client_id", Text, nullable=False, server_default=text("''")),
    Column("remote_address", Text, nullable=False, server_default=text("''")),
    Column("protocol", Text, nullable=False, server_default=text("''")),
    Column("reason", SmallInteger, nullable=False, server_default=text("0")),  # DisconnectReason
    Column("detail", Text, nullable=False, server_default=text("''")),
    PrimaryKeyConstraint("device_id", "session_id", "kind", name="connection_log_pkey"),
    Index("connection_log_by_time", "device_id", "time"),
)

device_health = Table(
    "device_health", metadata,
    Column("device_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("report_time", DateTime(timezone=True), nullable=False),
    Column("stream_seq", BigInteger, nullable=False),
    Column("health", JSONB, nullable=False),  # {"battery": 81.0, ...}: the fields the device sent
)
