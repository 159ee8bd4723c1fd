-- One-time setup of the gateway's own PostgreSQL role, run as the RDS master user with
-- psql -v app_password=... (the database_bootstrap_command output of an example does this).
-- The gateway then owns its database and creates its tables through its migrations; the master
-- user (password managed and rotated by RDS) is kept for administrators.
\set ON_ERROR_STOP on
SELECT format('CREATE ROLE gatehouse LOGIN PASSWORD %L', :'app_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gatehouse') \gexec
SELECT format('ALTER ROLE gatehouse LOGIN PASSWORD %L', :'app_password') \gexec
GRANT gatehouse TO CURRENT_USER;
ALTER DATABASE gatehouse OWNER TO gatehouse;
