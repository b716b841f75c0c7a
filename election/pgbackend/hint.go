package pgbackend

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// hint names the fix of a connection or statement error whose cause is
// the user's setup: credentials, certificates, privileges. It returns ""
// for the others. Every hint names --postgres-url or the grants file.
func hint(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000":
			return "PostgreSQL refused the credentials: check the user and password (in --postgres-url, or PGPASSWORD)"
		case "42501":
			return "the role lacks a privilege: grant it what its audience needs (deploy/postgres/grants.sql: replicas, operator commands, status)"
		}
	}
	var unknownCA x509.UnknownAuthorityError
	var host x509.HostnameError
	var expired x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknownCA):
		return "the server's certificate is not signed by a CA this client trusts: set sslrootcert in --postgres-url to the CA that signed it"
	case errors.As(err, &host):
		return "the server's certificate is for another host: connect by a name or address the certificate names (sslmode=verify-full checks it), in --postgres-url"
	case errors.As(err, &expired):
		return fmt.Sprintf("the server's certificate is not valid (%s): renew it, or check this host's clock", expired.Error())
	case strings.Contains(err.Error(), "remote error: tls:"):
		return "the server refused this client's TLS certificate: check sslcert and sslkey in --postgres-url"
	}
	return ""
}

// withHint appends hint(err) to msg, when there is one.
func withHint(msg string, err error) string {
	if h := hint(err); h != "" {
		return msg + "; " + h
	}
	return msg
}
