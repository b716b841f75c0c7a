-- regent's PostgreSQL roles, least privilege. Step 1 of 2, run once by a
-- superuser (or a role with CREATEROLE and CREATE on the database) in
-- regent's database, before the first start:
--
--   psql "$ADMIN_URL" -f deploy/postgres/roles.sql
--   psql "$ADMIN_URL" -c '\password regent_owner'     (and each role below)
--
-- Then the schema owner creates the tables once (any regent command
-- migrates; status only reads besides):
--
--   regent status --backend postgres --postgres-url 'postgres://regent_owner@db:5432/app?sslmode=verify-full&sslrootcert=ca.crt'
--
-- and grants them (step 2, deploy/postgres/grants.sql, run as regent_owner).
-- integration/tls_test.go runs both files, as they are, against a server
-- that requires SSL and SCRAM (pg_hba: hostssl ... scram-sha-256 only).
--
-- Roles:
--   regent_owner    owns the schema "regent" and its tables; runs the
--                   migrations (the first start of a newer regent: run it
--                   once as this role before the upgrade)
--   regent          the replicas (regent run): DML on the tables; ends a
--                   dead replica's stale session with pg_terminate_backend,
--                   which PostgreSQL allows on sessions of the same role:
--                   every replica must log in as this one role (else grant
--                   it pg_signal_backend, which can signal any non-superuser
--                   session of the server)
--   regent_operator regent step-down and the operator commands (pause,
--                   drain, restart): reads, and writes the step-down
--                   requests, operator records and operator log
--   regent_monitor  regent status, status --check: reads only
--
-- Passwords are set with \password (SCRAM with password_encryption =
-- scram-sha-256), never in this file. Every role finds the tables through
-- its search_path.
CREATE ROLE regent_owner LOGIN;
CREATE ROLE regent LOGIN;
CREATE ROLE regent_operator LOGIN;
CREATE ROLE regent_monitor LOGIN;
CREATE SCHEMA regent AUTHORIZATION regent_owner;
GRANT USAGE ON SCHEMA regent TO regent, regent_operator, regent_monitor;
ALTER ROLE regent_owner SET search_path = regent;
ALTER ROLE regent SET search_path = regent;
ALTER ROLE regent_operator SET search_path = regent;
ALTER ROLE regent_monitor SET search_path = regent;
