package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/internal/etcdserver"
)

func newDevCmd() *cobra.Command {
	var (
		dataDir, clientURL, peerURL, logLevel string
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run an embedded single-node etcd on loopback for trying regent on one machine",
		Long: `Start an embedded single-node etcd on loopback, print the endpoint to give to
'regent run --etcd-endpoints', and stop cleanly on Ctrl-C. Data lives in a
temporary directory (removed on exit) unless --data-dir is given.

This is for trying regent and for tests. 'regent run' never starts a private
backend by itself: two replicas with private backends would each lead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := newLogger(config.LogConfig{Level: logLevel, Format: "text"}, cmd.ErrOrStderr())
			dir := dataDir
			if dir == "" {
				tmp, err := os.MkdirTemp("", "regent-dev-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			srv, err := etcdserver.Start(ctx, etcdserver.Config{
				Dir: dir, Name: "regent-dev", ClientURL: clientURL, PeerURL: peerURL,
				UnsafeNoFsync: dataDir == "", Logger: log.Named("etcd"),
			})
			if err != nil {
				return fmt.Errorf("start embedded etcd: %w (is %s already in use? choose another with --listen-client)", err, clientURL)
			}
			defer srv.Stop()
			eps := srv.Endpoints()
			fmt.Fprintf(cmd.OutOrStdout(), "embedded etcd ready: --etcd-endpoints %s\n", eps[0])
			fmt.Fprintf(cmd.OutOrStdout(), "try: regent run --etcd-endpoints %s --queue demo -- sh -c 'echo working; sleep 3600'\n", eps[0])
			select {
			case <-ctx.Done():
			case err := <-srv.Err():
				return fmt.Errorf("embedded etcd failed: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "stopping embedded etcd")
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data directory (default: a temporary one, removed on exit)")
	cmd.Flags().StringVar(&clientURL, "listen-client", "http://127.0.0.1:2379", "client URL (port 0 picks a free port)")
	cmd.Flags().StringVar(&peerURL, "listen-peer", "http://127.0.0.1:0", "peer URL")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "log level of the embedded etcd")
	return cmd
}
