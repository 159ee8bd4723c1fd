"""The client's x-request-id gets its own ledger column; request_id is the gateway's own id.

Before this revision request_id held the client's x-request-id when it sent one, so a client
reusing one id made many requests count as one. Old rows keep what they had.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("client_request_id", sa.String(128), nullable=True))
    op.create_index("ix_usage_records_client_request_id", "usage_records", ["client_request_id"])


def downgrade() -> None:
    op.drop_index("ix_usage_records_client_request_id", "usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("client_request_id")
