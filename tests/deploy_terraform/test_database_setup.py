"""The database side of the Terraform setup against a real PostgreSQL: bootstrap-db.sql run by psql as
an RDS-like master (CREATEROLE, not superuser) gives the gateway its own role that owns the database
and runs the gateway's migrations; rerunning it rotates the password. And the database-url secret's
format is one SQLAlchemy + asyncpg accept (`ssl=require`; libpq's `sslmode=` is not a connect argument)."""
from __future__ import annotations

import inspect
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from gatehouse.store.migrate import upgrade
from gatehouse.store.sql import SqlStore, async_url
from tests.deploy_terraform.hcl_rules import load_module
from tests.support import PG_BIN, PostgresServer

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "deploy" / "terraform"


def psql(server: PostgresServer, user: str, password: str, db: str, *args: str,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PG_BIN / "psql"), "-X", "-h", "127.0.0.1", "-p", str(server.port), "-U", user,
                           "-d", db, *args], input=stdin, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PGPASSWORD": password})


def sql(server: PostgresServer, statement: str, db: str = "gatehouse") -> str:
    done = psql(server, "gatehouse", "gatehouse", db, "-tAc", statement)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_bootstrap_sql_gives_the_gateway_its_own_database(postgres_server: PostgresServer) -> None:
    tag = uuid.uuid4().hex[:8]
    master, app, db = f"rds_master_{tag}", f"gh_app_{tag}", f"gh_db_{tag}"
    # Like RDS: the master may create roles and databases but is not a superuser; it owns the database.
    sql(postgres_server, f"CREATE ROLE {master} LOGIN PASSWORD 'masterpw' CREATEROLE CREATEDB NOSUPERUSER")
    done = psql(postgres_server, master, "masterpw", "gatehouse", "-c", f"CREATE DATABASE {db}")
    assert done.returncode == 0, done.stderr

    script = (TF / "bootstrap-db.sql").read_text()
    for password in ("first-password", "rotated-password"):
        done = psql(postgres_server, master, "masterpw", db, "-v", f"app_role={app}", "-v", f"db_name={db}",
                    "-v", f"app_password={password}", stdin=script)
        assert done.returncode == 0, done.stderr
    assert sql(postgres_server, f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'") == app

    # The gateway, as its own role with the rotated password, applies its migrations and writes.
    url = f"postgresql://{app}:rotated-password@127.0.0.1:{postgres_server.port}/{db}"
    store = SqlStore(url)
    try:
        await upgrade(store)
        await store.ping()
    finally:
        await store.engine.dispose()
    owners = sql(postgres_server, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'", db=db)
    assert owners == app
    # The first password no longer works.
    assert psql(postgres_server, app, "first-password", db, "-c", "SELECT 1").returncode != 0


def test_bootstrap_sql_stops_on_error(postgres_server: PostgresServer) -> None:
    done = psql(postgres_server, "gatehouse", "gatehouse", "gatehouse", "-v", "app_role=x_unused", "-v",
                "db_name=no_such_database", "-v", "app_password=p", stdin=(TF / "bootstrap-db.sql").read_text())
    assert done.returncode != 0 and "no_such_database" in done.stderr
    sql(postgres_server, "DROP ROLE IF EXISTS x_unused")


def test_database_url_secret_format_is_accepted_by_the_store() -> None:
    pytest.importorskip("asyncpg")
    import asyncpg
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
    from sqlalchemy.engine import make_url

    secrets = load_module(TF / "modules" / "secrets")
    main = (TF / "modules" / "secrets" / "main.tf").read_text()
    fmt = re.search(r'format\(\s*"(postgresql://[^"]+)"', main)
    assert fmt, "database_url format() not found in modules/secrets/main.tf"
    assert secrets.variables["database"]  # the inputs it formats
    url = fmt.group(1) % ("gatehouse", "Abc123", "db.abc.us-west-2.rds.amazonaws.com", 5432, "gatehouse")
    _, kwargs = PGDialect_asyncpg().create_connect_args(make_url(async_url(url)))
    accepted = set(inspect.signature(asyncpg.connect).parameters)
    assert set(kwargs) <= accepted, f"asyncpg.connect() would reject {set(kwargs) - accepted}"
    assert kwargs["ssl"] == "require"
