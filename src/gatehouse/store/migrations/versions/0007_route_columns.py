"""The ledger says why each attempt went where it did: `route` (primary, failover_5xx, fallback,
cold_start, ...), the request's compliance `data_class` and a virtual model's choice `routed_to`.

All nullable: rows from before this revision have none of them.

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("route", sa.String(32), nullable=True))
    op.add_column("usage_records", sa.Column("data_class", sa.String(64), nullable=True))
    op.add_column("usage_records", sa.Column("routed_to", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("routed_to")
        batch.drop_column("data_class")
        batch.drop_column("route")
