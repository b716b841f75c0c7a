package etcdbackend

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/regentd/regent/election"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Defaults and limits of this backend; the lease timing's are election's
// (election.Timing).
const (
	// DefaultDialTimeout bounds New's connectivity check and every single
	// request the backend makes on its own.
	DefaultDialTimeout = 5 * time.Second
	// MinLeaseTTL is the shortest lease TTL accepted, above
	// election.MinLeaseTTL; etcd counts lease TTLs in whole seconds and
	// raises shorter ones to its own minimum.
	MinLeaseTTL = 2 * time.Second
)

// Config says how to reach etcd.
type Config struct {
	// Endpoints lists the etcd client URLs ("http://host:2379",
	// "https://host:2379" or "host:2379"). Required.
	Endpoints []string
	// Username and Password authenticate to etcd; both or neither.
	// The password is never logged.
	Username, Password string
	// CAFile verifies the server's certificate (default: the system roots).
	// CertFile and KeyFile are a client certificate and its key; one
	// requires the other. TLS is used when any of the three is set or when
	// an endpoint is https://.
	CAFile, CertFile, KeyFile string
	// DialTimeout bounds New's connectivity check and each request the
	// backend makes on its own (default DefaultDialTimeout).
	DialTimeout time.Duration
}

// withDefaults returns cfg with its zero fields defaulted.
func (cfg Config) withDefaults() Config {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	return cfg
}

// clientConfig validates cfg and builds the etcd client configuration.
func (cfg Config) clientConfig() (clientv3.Config, error) {
	if cfg.DialTimeout < 0 {
		return clientv3.Config{}, fmt.Errorf("etcd: dial_timeout %s is negative", cfg.DialTimeout)
	}
	if len(cfg.Endpoints) == 0 {
		return clientv3.Config{}, fmt.Errorf("etcd: no endpoints; set --etcd-endpoints")
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return clientv3.Config{}, fmt.Errorf("etcd: username and password must be set together")
	}
	endpoints, secure, err := cleanEndpoints(cfg.Endpoints)
	if err != nil {
		return clientv3.Config{}, err
	}
	wantTLS := cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != ""
	if wantTLS && secure == schemePlain {
		return clientv3.Config{}, fmt.Errorf("etcd: TLS files are set but the endpoints are http://; use https:// endpoints")
	}
	var tlsCfg *tls.Config
	if wantTLS || secure == schemeTLS {
		if tlsCfg, err = cfg.tlsConfig(); err != nil {
			return clientv3.Config{}, err
		}
	}
	return clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: cfg.DialTimeout,
		// Probe the connection so that a dead TCP connection is dropped
		// and redialled instead of hanging every request until it times out.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: cfg.DialTimeout,
		TLS:                  tlsCfg,
		Username:             cfg.Username,
		Password:             cfg.Password,
		// The backend reports what matters through its own logger.
		Logger: zap.NewNop(),
	}, nil
}

// Endpoint scheme classes.
const (
	schemeNone  = iota // no endpoint had a scheme
	schemePlain        // http://
	schemeTLS          // https://
)

// cleanEndpoints trims and checks the endpoints and reports whether they
// ask for TLS. Mixing http:// and https:// is an error.
func cleanEndpoints(in []string) ([]string, int, error) {
	out := make([]string, 0, len(in))
	class := schemeNone
	for i, raw := range in {
		ep := strings.TrimSpace(raw)
		if ep == "" {
			return nil, 0, fmt.Errorf("etcd: empty endpoint in --etcd-endpoints")
		}
		c := schemeNone
		if strings.Contains(ep, "://") {
			// Errors never quote an endpoint that fails to parse or holds
			// credentials: it might show a password.
			u, err := url.Parse(ep)
			if err != nil {
				return nil, 0, fmt.Errorf("etcd: endpoint %d of --etcd-endpoints is not a valid URL", i+1)
			}
			switch u.Scheme {
			case "http":
				c = schemePlain
			case "https":
				c = schemeTLS
			default:
				return nil, 0, fmt.Errorf("etcd: endpoint %q: scheme must be http or https", u.Redacted())
			}
			if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
				return nil, 0, fmt.Errorf("etcd: endpoint %q must look like %s://host:port (credentials go in --etcd-username and --etcd-password)", u.Redacted(), u.Scheme)
			}
		} else if strings.ContainsAny(ep, "@/?#") {
			return nil, 0, fmt.Errorf("etcd: endpoint %d of --etcd-endpoints must look like host:port or http(s)://host:port", i+1)
		}
		if c != schemeNone {
			if class != schemeNone && class != c {
				return nil, 0, fmt.Errorf("etcd: endpoints mix http:// and https://")
			}
			class = c
		}
		out = append(out, ep)
	}
	return out, class, nil
}

// tlsConfig loads the TLS files of cfg.
func (cfg Config) tlsConfig() (*tls.Config, error) {
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, fmt.Errorf("etcd TLS: cert_file and key_file must be set together (cert_file %q, key_file %q)", cfg.CertFile, cfg.KeyFile)
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd TLS: ca_file %s holds no PEM certificate", cfg.CAFile)
		}
		t.RootCAs = pool
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: load cert_file %s and key_file %s: %w", cfg.CertFile, cfg.KeyFile, err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// checkOptions validates opts and fills their defaults: the lease timing
// by election.Timing's rules, then etcd's own (whole-second leases, at
// least MinLeaseTTL), which a read-only backend does not need.
func checkOptions(opts election.Options) (election.Options, error) {
	if err := validName("cluster", opts.Cluster); err != nil {
		return opts, err
	}
	if err := validName("node id", opts.Node); err != nil {
		return opts, err
	}
	opts.Timing = opts.Timing.WithDefaults()
	if err := opts.Timing.Validate(); err != nil {
		return opts, fmt.Errorf("etcd: %w", err)
	}
	if opts.ReadOnly {
		return opts, nil
	}
	if opts.LeaseTTL < MinLeaseTTL || opts.LeaseTTL%time.Second != 0 || opts.LeaseTTL/time.Second > math.MaxInt32 {
		return opts, fmt.Errorf("etcd: lease_ttl %s must be a whole number of seconds, at least %s (etcd lease TTLs are whole seconds)", opts.LeaseTTL, MinLeaseTTL)
	}
	return opts, nil
}
