package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// DefaultName is the member name used when Config.Name is empty.
const DefaultName = "regent"

// Cluster states of Config.ClusterState.
const (
	// ClusterStateNew bootstraps a new cluster from InitialCluster.
	ClusterStateNew = "new"
	// ClusterStateExisting joins a cluster that already runs.
	ClusterStateExisting = "existing"
)

// ErrConfig is wrapped by the errors Start returns for an invalid Config.
var ErrConfig = errors.New("etcdserver: invalid config")

// Config describes one embedded etcd member.
type Config struct {
	// Dir is the data directory. Required; created if missing. A restart
	// with the same Dir keeps the data.
	Dir string
	// Name is the member name. Default DefaultName.
	Name string
	// ClientURL is the URL the member serves clients on, e.g.
	// "http://127.0.0.1:2379". Required. Port 0 binds a free port
	// (see Server.Endpoints).
	ClientURL string
	// PeerURL is the URL the member serves raft peers on, e.g.
	// "http://127.0.0.1:2380". Required. Port 0 binds a free port; a
	// single-member cluster never dials it.
	PeerURL string
	// InitialCluster lists every member as "name=peerURL,..." for a
	// multi-member cluster. Default "Name=PeerURL" (a single member).
	InitialCluster string
	// ClusterState is ClusterStateNew (the default) or ClusterStateExisting.
	ClusterState string
	// UnsafeNoFsync skips fsync of the WAL and database: faster, and data
	// may be lost on a host crash. For tests and `regent dev` only.
	UnsafeNoFsync bool
	// Logger receives etcd's warnings and errors. Nil discards them.
	Logger hclog.Logger
	// CertFile and KeyFile are the server certificate and key of the
	// client URL: set, the member serves clients over TLS, and ClientURL
	// must be https://. One requires the other.
	CertFile, KeyFile string
	// TrustedCAFile verifies client certificates; with it, the member
	// requires one of every client (etcd's --client-cert-auth). Requires
	// CertFile.
	TrustedCAFile string
	// BcryptCost is the cost of the password hashes of etcd's users
	// (etcd's --bcrypt-cost); 0 keeps etcd's default. Tests lower it to
	// bcrypt's minimum: every authentication hashes once.
	BcryptCost uint
}

// Server is a running embedded etcd member.
type Server struct {
	etcd      *embed.Etcd
	endpoints []string
	stopping  *atomic.Bool
	stopOnce  sync.Once
}

// Start starts the member and blocks until it is ready to serve clients.
// If ctx is cancelled first, Start stops the member, waits for it to end
// and returns ctx.Err().
func Start(ctx context.Context, cfg Config) (*Server, error) {
	stopping := new(atomic.Bool)
	ecfg, err := embedConfig(cfg, stopping)
	if err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(ecfg)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: start: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		stopping.Store(true)
		e.Close()
		return nil, fmt.Errorf("etcdserver: start: %w", err)
	case <-e.Server.StopNotify():
		stopping.Store(true)
		e.Close()
		return nil, errors.New("etcdserver: start: server stopped before it was ready")
	case <-ctx.Done():
		stopping.Store(true)
		e.Close()
		return nil, ctx.Err()
	}
	s := &Server{etcd: e, stopping: stopping}
	scheme := "http://"
	if cfg.CertFile != "" {
		scheme = "https://"
	}
	for _, l := range e.Clients {
		s.endpoints = append(s.endpoints, scheme+l.Addr().String())
	}
	return s, nil
}

// embedConfig validates cfg and translates it into etcd's configuration.
func embedConfig(cfg Config, stopping *atomic.Bool) (*embed.Config, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is required", ErrConfig)
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.ClusterState == "" {
		cfg.ClusterState = ClusterStateNew
	}
	if cfg.ClusterState != ClusterStateNew && cfg.ClusterState != ClusterStateExisting {
		return nil, fmt.Errorf("%w: ClusterState %q is neither %q nor %q",
			ErrConfig, cfg.ClusterState, ClusterStateNew, ClusterStateExisting)
	}
	clientScheme := "http"
	if cfg.CertFile != "" || cfg.KeyFile != "" || cfg.TrustedCAFile != "" {
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, fmt.Errorf("%w: CertFile and KeyFile must be set together (and TrustedCAFile only with them)", ErrConfig)
		}
		clientScheme = "https"
	}
	clientURL, err := parseURL("ClientURL", cfg.ClientURL, clientScheme)
	if err != nil {
		return nil, err
	}
	peerURL, err := parseURL("PeerURL", cfg.PeerURL, "http")
	if err != nil {
		return nil, err
	}
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	}

	ecfg := embed.NewConfig()
	ecfg.Name = cfg.Name
	ecfg.Dir = cfg.Dir
	ecfg.ListenClientUrls = []url.URL{*clientURL}
	ecfg.AdvertiseClientUrls = []url.URL{*clientURL}
	ecfg.ListenPeerUrls = []url.URL{*peerURL}
	ecfg.AdvertisePeerUrls = []url.URL{*peerURL}
	ecfg.InitialCluster = cfg.InitialCluster
	ecfg.ClusterState = cfg.ClusterState
	ecfg.UnsafeNoFsync = cfg.UnsafeNoFsync
	if cfg.CertFile != "" {
		ecfg.ClientTLSInfo = transport.TLSInfo{
			CertFile:       cfg.CertFile,
			KeyFile:        cfg.KeyFile,
			TrustedCAFile:  cfg.TrustedCAFile,
			ClientCertAuth: cfg.TrustedCAFile != "",
		}
	}
	if cfg.BcryptCost != 0 {
		ecfg.BcryptCost = cfg.BcryptCost
	}
	// NewConfig leaves it zero, which reports every request as slow.
	ecfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	// regent speaks gRPC only; the JSON gateway would be one more server.
	ecfg.EnableGRPCGateway = false
	// Keep a long-running dev server's history bounded.
	ecfg.AutoCompactionMode = "periodic"
	ecfg.AutoCompactionRetention = "1h"
	ecfg.Logger = "zap"
	ecfg.LogLevel = minLevel.String()
	ecfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(cfg.Logger, stopping))
	return ecfg, nil
}

// parseURL parses one URL of the config, of the given scheme.
func parseURL(field, raw, scheme string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: %s is required", ErrConfig, field)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, field, err)
	}
	if u.Scheme != scheme || u.Port() == "" {
		return nil, fmt.Errorf("%w: %s %q must look like %s://host:port", ErrConfig, field, raw, scheme)
	}
	return u, nil
}

// Endpoints returns the client URLs the member actually listens on (with
// the bound port when the configured port was 0).
func (s *Server) Endpoints() []string {
	return append([]string(nil), s.endpoints...)
}

// Err returns a channel that receives serving errors of the member's
// listeners; it is closed once Stop has finished.
func (s *Server) Err() <-chan error {
	return s.etcd.Err()
}

// Stopped returns a channel closed when the member's server has stopped,
// whether by Stop or on its own after a fatal error.
func (s *Server) Stopped() <-chan struct{} {
	return s.etcd.Server.StopNotify()
}

// Stop stops the member gracefully and blocks until it has ended. Client
// requests still in flight (watches included) are given etcd's request
// timeout, a few seconds, to finish. Stop is idempotent.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.stopping.Store(true)
		s.etcd.Close()
	})
}
