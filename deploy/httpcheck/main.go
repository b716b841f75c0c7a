package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Exit codes.
const (
	exitOK          = 0
	exitBadStatus   = 1
	exitUnreachable = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("httpcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "bound of the whole request")
	if err := fs.Parse(args); err != nil {
		return exitUnreachable
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: httpcheck [-timeout 2s] URL")
		return exitUnreachable
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	code, line, err := get(ctx, fs.Arg(0))
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "httpcheck: %v\n", err)
		return exitUnreachable
	case code/100 == 2:
		fmt.Fprintln(stdout, line)
		return exitOK
	default:
		fmt.Fprintf(stderr, "httpcheck: %d %s\n", code, line)
		return exitBadStatus
	}
}

// get returns the status code and first body line of a GET of url.
// Cancelling ctx aborts the request.
func get(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 64<<10))
	line := ""
	if sc.Scan() {
		line = sc.Text()
	}
	return resp.StatusCode, line, nil
}
