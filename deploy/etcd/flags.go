package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"

	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/pkg/v3/flags"
	"go.etcd.io/etcd/server/v3/embed"
)

// parseConfig builds the member's configuration from args and ETCD_*
// variables, the way the etcd binary does. It returns (nil, nil) when
// args asked only for --version or --help (already printed).
func parseConfig(args []string) (*embed.Config, error) {
	cfg := embed.NewConfig()
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.AddFlags(fs)
	state := flags.NewSelectiveStringValue(embed.ClusterStateFlagNew, embed.ClusterStateFlagExisting)
	fs.Var(state, "initial-cluster-state", "new when bootstrapping a cluster, existing when joining one")
	printVersion := fs.Bool("version", false, "print the version and exit")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return nil, nil
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *printVersion {
		fmt.Printf("etcd Version: %s (regent local image)\nGo Version: %s\n", version.Version, runtime.Version())
		return nil, nil
	}
	// Environment variables fill in the flags that were not given; as in
	// etcd, a variable that a flag would shadow is an error.
	var conflict error
	fs.Visit(func(f *flag.Flag) {
		if env := flags.FlagToEnv("ETCD", f.Name); os.Getenv(env) != "" && conflict == nil {
			conflict = fmt.Errorf("both --%s and %s are set; unset one", f.Name, env)
		}
	})
	if conflict != nil {
		return nil, conflict
	}
	// A nil logger: etcd's helper would otherwise log through zap, and exit
	// through it on the conflict checked above.
	if err := flags.SetFlagsFromEnv(nil, "ETCD", fs); err != nil {
		return nil, err
	}

	// URL and list flags are flag.Values that embed.Config does not read
	// back by itself.
	cfg.ListenPeerUrls = flags.UniqueURLsFromFlag(fs, "listen-peer-urls")
	cfg.AdvertisePeerUrls = flags.UniqueURLsFromFlag(fs, "initial-advertise-peer-urls")
	cfg.ListenClientUrls = flags.UniqueURLsFromFlag(fs, "listen-client-urls")
	cfg.ListenClientHttpUrls = flags.UniqueURLsFromFlag(fs, "listen-client-http-urls")
	cfg.AdvertiseClientUrls = flags.UniqueURLsFromFlag(fs, "advertise-client-urls")
	cfg.ListenMetricsUrls = flags.UniqueURLsFromFlag(fs, "listen-metrics-urls")
	cfg.LogOutputs = flags.UniqueStringsFromFlag(fs, "log-outputs")
	cfg.ClusterState = state.String()
	if flags.IsSet(fs, "listen-client-urls") && !flags.IsSet(fs, "advertise-client-urls") {
		// As etcd: a member that listens elsewhere must say where it is
		// reached, rather than advertise the loopback default.
		cfg.AdvertiseClientUrls = nil
	}
	fs.Visit(func(f *flag.Flag) { cfg.FlagsExplicitlySet[f.Name] = true })
	boolFlag := func(name string) *bool {
		v, err := flags.GetBoolFlagVal(fs, name)
		if err != nil {
			return nil
		}
		return v
	}
	if err := embed.SetFeatureGatesFromExperimentalFlags(cfg.ServerFeatureGate, boolFlag, fs.Lookup(embed.ServerFeatureGateFlagName).Value.String()); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}
