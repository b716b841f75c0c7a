package etcdbackend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// tlsProbeTimeout bounds one endpoint's probe.
const tlsProbeTimeout = time.Second

// diagnoseTLS explains why etcd could not be reached over TLS, when the
// cause is the TLS handshake: the gRPC client only reports that it timed
// out while it retried. It opens one TLS connection to each endpoint with
// tlsCfg and reads from it: a server certificate this client does not
// trust fails the handshake; a client certificate the server refuses
// (TLS 1.3 checks it after the handshake) comes back as an alert on the
// first read. It returns nil when no endpoint showed a TLS problem.
func diagnoseTLS(ctx context.Context, endpoints []string, tlsCfg *tls.Config) error {
	for _, ep := range endpoints {
		host := ep
		if u, err := url.Parse(ep); err == nil && u.Host != "" {
			host = u.Host
		}
		if err := probeTLS(ctx, host, tlsCfg); err != nil {
			return err
		}
	}
	return nil
}

// probeTLS probes one host:port.
func probeTLS(ctx context.Context, host string, tlsCfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, tlsProbeTimeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		return nil // not a TLS problem
	}
	defer raw.Close()
	cfg := tlsCfg.Clone()
	if cfg.ServerName == "" {
		if h, _, err := net.SplitHostPort(host); err == nil {
			cfg.ServerName = h
		}
	}
	cfg.NextProtos = []string{"h2"}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return fmt.Errorf("etcd at %s presented a certificate this client does not accept: %v; check --etcd-ca-file (the CA that signed etcd's certificate) and that the endpoint's host is in the certificate", host, verr.Err)
		}
		return tlsAlert(host, err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetReadDeadline(deadline)
	_, err = conn.Read(make([]byte, 1))
	return tlsAlert(host, err)
}

// tlsAlert explains a TLS alert sent by the server, or returns nil.
func tlsAlert(host string, err error) error {
	if err == nil || !strings.Contains(err.Error(), "remote error: tls:") {
		return nil
	}
	alert := err.Error()[strings.Index(err.Error(), "remote error: tls:"):]
	return fmt.Errorf("etcd at %s refused this client's TLS certificate (%s); check --etcd-cert-file and --etcd-key-file: etcd needs a client certificate signed by a CA it trusts (its --trusted-ca-file)", host, alert)
}
