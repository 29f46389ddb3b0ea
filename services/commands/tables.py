"""The commands context's tables (schema `commands`): commands with their history and their one due
timer, the projection of the registry (device -> template, templates' command definitions), outbox."""

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    Interval,
    MetaData,
    SmallInteger,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from muster.runtime.outbox import OutboxTables

SCHEMA = "commands"
metadata = MetaData(schema=SCHEMA)
infrastructure = OutboxTables(SCHEMA, metadata)

TENANT_OWNED = ("commands", "outbox", "registry_devices")
"""Tables with row-level security on tenant_id. `registry_templates` has its own policy: a tenant
also reads the system templates (tenant_id = ''); only the platform-scoped projection writes."""

FINISHED_CHANNEL = "muster_commands_finished"
"""NOTIFY channel a transaction to a terminal state signals (payload: the command id), so WaitCommand
on any replica wakes at the commit."""

commands = Table(
    "commands", metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("command", Text, nullable=False),
    Column("parameters", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("creator", Text, nullable=False),
    Column("request_id", Text, nullable=False, server_default=""),
    Column("request_hash", Text, nullable=False, server_default=""),
    Column("ttl", Interval, nullable=False),
    Column("delivery_timeout", Interval, nullable=False),
    Column("execution_timeout", Interval, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("initial_backoff", Interval, nullable=False),
    Column("backoff_multiplier", Float, nullable=False),
    Column("max_backoff", Interval, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Column("send_time", DateTime(timezone=True)),
    Column("deliver_time", DateTime(timezone=True)),
    Column("finish_time", DateTime(timezone=True)),
    Column("ack_deadline", DateTime(timezone=True)),
    Column("execution_deadline", DateTime(timezone=True)),
    Column("retry_time", DateTime(timezone=True)),
    # The command's one pending timer (domain `next_deadline()`), NULL once it finished: the timer
    # worker takes due rows with FOR UPDATE SKIP LOCKED.
    Column("due_at", DateTime(timezone=True)),
    Column("due_kind", Text),
    Column("output", JSONB),
    Column("error", Text, nullable=False, server_default=""),
    Column("history", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("version", Integer, nullable=False),
    Index("commands_by_device", "tenant_id", "device_id", "create_time", "id"),
    Index("commands_by_tenant", "tenant_id", "create_time", "id"),
    Index("commands_request_id", "tenant_id", "request_id", unique=True, postgresql_where=text("request_id <> ''")),
    Index("commands_due", "due_at", postgresql_where=text("due_at IS NOT NULL")),
    Index("commands_pending_by_device", "device_id", "create_time", postgresql_where=text("state = 1")),
)

registry_devices = Table(
    "registry_devices", metadata,
    Column("device_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("template_id", Text),
    Column("state", SmallInteger, nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
)

registry_templates = Table(
    "registry_templates", metadata,
    Column("template_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),  # '' for system templates
    # {name: {"parameters": {...JSON schema...}, "default_timeout_seconds": float | null}}
    Column("commands", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("update_time", DateTime(timezone=True), nullable=False),
)

registry_tombstones = Table(
    "registry_tombstones", metadata,
    Column("device_id", Text, primary_key=True),
    Column("deleted_at", DateTime(timezone=True), nullable=False),
)

from services.commands import delivery_tables as delivery_tables  # noqa: E402  (presence, applied replies)
