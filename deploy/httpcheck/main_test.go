package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.Write([]byte("ok\nmore\n"))
		case "/hang":
			<-r.Context().Done() // answers only once the client gave up
		default:
			http.Error(w, "not the leader", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	cases := []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"ok", []string{srv.URL + "/healthz"}, exitOK, "ok\n", ""},
		{"bad status", []string{srv.URL + "/leader"}, exitBadStatus, "", "503 not the leader"},
		{"unreachable", []string{closed.URL}, exitUnreachable, "", "connect"},
		{"timeout", []string{"-timeout", "50ms", srv.URL + "/hang"}, exitUnreachable, "", "deadline"},
		{"usage", nil, exitUnreachable, "", "usage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(tc.args, &out, &errOut); code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, errOut.String())
			}
			if out.String() != tc.out {
				t.Errorf("stdout %q, want %q", out.String(), tc.out)
			}
			if !strings.Contains(errOut.String(), tc.err) {
				t.Errorf("stderr %q does not contain %q", errOut.String(), tc.err)
			}
		})
	}
}
