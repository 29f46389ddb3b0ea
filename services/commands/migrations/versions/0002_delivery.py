"""commands: delivery timers and presence projection

The device presence projection (fed by twin's DevicePresenceChanged events), the device replies
already applied (capture-stream sequence numbers), and the trigger that NOTIFYs the timer workers of
every replica when a command's timer (`due_at`) is set, at the commit of the transaction that set it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

from muster.runtime.db import tenant_policy_sql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATEMENTS = (
    """CREATE TABLE commands.device_presence (
    device_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    presence smallint NOT NULL,
    since timestamptz NOT NULL,
    session_id text NOT NULL DEFAULT '',
    update_time timestamptz NOT NULL DEFAULT now()
)""",
    *tenant_policy_sql("commands", "device_presence"),
    """CREATE TABLE commands.applied_replies (
    stream_seq bigint PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)""",
    "CREATE INDEX applied_replies_applied_at ON commands.applied_replies (applied_at)",
    # Identical notifications of one transaction are delivered once: a device coming online with a
    # hundred waiting commands wakes each worker once.
    """CREATE FUNCTION commands.notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('muster_commands_due', extract(epoch FROM NEW.due_at)::text);
    RETURN NULL;
END
$$""",
    """CREATE TRIGGER commands_due_inserted AFTER INSERT ON commands.commands
    FOR EACH ROW WHEN (NEW.due_at IS NOT NULL) EXECUTE FUNCTION commands.notify_due()""",
    """CREATE TRIGGER commands_due_updated AFTER UPDATE OF due_at ON commands.commands
    FOR EACH ROW WHEN (NEW.due_at IS NOT NULL AND NEW.due_at IS DISTINCT FROM OLD.due_at)
    EXECUTE FUNCTION commands.notify_due()""",
)


def upgrade() -> None:
    for statement in _STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER commands_due_updated ON commands.commands")
    op.execute("DROP TRIGGER commands_due_inserted ON commands.commands")
    op.execute("DROP FUNCTION commands.notify_due()")
    op.execute("DROP TABLE commands.applied_replies")
    op.execute("DROP TABLE commands.device_presence")
