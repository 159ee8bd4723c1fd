"""Stores behind small protocols; implementations chosen by config (SQLite/Postgres, Redis)."""
