-- regent's PostgreSQL grants. Step 2 of 2 (see deploy/postgres/roles.sql),
-- run as regent_owner once the schema exists, and again after an upgrade
-- whose migration added a table:
--
--   psql 'postgres://regent_owner@db:5432/app?sslmode=verify-full&sslrootcert=ca.crt' -f deploy/postgres/grants.sql
--
-- regent's tables have no sequences. LISTEN/NOTIFY, advisory locks,
-- pg_locks and pg_stat_activity need no grant.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA regent TO regent;
GRANT SELECT ON ALL TABLES IN SCHEMA regent TO regent_operator, regent_monitor;
GRANT INSERT, UPDATE, DELETE ON regent_stepdowns, regent_controls, regent_actions TO regent_operator;
