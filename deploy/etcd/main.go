package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run parses args, runs one member until SIGTERM/SIGINT and returns the
// exit code.
func run(args []string) int {
	cfg, err := parseConfig(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		return 2
	}
	if cfg == nil { // --version or --help
		return 0
	}
	// Register before the member starts, so a stop request sent while it
	// boots is not lost.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(stop)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: start: %v\n", err)
		return 1
	}
	// Close stops the member and waits for every goroutine it started.
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		e.GetLogger().Info("member ready to serve clients")
	case <-stop:
		e.GetLogger().Info("stopping before ready")
		return 0
	case err := <-e.Err():
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		return 1
	case <-e.Server.StopNotify():
		fmt.Fprintln(os.Stderr, "etcd: member stopped before it was ready")
		return 1
	}
	select {
	case <-stop:
		e.GetLogger().Info("stopping on signal")
		return 0
	case err := <-e.Err():
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		return 1
	case <-e.Server.StopNotify():
		fmt.Fprintln(os.Stderr, "etcd: member stopped")
		return 1
	}
}
