package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/regentd/regent/supervisor"
)

// httpServer serves /metrics, /healthz, /readyz, /status and /leader.
type httpServer struct {
	srv  *http.Server
	done chan struct{}
}

// listenHTTP listens on addr. When the address is the default (explicit
// false: no flag, env or file set it) and its port is taken — a second
// replica on one host — it warns once and listens on a free port of the
// same host instead; the address actually listened on is published in
// the member record (status members). An explicit address that cannot be
// bound is an error.
func listenHTTP(addr string, explicit bool, log hclog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	if !explicit && errors.Is(err, syscall.EADDRINUSE) {
		host, _, _ := net.SplitHostPort(addr)
		if ln, ferr := net.Listen("tcp", net.JoinHostPort(host, "0")); ferr == nil {
			log.Warn("http_addr in use; listening on a free port instead (set --http-addr to choose one)",
				"http_addr", addr, "listening", ln.Addr().String())
			return ln, nil
		}
	}
	return nil, fmt.Errorf("http_addr %s: %w (choose a free port with --http-addr, or --http-addr='' to disable)", addr, err)
}

// startHTTP serves on ln.
func startHTTP(ln net.Listener, reg *prometheus.Registry, sup *supervisor.Supervisor, log hclog.Logger) *httpServer {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// /livez: the process serves; nothing about the backend. A liveness
	// probe uses it: a replica cut off from its backend fences itself and
	// reconnects on its own, and a restart would not help it.
	mux.HandleFunc("/livez", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "alive")
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !sup.Healthy() {
			http.Error(w, "backend session down\n", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !sup.Healthy() {
			http.Error(w, "not ready: backend session down\n", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/leader", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("queue")
		if q == "" {
			http.Error(w, "missing ?queue=NAME\n", http.StatusBadRequest)
			return
		}
		if !sup.Leads(q) {
			http.Error(w, "not the leader of "+q+"\n", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "leader of", q)
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		b := sup.Backend()
		if b == nil {
			http.Error(w, "backend session down\n", http.StatusServiceUnavailable)
			return
		}
		doc, err := buildStatus(ctx, b, "", "")
		if err != nil {
			http.Error(w, err.Error()+"\n", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(doc)
	})
	s := &httpServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server failed", "error", err)
		}
	}()
	log.Debug("http listening", "addr", ln.Addr().String())
	return s
}

// Close stops the server and waits for it.
func (s *httpServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
}
