"""telemetry, device logs and the registry projection ingest needs

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Telemetry and device logs are partitioned by day on `ts`. The service role owns no table, so it
cannot create or drop partitions itself: two SECURITY DEFINER functions (owned by the migration
role) do exactly that and nothing else, and only the service role may execute them.
"""

from collections.abc import Sequence

from alembic import context, op

from muster.runtime.db import tenant_policy_sql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = """
CREATE TABLE ingest.applied_events (
    consumer varchar(100) NOT NULL,
    event_id uuid NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE TABLE ingest.outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    tenant_id text NOT NULL,
    type text NOT NULL,
    subject text NOT NULL,
    nats_subject text NOT NULL,
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON ingest.outbox (seq) WHERE published_at IS NULL;
CREATE TABLE ingest.telemetry (
    tenant_id text NOT NULL,
    device_id text NOT NULL,
    metric text NOT NULL,
    ts timestamptz NOT NULL,
    value_num double precision,
    value_bool boolean,
    value_str text,
    stream_seq bigint NOT NULL,
    idx integer NOT NULL,
    CONSTRAINT telemetry_pkey PRIMARY KEY (device_id, ts, stream_seq, idx)
) PARTITION BY RANGE (ts);
CREATE TABLE ingest.latest_telemetry (
    tenant_id text NOT NULL,
    device_id text NOT NULL,
    metric text NOT NULL,
    ts timestamptz NOT NULL,
    value_num double precision,
    value_bool boolean,
    value_str text,
    CONSTRAINT latest_telemetry_pkey PRIMARY KEY (device_id, metric)
) WITH (fillfactor = 50);
CREATE TABLE ingest.device_logs (
    tenant_id text NOT NULL,
    device_id text NOT NULL,
    ts timestamptz NOT NULL,
    level smallint NOT NULL,
    message text NOT NULL,
    fields jsonb NOT NULL DEFAULT '{}'::jsonb,
    stream_seq bigint NOT NULL,
    idx integer NOT NULL,
    CONSTRAINT device_logs_pkey PRIMARY KEY (device_id, ts, stream_seq, idx)
) PARTITION BY RANGE (ts);
CREATE TABLE ingest.registry_devices (
    device_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    template_id text,
    state smallint NOT NULL,
    update_time timestamptz NOT NULL
);
CREATE TABLE ingest.registry_templates (
    template_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    metrics jsonb NOT NULL,
    update_time timestamptz NOT NULL
);
CREATE TABLE ingest.registry_modules (
    device_id text NOT NULL,
    module_id text NOT NULL,
    template_id text,
    metric_key_map jsonb NOT NULL,
    update_time timestamptz NOT NULL,
    CONSTRAINT registry_modules_pkey PRIMARY KEY (device_id, module_id)
);
"""

_FUNCTIONS = """
CREATE FUNCTION ingest.ensure_daily_partitions(parent text, first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    day date := first_day;
    child text;
    created integer := 0;
BEGIN
    IF parent NOT IN ('telemetry', 'device_logs') THEN
        RAISE EXCEPTION 'not a partitioned ingest table: %', parent;
    END IF;
    IF last_day - first_day > 400 THEN
        RAISE EXCEPTION 'refusing to create more than 400 partitions at once';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('ingest.partitions'));  -- replicas run this concurrently
    WHILE day <= last_day LOOP
        child := parent || '_' || to_char(day, 'YYYYMMDD');
        IF to_regclass('ingest.' || child) IS NULL THEN
            EXECUTE format('CREATE TABLE ingest.%I PARTITION OF ingest.%I FOR VALUES FROM (%L) TO (%L)',
                           child, parent, (day::timestamp AT TIME ZONE 'UTC'),
                           ((day + 1)::timestamp AT TIME ZONE 'UTC'));
            -- INSERT only: the writer COPYs straight into the day's partition (COPY refuses a table
            -- with row-level security); reading still goes through the parent, where RLS applies.
            EXECUTE format('GRANT INSERT ON ingest.%I TO %I', child, '@SERVICE_ROLE@');
            created := created + 1;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END $$;

CREATE FUNCTION ingest.drop_daily_partitions_before(parent text, before_day date)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    child record;
    dropped integer := 0;
BEGIN
    IF parent NOT IN ('telemetry', 'device_logs') THEN
        RAISE EXCEPTION 'not a partitioned ingest table: %', parent;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('ingest.partitions'));
    FOR child IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        JOIN pg_namespace n ON n.oid = p.relnamespace
        WHERE n.nspname = 'ingest' AND p.relname = parent
          AND c.relname ~ ('^' || parent || '_[0-9]{8}$')
          AND to_date(right(c.relname, 8), 'YYYYMMDD') < before_day
    LOOP
        EXECUTE format('DROP TABLE ingest.%I', child.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;
"""

_OWNED = ("telemetry", "latest_telemetry", "device_logs", "registry_devices", "outbox")


def upgrade() -> None:
    role = context.config.attributes["service_role"]
    for statement in _TABLES.split(";\n"):
        if statement.strip():
            op.execute(statement)
    for statement in _FUNCTIONS.replace("@SERVICE_ROLE@", role).split("$$;\n"):
        if statement.strip():
            op.execute(statement + "$$")
    for function in ("ensure_daily_partitions(text, date, date)", "drop_daily_partitions_before(text, date)"):
        op.execute(f"REVOKE ALL ON FUNCTION ingest.{function} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION ingest.{function} TO {role}")
    for table in _OWNED:
        for statement in tenant_policy_sql("ingest", table):
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION ingest.drop_daily_partitions_before(text, date)")
    op.execute("DROP FUNCTION ingest.ensure_daily_partitions(text, date, date)")
    for table in ("registry_modules", "registry_templates", "registry_devices", "device_logs",
                  "latest_telemetry", "telemetry", "outbox", "applied_events"):
        op.execute(f"DROP TABLE ingest.{table}")
