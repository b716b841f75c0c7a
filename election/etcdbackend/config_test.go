package etcdbackend

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/regentd/regent/election"
)

// writeCert writes a self-signed certificate and its key in dir and
// returns their paths.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "regent-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestClientConfig(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ep := []string{"http://127.0.0.1:2379"}
	tlsEP := []string{"https://127.0.0.1:2379"}
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" for success
		wantTLS bool
	}{
		{"plain", Config{Endpoints: ep}, "", false},
		{"no scheme", Config{Endpoints: []string{"127.0.0.1:2379"}}, "", false},
		{"no endpoints", Config{}, "no endpoints", false},
		{"empty endpoint", Config{Endpoints: []string{" "}}, "empty endpoint", false},
		{"bad scheme", Config{Endpoints: []string{"ftp://x:1"}}, "scheme must be http or https", false},
		{"path", Config{Endpoints: []string{"http://x:1/v3"}}, "must look like", false},
		{"user in url", Config{Endpoints: []string{"http://u:secret@x:1"}}, "must look like", false},
		{"mixed", Config{Endpoints: []string{"http://a:1", "https://b:1"}}, "mix http:// and https://", false},
		{"https system roots", Config{Endpoints: tlsEP}, "", true},
		{"ca", Config{Endpoints: tlsEP, CAFile: cert}, "", true},
		{"client cert", Config{Endpoints: tlsEP, CAFile: cert, CertFile: cert, KeyFile: key}, "", true},
		{"tls files on http", Config{Endpoints: ep, CAFile: cert}, "use https:// endpoints", false},
		{"cert without key", Config{Endpoints: tlsEP, CertFile: cert}, "cert_file and key_file must be set together", false},
		{"key without cert", Config{Endpoints: tlsEP, KeyFile: key}, "cert_file and key_file must be set together", false},
		{"missing ca", Config{Endpoints: tlsEP, CAFile: filepath.Join(dir, "nope.pem")}, "read ca_file", false},
		{"garbage ca", Config{Endpoints: tlsEP, CAFile: garbage}, "holds no PEM certificate", false},
		{"garbage cert", Config{Endpoints: tlsEP, CertFile: garbage, KeyFile: key}, "load cert_file", false},
		{"key mismatch", Config{Endpoints: tlsEP, CertFile: key, KeyFile: cert}, "load cert_file", false},
		{"user without password", Config{Endpoints: ep, Username: "u"}, "username and password", false},
		{"password without user", Config{Endpoints: ep, Password: "p"}, "username and password", false},
		{"negative timeout", Config{Endpoints: ep, DialTimeout: -1}, "dial_timeout", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, err := tc.cfg.withDefaults().clientConfig()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if (cc.TLS != nil) != tc.wantTLS {
					t.Fatalf("TLS = %v, want %v", cc.TLS != nil, tc.wantTLS)
				}
				if cc.DialTimeout != DefaultDialTimeout {
					t.Fatalf("DialTimeout = %s", cc.DialTimeout)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error shows a password: %v", err)
			}
		})
	}
}

func TestCheckOptions(t *testing.T) {
	base := testOptions("c", "n")
	for _, tc := range []struct {
		name    string
		mod     func(*election.Options)
		wantErr string
	}{
		{"ok", func(*election.Options) {}, ""},
		{"defaults", func(o *election.Options) { o.LeaseTTL, o.RenewInterval, o.RetryInterval = 0, 0, 0 }, ""},
		{"read-only needs no ttl", func(o *election.Options) { o.ReadOnly, o.LeaseTTL = true, 1500*time.Millisecond }, ""},
		{"ttl not whole", func(o *election.Options) { o.LeaseTTL = 2500 * time.Millisecond }, "lease_ttl"},
		{"ttl too short", func(o *election.Options) { o.LeaseTTL = time.Second; o.RenewInterval = 100 * time.Millisecond }, "lease_ttl"},
		{"ttl sub-second", func(o *election.Options) { o.LeaseTTL = 1500 * time.Millisecond }, "lease_ttl"},
		{"renew too slow", func(o *election.Options) { o.RenewInterval = 1500 * time.Millisecond }, "renew_interval"},
		{"renew over a third (was up to a half)", func(o *election.Options) { o.RenewInterval = time.Second }, "renew_interval"},
		{"step-down hold negative", func(o *election.Options) { o.StepDownHold = -1 }, "step_down_hold"},
		{"renew negative", func(o *election.Options) { o.RenewInterval = -1 }, "renew_interval"},
		{"retry negative", func(o *election.Options) { o.RetryInterval = -1 }, "retry_interval"},
		{"no cluster", func(o *election.Options) { o.Cluster = "" }, "cluster is empty"},
		{"slash in cluster", func(o *election.Options) { o.Cluster = "a/b" }, "contains"},
		{"no node", func(o *election.Options) { o.Node = "" }, "node id is empty"},
		{"space in node", func(o *election.Options) { o.Node = "a b" }, "contains"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.mod(&o)
			got, err := checkOptions(o)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got.Timing != got.Timing.WithDefaults() {
					t.Fatalf("defaults not filled: %+v", got.Timing)
				}
				if tc.name == "defaults" && got.Timing != (election.Timing{}).WithDefaults() {
					t.Fatalf("defaults %+v, not election's", got.Timing)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewFailsFastWhenUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	for _, cfg := range []Config{
		{Endpoints: []string{"http://" + addr}, DialTimeout: 500 * time.Millisecond},
		{Endpoints: []string{"http://" + addr}, DialTimeout: 500 * time.Millisecond, Username: "root", Password: "s3cret-pw"},
	} {
		start := time.Now()
		b, err := New(context.Background(), cfg, testOptions("c", "n"), hclog.NewNullLogger())
		if err == nil {
			_ = b.Close(context.Background())
			t.Fatal("New succeeded without etcd")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("New took %s to fail, want about DialTimeout", d)
		}
		if !errors.Is(err, election.ErrUnavailable) {
			t.Errorf("error %v, want one wrapping ErrUnavailable", err)
		}
		for _, want := range []string{addr, "--etcd-endpoints"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestNewTLSAgainstPlainServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() { // a server that speaks no TLS: accept and hang up
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	cert, key := writeCert(t, t.TempDir())
	cfg := Config{Endpoints: []string{"https://" + ln.Addr().String()}, CAFile: cert, CertFile: cert, KeyFile: key, DialTimeout: 500 * time.Millisecond}
	b, err := New(context.Background(), cfg, testOptions("c", "n"), hclog.NewNullLogger())
	if err == nil {
		_ = b.Close(context.Background())
		t.Fatal("New succeeded against a server without TLS")
	}
	mustIs(t, err, election.ErrUnavailable)
	_ = ln.Close()
	<-done
}
