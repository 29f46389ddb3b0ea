"""The ingest context's tables (schema `ingest`): its projections of the registry and what it stores."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from muster.runtime.migrations import UNMANAGED_TABLES
from muster.runtime.outbox import OutboxTables

metadata = MetaData(schema="ingest")
metadata.info[UNMANAGED_TABLES] = r"(telemetry|device_logs)_\d{8}"  # daily partitions, made at run time


# --- telemetry, device logs and the registry projection (migration 0001) ---------------------------
# Telemetry and logs are partitioned by day on `ts` (the partitions are created ahead and dropped by
# services/ingest/partitions.py through SECURITY DEFINER functions the migration installs): these
# Table objects describe the parents, which is all queries and writes ever name.

infrastructure = OutboxTables("ingest", metadata)

TENANT_OWNED = ("telemetry", "latest_telemetry", "device_logs", "registry_devices", "outbox",
                "edge_devices", "edge_connections")
"""Tables with row-level security on tenant_id (templates and modules are read by the platform-scoped
hot path only; every operator query starts from a device, which RLS already limits)."""



def _reading() -> list[Column[object]]:
    """One value of one metric of one device at one time: the columns telemetry and latest share."""
    return [Column("tenant_id", Text, nullable=False), Column("device_id", Text, nullable=False),
            Column("metric", Text, nullable=False), Column("ts", DateTime(timezone=True), nullable=False),
            Column("value_num", Float), Column("value_bool", Boolean), Column("value_str", Text)]


telemetry = Table(
    "telemetry", metadata,
    *_reading(),
    Column("stream_seq", BigInteger, nullable=False),  # JetStream stream sequence of the message
    Column("idx", Integer, nullable=False),  # position of the value in the message
    PrimaryKeyConstraint("device_id", "ts", "stream_seq", "idx", name="telemetry_pkey"),
    postgresql_partition_by="RANGE (ts)",
)

latest_telemetry = Table(
    "latest_telemetry", metadata,
    *_reading(),
    # false until the latest-values notifier has put this value in a LatestTelemetryChanged event
    # (migration 0003; not indexed, so flipping it keeps updates HOT)
    Column("notified", Boolean, nullable=False, server_default=text("false")),
    PrimaryKeyConstraint("device_id", "metric", name="latest_telemetry_pkey"),
    postgresql_with={"fillfactor": 50},  # room for HOT updates: every batch rewrites these rows
)

device_logs = Table(
    "device_logs", metadata,
    Column("tenant_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("level", SmallInteger, nullable=False),
    Column("message", Text, nullable=False),
    Column("fields", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("stream_seq", BigInteger, nullable=False),
    Column("idx", Integer, nullable=False),
    PrimaryKeyConstraint("device_id", "ts", "stream_seq", "idx", name="device_logs_pkey"),
    postgresql_partition_by="RANGE (ts)",
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
    Column("metrics", JSONB, nullable=False),  # {"key": {"type": 1, "min": .., "max": ..}}
    Column("update_time", DateTime(timezone=True), nullable=False),
)

registry_modules = Table(
    "registry_modules", metadata,
    Column("device_id", Text, nullable=False),
    Column("module_id", Text, nullable=False),
    Column("template_id", Text),
    Column("metric_key_map", JSONB, nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("device_id", "module_id", name="registry_modules_pkey"),
)

registry_tombstones = Table(
    "registry_tombstones", metadata,  # migration 0003: deleted devices, so late events stay dead
    Column("device_id", Text, primary_key=True),
    Column("deleted_at", DateTime(timezone=True), nullable=False),  # event time of the DeviceDeleted
)

# --- the device edge (migration 0002): credentials projection and live connections -----------------
# Read platform-wide by the auth callout responder (device ids are global); RLS still applies.

edge_devices = Table(
    "edge_devices", metadata,
    Column("device_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("state", SmallInteger, nullable=False, server_default=text("0")),  # DeviceState
    Column("deleted", Boolean, nullable=False, server_default=text("false")),  # tombstone: late events stay dead
    Column("secrets", JSONB, nullable=False, server_default=text("'[]'::jsonb")),  # [{"h": hex, "exp": iso|null}]
    Column("state_time", DateTime(timezone=True)),  # event time of the lifecycle event applied last
    Column("credentials_time", DateTime(timezone=True)),  # event time of the credentials applied last
)

edge_connections = Table(
    "edge_connections", metadata,
    Column("server_id", Text, nullable=False),
    Column("client_id", BigInteger, nullable=False),  # the server's connection id (client_info.id)
    Column("device_id", Text, nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("connected_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),  # the user JWT's exp: gone by then
    PrimaryKeyConstraint("server_id", "client_id", name="edge_connections_pkey"),
    Index("edge_connections_by_device", "device_id"),
    Index("edge_connections_by_expiry", "expires_at"),
)
