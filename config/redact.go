package config

import (
	"net/url"
	"regexp"
	"strings"
)

// Redacted is the replacement text of a secret.
const Redacted = "REDACTED"

var (
	dsnPassword   = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
	secretFlag    = regexp.MustCompile(`(?i)^(-{1,2}[a-z0-9_.-]*(password|passwd|secret|token|api[-_]?key|credential)[a-z0-9_.-]*=)(.+)$`)
	secretFlagArg = regexp.MustCompile(`(?i)^-{1,2}[a-z0-9_.-]*(password|passwd|secret|token|api[-_]?key|credential)[a-z0-9_.-]*$`)
	urlInText     = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'"]+`)
)

// RedactURL hides the password of a URL or key=value connection string.
func RedactURL(s string) string {
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil {
			if u.User != nil {
				if _, has := u.User.Password(); has {
					u.User = url.UserPassword(u.User.Username(), Redacted)
					return u.String()
				}
			}
			return s
		}
		q := s
		if i := strings.Index(q, "?"); i >= 0 {
			q = q[:i]
		}
		if at := strings.LastIndex(q, "@"); at > 0 {
			// Unparseable URL with credentials: hide everything before '@'.
			scheme := q[:strings.Index(q, "://")+3]
			return scheme + Redacted + s[at:]
		}
		return s
	}
	return dsnPassword.ReplaceAllString(s, "${1}"+Redacted)
}

// RedactText hides passwords in every URL or key=value connection string
// found in free text (log lines, error messages).
func RedactText(s string) string {
	s = urlInText.ReplaceAllStringFunc(s, RedactURL)
	return dsnPassword.ReplaceAllString(s, "${1}"+Redacted)
}

// RedactArgs hides secrets in a worker command line: values of flags named
// like password, secret, token or api key, and passwords in URLs.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	hideNext := false
	for i, a := range args {
		switch {
		case hideNext:
			out[i] = Redacted
			hideNext = false
		case secretFlag.MatchString(a):
			out[i] = secretFlag.ReplaceAllString(a, "${1}"+Redacted)
		case secretFlagArg.MatchString(a):
			out[i] = a
			hideNext = true
		default:
			out[i] = RedactText(a)
		}
	}
	return out
}

// Redacted returns a copy of c safe to print or publish: passwords and
// URL credentials replaced, secrets in worker commands hidden. TLS file
// paths are kept (they are not key material).
func (c *Config) Redacted() Config {
	r := *c
	if r.Etcd.Password != "" {
		r.Etcd.Password = Redacted
	}
	r.Etcd.Endpoints = append([]string(nil), c.Etcd.Endpoints...)
	for i, ep := range r.Etcd.Endpoints {
		r.Etcd.Endpoints[i] = RedactURL(ep)
	}
	if r.Postgres.URL != "" {
		r.Postgres.URL = RedactURL(r.Postgres.URL)
	}
	if r.Fence.PostgresURL != "" {
		r.Fence.PostgresURL = RedactURL(r.Fence.PostgresURL)
	}
	r.Queues = make([]QueueConfig, len(c.Queues))
	for i, q := range c.Queues {
		r.Queues[i] = q.Redacted()
	}
	return r
}

// Redacted returns a copy of q with secrets in the command hidden.
func (q QueueConfig) Redacted() QueueConfig {
	q.Command = RedactArgs(q.Command)
	q.Prefer = append([]string(nil), q.Prefer...)
	return q
}
