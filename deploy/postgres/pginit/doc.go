// Command pginit is the entrypoint of regent's local PostgreSQL image
// (deploy/postgres): on the first start it creates the cluster in $PGDATA
// with initdb, then it replaces itself with the server. It reads the
// variables of the public postgres image, so docker-compose.yml runs
// unchanged with either image:
//
//	POSTGRES_PASSWORD          the superuser's password (required unless
//	                           POSTGRES_HOST_AUTH_METHOD=trust)
//	POSTGRES_USER              the superuser (default postgres)
//	POSTGRES_DB                a database created at init (default: the user)
//	POSTGRES_HOST_AUTH_METHOD  auth of TCP clients (default scram-sha-256)
//	POSTGRES_INITDB_ARGS       more initdb arguments, split on spaces
//	PGDATA                     the data directory (default
//	                           /var/lib/postgresql/data)
//
// Invariants:
//
//   - It never runs as root: the image's USER owns $PGDATA.
//   - An existing cluster ($PGDATA/PG_VERSION present) is never touched.
//   - The server ends up as the container's PID 1 (exec, no wrapper), so
//     docker's stop signal reaches it directly.
//   - The password is passed to initdb in a file removed before the server
//     starts; it never appears in a command line.
package main
