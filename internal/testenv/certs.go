package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs is a throwaway PKI for a test, written as PEM files into one
// directory: a CA, a server certificate for the loopback address (IP SANs
// 127.0.0.1 and ::1 only: a client that dials "localhost" finds a
// certificate for another host) and a client certificate, both signed by
// the CA, an expired client certificate of the same CA, and a second CA
// with a client certificate of its own, which a server trusting CAFile
// refuses. Keys are ECDSA P-256, files 0600.
type Certs struct {
	Dir string
	// CAFile is the certificate of the CA that signed ServerCert and
	// ClientCert.
	CAFile string
	// ServerCert and ServerKey are the server's certificate and key.
	ServerCert, ServerKey string
	// ClientCert and ClientKey are a client certificate (CN ClientCN) and
	// its key.
	ClientCert, ClientKey string
	// OtherCAFile is an unrelated CA; OtherClientCert and OtherClientKey
	// are a client certificate it signed (a certificate the server's CA
	// never issued).
	OtherCAFile                     string
	OtherClientCert, OtherClientKey string
	// ExpiredClientCert and ExpiredClientKey: signed by the CA, expired
	// an hour ago.
	ExpiredClientCert, ExpiredClientKey string
}

// ClientCN is the common name of Certs.ClientCert. It names no etcd user,
// so that a connection authenticated by the certificate alone (etcd takes
// the CN as the user when no password is given) has no permission.
const ClientCN = "regent-test-client"

// NewCerts writes a fresh PKI into a temporary directory of the test.
func NewCerts(t testing.TB) *Certs {
	t.Helper()
	c, err := writeCerts(t.TempDir())
	if err != nil {
		t.Fatalf("testenv: certificates: %v", err)
	}
	return c
}

// writeCerts creates the PKI in dir.
func writeCerts(dir string) (*Certs, error) {
	c := &Certs{Dir: dir}
	ca, caKey, err := newCA("regent test CA")
	if err != nil {
		return nil, err
	}
	other, otherKey, err := newCA("unrelated test CA")
	if err != nil {
		return nil, err
	}
	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "regent-test-server"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	client := &x509.Certificate{
		Subject:     pkix.Name{CommonName: ClientCN},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	steps := []struct {
		tmpl       *x509.Certificate
		parent     *x509.Certificate
		parentKey  *ecdsa.PrivateKey
		cert, key  *string
		certN, keN string
	}{
		{server, ca, caKey, &c.ServerCert, &c.ServerKey, "server.crt", "server.key"},
		{client, ca, caKey, &c.ClientCert, &c.ClientKey, "client.crt", "client.key"},
		{&x509.Certificate{Subject: pkix.Name{CommonName: ClientCN},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
			other, otherKey, &c.OtherClientCert, &c.OtherClientKey, "other-client.crt", "other-client.key"},
		{&x509.Certificate{Subject: pkix.Name{CommonName: ClientCN},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			NotAfter:    time.Now().Add(-time.Hour)},
			ca, caKey, &c.ExpiredClientCert, &c.ExpiredClientKey, "expired-client.crt", "expired-client.key"},
	}
	c.CAFile = filepath.Join(dir, "ca.crt")
	c.OtherCAFile = filepath.Join(dir, "other-ca.crt")
	if err := writePEM(c.CAFile, "CERTIFICATE", ca.Raw); err != nil {
		return nil, err
	}
	if err := writePEM(c.OtherCAFile, "CERTIFICATE", other.Raw); err != nil {
		return nil, err
	}
	for _, s := range steps {
		der, key, err := signCert(s.tmpl, s.parent, s.parentKey)
		if err != nil {
			return nil, err
		}
		*s.cert, *s.key = filepath.Join(dir, s.certN), filepath.Join(dir, s.keN)
		if err := writePEM(*s.cert, "CERTIFICATE", der); err != nil {
			return nil, err
		}
		kb, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := writePEM(*s.key, "PRIVATE KEY", kb); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// ClientTLS returns a client configuration that trusts the CA and
// presents ClientCert.
func (c *Certs) ClientTLS() (*tls.Config, error) {
	pemCA, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCA)
	cert, err := tls.LoadX509KeyPair(c.ClientCert, c.ClientKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// newCA returns a self-signed CA certificate and its key.
func newCA(name string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, key, err := signCert(tmpl, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// signCert creates a key and a certificate of tmpl signed by parent (self
// signed when parent is nil), valid from an hour ago for a day, or, when
// tmpl has a NotAfter, from two hours before it until then.
func signCert(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	if tmpl.NotAfter.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	} else {
		tmpl.NotBefore = tmpl.NotAfter.Add(-2 * time.Hour)
	}
	if !tmpl.IsCA {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("testenv: sign %s: %w", tmpl.Subject.CommonName, err)
	}
	return der, key, nil
}

// writePEM writes one PEM block to path, mode 0600.
func writePEM(path, typ string, der []byte) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	return nil
}
