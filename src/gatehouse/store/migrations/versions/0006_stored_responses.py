"""Stored Responses API responses (store: true) and their input and output items.

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("consumer", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_stored_responses_expires_at", "stored_responses", ["expires_at"])
    op.create_table(
        "stored_response_items",
        sa.Column("response_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("item_id", sa.String(255), nullable=False),
        sa.Column("consumer", sa.String(200), nullable=False),
        sa.Column("item", sa.Text, nullable=False),
    )
    op.create_index("ix_stored_response_items_consumer_item", "stored_response_items", ["consumer", "item_id"])


def downgrade() -> None:
    op.drop_table("stored_response_items")
    op.drop_table("stored_responses")
