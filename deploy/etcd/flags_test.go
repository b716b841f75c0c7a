package main

import (
	"testing"
)

func TestParseConfig(t *testing.T) {
	t.Setenv("ETCD_INITIAL_CLUSTER", "a=http://a:2380,b=http://b:2380")
	cfg, err := parseConfig([]string{
		"--name=a", "--data-dir", t.TempDir(),
		"--listen-client-urls=http://0.0.0.0:2379", "--advertise-client-urls=http://a:2379",
		"--listen-peer-urls=http://0.0.0.0:2380", "--initial-advertise-peer-urls=http://a:2380",
		"--initial-cluster-state=new", "--log-level=warn",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "a" {
		t.Errorf("name %q, want a", cfg.Name)
	}
	if cfg.InitialCluster != "a=http://a:2380,b=http://b:2380" {
		t.Errorf("initial cluster %q, want the env value", cfg.InitialCluster)
	}
	if got := cfg.ListenClientUrls[0].String(); got != "http://0.0.0.0:2379" {
		t.Errorf("listen client %s", got)
	}
	if got := cfg.AdvertiseClientUrls[0].String(); got != "http://a:2379" {
		t.Errorf("advertise client %s", got)
	}
	if got := cfg.AdvertisePeerUrls[0].String(); got != "http://a:2380" {
		t.Errorf("advertise peer %s", got)
	}
	if cfg.ClusterState != "new" || cfg.LogLevel != "warn" {
		t.Errorf("state %q level %q", cfg.ClusterState, cfg.LogLevel)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for name, args := range map[string][]string{
		"unknown flag":             {"--no-such-flag"},
		"stray argument":           {"serve"},
		"bad cluster state":        {"--initial-cluster-state=maybe"},
		"listen without advertise": {"--listen-client-urls=http://0.0.0.0:2379"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseConfig(append(args, "--data-dir", t.TempDir())); err == nil {
				t.Errorf("parseConfig(%q) succeeded", args)
			}
		})
	}
}

func TestParseConfigEnvShadowedByFlag(t *testing.T) {
	t.Setenv("ETCD_NAME", "b")
	if _, err := parseConfig([]string{"--name=a", "--data-dir", t.TempDir()}); err == nil {
		t.Error("ETCD_NAME and --name both set: no error")
	}
}

func TestParseConfigVersion(t *testing.T) {
	cfg, err := parseConfig([]string{"--version"})
	if err != nil || cfg != nil {
		t.Errorf("--version: cfg %v, err %v; want nil, nil", cfg, err)
	}
}
