// Package config is regent's typed configuration: the settings table (every
// key with its flag, environment variable and default), loading with viper
// from a YAML file, REGENT_* environment variables and flags (flags win over
// env, env over the file, the file over defaults), validation that names the
// field and the fix, and redaction of secrets for printing and publishing.
//
// Worker settings (command, concurrency, max_rss_mb, stop_timeout, restart,
// liveness) exist at the top level, as defaults for every queue, and in
// per-queue sections under "queues". A per-queue section overrides the
// file's top level; a flag or environment variable that is explicitly set
// overrides both, for every queue.
//
// viper is confined to this package and cmd/: other packages receive the
// typed Config.
package config
