package main

import (
	"net"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// The default http_addr, taken, falls back to a free port of the same
// host with one warning; an explicit one stays an error.
func TestListenHTTPFallback(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()

	var logs strings.Builder
	log := hclog.New(&hclog.LoggerOptions{Output: &logs})
	ln, err := listenHTTP(addr, false, log)
	if err != nil {
		t.Fatalf("default address taken: %v; want a free port instead", err)
	}
	defer ln.Close()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if host != "127.0.0.1" || ln.Addr().String() == addr || port == "0" {
		t.Fatalf("listening on %s, want another port of 127.0.0.1", ln.Addr())
	}
	if n := strings.Count(logs.String(), "http_addr in use"); n != 1 {
		t.Fatalf("%d warnings, want one:\n%s", n, logs.String())
	}

	_, err = listenHTTP(addr, true, log)
	if err == nil || !strings.Contains(err.Error(), "http_addr "+addr) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("explicit address taken: %v; want the bind error", err)
	}
}
