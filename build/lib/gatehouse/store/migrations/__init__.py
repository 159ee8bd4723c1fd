"""Alembic migrations of the one schema shared by SQLite and Postgres (run by store/migrate.py)."""
