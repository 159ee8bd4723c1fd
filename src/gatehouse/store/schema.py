"""Every table of the SQL store, on one `metadata`: the one place the schema is written down.

The Alembic migrations (store/migrations) create these tables; tests/store/test_migrations.py
compares a migrated database with this module, so the two cannot drift apart. The modules
that read and write the tables (sql.py, directory_sql.py, ledger.py, audit_sql.py,
responses_sql.py) import them from here; this module imports nothing from gatehouse.
"""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# ---- keys and settings (0001) --------------------------------------------------------------

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("consumer", sa.String(200), nullable=False, index=True),
    sa.Column("key_hash", sa.String(128), nullable=False, unique=True),
    sa.Column("prefix", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("description", sa.Text, nullable=True),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# ---- the usage ledger (0002, 0004, 0007) ---------------------------------------------------------

usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("request_id", sa.String(128), nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("consumer", sa.String(200), nullable=False),
    sa.Column("group_name", sa.String(200), nullable=True),
    sa.Column("key_id", sa.String(64), nullable=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("deployment", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("surface", sa.String(32), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("error_type", sa.String(64), nullable=True),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cached_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("priced", sa.Boolean, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("ttft_ms", sa.Float, nullable=True),
    sa.Column("streamed", sa.Boolean, nullable=False),
    sa.Column("cache_hit", sa.Boolean, nullable=False),
    sa.Column("estimated", sa.Boolean, nullable=False),
    sa.Column("client_request_id", sa.String(128), nullable=True, index=True),
    sa.Column("route", sa.String(32), nullable=True),  # why this deployment: primary, failover_5xx, ...
    sa.Column("data_class", sa.String(64), nullable=True),  # compliance routing's class
    sa.Column("routed_to", sa.String(200), nullable=True),  # a virtual model's choice
    sa.Index("ix_usage_records_consumer_ts", "consumer", "ts"),
)

# ---- groups and consumers made at run time (0003) ------------------------------------------

access_groups = sa.Table(
    "access_groups",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

access_consumers = sa.Table(
    "access_consumers",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("group_name", sa.String(200), nullable=False, index=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

access_version = sa.Table(
    "access_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)

# ---- the audit log (0005) ------------------------------------------------------------------

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("source", sa.String(200), nullable=True),  # client address (admin API) or host (CLI)
    sa.Column("action", sa.String(64), nullable=False, index=True),  # key.create, group.update, ...
    sa.Column("target", sa.String(200), nullable=False, index=True),  # a key id, group or consumer name
    sa.Column("detail", sa.Text, nullable=False),  # JSON object: the fields given, ids; never a key
    sa.Column("request_id", sa.String(128), nullable=True),
)

# ---- stored Responses API responses (0006) -------------------------------------------------

stored_responses = sa.Table(
    "stored_responses",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("consumer", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.Column("body", sa.Text, nullable=False),  # the response object (JSON)
)

stored_response_items = sa.Table(
    "stored_response_items",
    metadata,
    sa.Column("response_id", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(8), nullable=False),  # input | output
    sa.Column("item_id", sa.String(255), nullable=False),
    sa.Column("consumer", sa.String(200), nullable=False),
    sa.Column("item", sa.Text, nullable=False),  # the item (JSON)
    sa.Index("ix_stored_response_items_consumer_item", "consumer", "item_id"),
)
