package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/regentd/regent/election"
)

// RegisterFlags adds the flags of every setting in scope (and of the
// backend scope) to fs, with their defaults and help.
func RegisterFlags(fs *pflag.FlagSet, scope Scope) {
	for _, s := range Settings {
		if s.Flag == "" || (s.Scope != ScopeBackend && s.Scope != scope) {
			continue
		}
		help := s.Help
		if e := s.Env(); e != "" {
			help += " [" + e + "]"
		}
		switch d := s.Default.(type) {
		case nil:
			if s.Key == "queue" {
				fs.StringArray(s.Flag, nil, help)
			} else {
				switch s.Key {
				case "renew_interval", "fence_margin":
					fs.Duration(s.Flag, 0, help)
				case "prefer":
					fs.StringSlice(s.Flag, nil, help)
				default:
					fs.String(s.Flag, "", help)
				}
			}
		case string:
			fs.String(s.Flag, d, help)
		case int:
			fs.Int(s.Flag, d, help)
		case bool:
			fs.Bool(s.Flag, d, help)
		case time.Duration:
			fs.Duration(s.Flag, d, help)
		case []string:
			fs.StringSlice(s.Flag, d, help)
		default:
			panic(fmt.Sprintf("config: setting %s has unsupported default type %T", s.Key, d))
		}
	}
}

// rawConfig is the shape of the file and of viper's merged settings.
type rawConfig struct {
	Config      `mapstructure:",squash"`
	QueueConfig `mapstructure:",squash"`
	File        string                    `mapstructure:"config"`
	Queue       []string                  `mapstructure:"queue"`
	Sections    map[string]map[string]any `mapstructure:"queues"`
}

// Load builds the effective Config from defaults, the YAML file named by
// --config or REGENT_CONFIG, REGENT_* env (and DATABASE_URL) and the flags
// in fs; flags win. command, if not empty, is the worker command given
// after "--" and overrides the configured one for every queue. The result
// has defaults filled in but is not validated: call Validate or
// ValidateRun.
func Load(fs *pflag.FlagSet, command []string) (*Config, error) {
	v := viper.New()
	explicit, err := bindSettings(v, fs)
	if err != nil {
		return nil, err
	}
	if err := readFile(v); err != nil {
		return nil, err
	}

	var raw rawConfig
	if err := v.UnmarshalExact(&raw); err != nil {
		return nil, fmt.Errorf("config: %s; check the key names and value types against `regent config reference`", oneLine(err.Error()))
	}
	cfg := raw.Config
	cfg.Queues = nil
	cfg.HTTPAddrExplicit = explicit["http_addr"] || v.InConfig("http_addr")
	// A queue section with nothing in it ("name: {}" or "name:") has no
	// leaf key, and viper leaves it out of the settings: take the names
	// from the file itself, so that such a queue is not silently dropped.
	if m, ok := v.Get("queues").(map[string]any); ok {
		for name := range m {
			if _, ok := raw.Sections[name]; !ok {
				if raw.Sections == nil {
					raw.Sections = map[string]map[string]any{}
				}
				raw.Sections[name] = map[string]any{}
			}
		}
	}

	// Queue list: flag/env, else the file's queue list, else its sections,
	// else "default".
	names := raw.Queue
	if len(names) == 0 {
		for name := range raw.Sections {
			names = append(names, name)
		}
		sort.Strings(names)
	}
	if len(names) == 0 {
		names = []string{"default"}
	}
	seen := map[string]bool{}
	for _, name := range names {
		name = strings.TrimSpace(name)
		if seen[name] {
			return nil, fmt.Errorf("config: queue %q is listed twice; list each queue once", name)
		}
		seen[name] = true
		q, err := queueConfig(v, name, raw.Sections[name], explicit)
		if err != nil {
			return nil, err
		}
		if len(command) > 0 {
			q.Command = append([]string(nil), command...)
		}
		cfg.Queues = append(cfg.Queues, q)
	}
	for name := range raw.Sections {
		if !seen[name] && len(raw.Queue) == 0 {
			return nil, fmt.Errorf("config: queues.%s is configured but not campaigned for", name)
		}
	}
	cfg.applyDefaults()
	return &cfg, nil
}

// bindSettings sets every setting's default in v and binds its env
// variables and flag (of fs, when not nil). It returns the keys set
// explicitly, by a flag or env.
func bindSettings(v *viper.Viper, fs *pflag.FlagSet) (map[string]bool, error) {
	explicit := map[string]bool{} // keys set by a flag or env
	for _, s := range Settings {
		if s.Default != nil {
			v.SetDefault(s.Key, s.Default)
		}
		var envs []string
		if !s.NoEnv {
			envs = append([]string{s.Env()}, s.ExtraEnv...)
		}
		if len(envs) > 0 {
			if err := v.BindEnv(append([]string{s.Key}, envs...)...); err != nil {
				return nil, fmt.Errorf("config: bind env %s: %w", s.Env(), err)
			}
		}
		for _, e := range envs {
			if _, ok := os.LookupEnv(e); ok {
				explicit[s.Key] = true
			}
		}
		if s.Flag == "" || fs == nil {
			continue
		}
		if f := fs.Lookup(s.Flag); f != nil {
			if err := v.BindPFlag(s.Key, f); err != nil {
				return nil, fmt.Errorf("config: bind flag --%s: %w", s.Flag, err)
			}
			if f.Changed {
				explicit[s.Key] = true
			}
		}
	}

	return explicit, nil
}

// readFile reads the YAML file named by the config setting, if any.
func readFile(v *viper.Viper) error {
	if file := v.GetString("config"); file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			var notFound viper.ConfigFileNotFoundError
			if errors.As(err, &notFound) || os.IsNotExist(errors.Unwrap(err)) {
				return fmt.Errorf("config file %s: not found; fix the --config path", file)
			}
			return fmt.Errorf("config file %s: %s; fix the YAML", file, oneLine(err.Error()))
		}
	}
	return nil
}

// queueConfig resolves one queue's worker settings: defaults, then the
// file's top level, then its section, then explicit flags and env.
func queueConfig(v *viper.Viper, name string, section map[string]any, explicit map[string]bool) (QueueConfig, error) {
	qv := viper.New()
	for _, s := range Settings {
		if !s.PerQueue {
			continue
		}
		val := v.Get(s.Key)
		if sv, ok := lookupPath(section, s.Key); ok && !explicit[s.Key] {
			val = sv
		}
		if val != nil {
			qv.Set(s.Key, val)
		}
	}
	for key := range flatten("", section) {
		if st, ok := Lookup(key); !ok || !st.PerQueue {
			return QueueConfig{}, fmt.Errorf("config: queues.%s.%s is not a per-queue setting; per-queue keys are %s", name, key, strings.Join(perQueueKeys(), ", "))
		}
	}
	var q QueueConfig
	if err := qv.UnmarshalExact(&q); err != nil {
		return QueueConfig{}, fmt.Errorf("config: queue %s: %s", name, oneLine(err.Error()))
	}
	q.Name = name
	return q, nil
}

func lookupPath(m map[string]any, key string) (any, bool) {
	if m == nil {
		return nil, false
	}
	parts := strings.Split(key, ".")
	var cur any = m
	for _, p := range parts {
		mm, ok := toMap(cur)
		if !ok {
			return nil, false
		}
		cur, ok = mm[p]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

func toMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, val := range m {
			out[fmt.Sprint(k)] = val
		}
		return out, true
	}
	return nil, false
}

func flatten(prefix string, m map[string]any) map[string]any {
	out := map[string]any{}
	for k, val := range m {
		key := strings.ToLower(k)
		if prefix != "" {
			key = prefix + "." + key
		}
		if sub, ok := toMap(val); ok && (key == "restart" || key == "liveness") {
			for sk, sv := range flatten(key, sub) {
				out[sk] = sv
			}
			continue
		}
		out[key] = val
	}
	return out
}

func perQueueKeys() []string {
	var keys []string
	for _, s := range Settings {
		if s.PerQueue {
			keys = append(keys, s.Key)
		}
	}
	return keys
}

// oneLine folds a multi-line error message onto one line.
func oneLine(s string) string {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range fields {
		fields[i] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(fields[i]), "* "))
	}
	return strings.Join(fields, "; ")
}

// applyDefaults fills the defaults that depend on other fields.
func (c *Config) applyDefaults() {
	if c.NodeID == "" {
		c.NodeID = DefaultNodeID()
	}
	// lease_ttl and retry_interval have flag defaults: an explicit 0 is
	// kept, for validation to refuse.
	if c.RenewInterval == 0 && c.LeaseTTL > 0 {
		c.RenewInterval = election.DefaultRenewInterval(c.LeaseTTL)
	}
	if c.FenceMargin == 0 && c.LeaseTTL > 0 {
		c.FenceMargin = election.DefaultFenceMargin(c.LeaseTTL)
	}
	c.Log.Level = strings.ToLower(c.Log.Level)
	c.Log.Format = strings.ToLower(c.Log.Format)
	c.Backend = strings.ToLower(c.Backend)
}
