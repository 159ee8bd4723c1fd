-- One-time setup of the gateway's own PostgreSQL role, run as the RDS master user:
--   psql "host=... dbname=gatehouse user=<master> sslmode=require" \
--     -v app_role=gatehouse -v db_name=gatehouse -v app_password=... -f bootstrap-db.sql
-- (each example's database_bootstrap_command does this). The role gets the password that the
-- database-url secret holds and becomes the owner of the database, so the gateway's migrations
-- create its tables; the master user (password managed and rotated by RDS) stays with the
-- administrators. Rerunning it sets the password again (docs/runbooks/rotate-secrets.md).
\set ON_ERROR_STOP on
SELECT format('CREATE ROLE %I LOGIN', :'app_role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_role') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'app_role', :'app_password') \gexec
SELECT format('GRANT %I TO CURRENT_USER', :'app_role')
WHERE NOT pg_has_role(CURRENT_USER, :'app_role', 'MEMBER') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db_name', :'app_role') \gexec
