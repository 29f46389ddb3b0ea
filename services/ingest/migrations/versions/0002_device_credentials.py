"""the device edge's projection of device credentials and lifecycle

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Placeholder: filled in by the slice that owns this revision."""


def downgrade() -> None:
    """Placeholder: filled in by the slice that owns this revision."""
