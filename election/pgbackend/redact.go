package pgbackend

import (
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// redactedPassword replaces passwords in every message and log line.
const redactedPassword = "xxxxx"

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// RedactURL returns a Postgres URL or keyword/value connection string with
// its password replaced, for messages and logs.
func RedactURL(s string) string {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		if u, err := url.Parse(s); err == nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), redactedPassword)
			}
			q := u.Query()
			if q.Has("password") {
				q.Set("password", redactedPassword)
				u.RawQuery = q.Encode()
			}
			return u.String()
		}
		// Unparsable: hide everything between the scheme and the host.
		if at := strings.LastIndex(s, "@"); at > 0 {
			return s[:strings.Index(s, "://")+3] + redactedPassword + s[at:]
		}
		return s
	}
	return dsnPassword.ReplaceAllString(s, "${1}"+redactedPassword)
}

// scrub removes a known password from a message, whatever produced it.
func scrub(msg, password string) string {
	if password != "" {
		msg = strings.ReplaceAll(msg, password, redactedPassword)
	}
	return msg
}

// targets names the host:port pairs a connection config dials, for
// messages (never the user or password).
func targets(c *pgconn.Config) string {
	addr := func(host string, port uint16) string {
		if strings.HasPrefix(host, "/") {
			return host + "/.s.PGSQL." + strconv.Itoa(int(port))
		}
		return net.JoinHostPort(host, strconv.Itoa(int(port)))
	}
	parts := []string{addr(c.Host, c.Port)}
	for _, f := range c.Fallbacks {
		a := addr(f.Host, f.Port)
		if a != parts[len(parts)-1] {
			parts = append(parts, a)
		}
	}
	return strings.Join(parts, ",")
}
