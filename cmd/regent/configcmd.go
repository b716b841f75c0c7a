package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/regentd/regent/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the effective configuration or the reference of every setting",
	}
	cmd.AddCommand(newConfigPrintCmd(), newConfigReferenceCmd())
	return cmd
}

func newConfigPrintCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "print [flags] [-- command args...]",
		Short: "Print the effective config (defaults, file, env, flags), secrets redacted",
		Long: `Print the effective configuration after defaults, the config file, REGENT_*
environment variables and flags, exactly as 'regent run' with the same
arguments would use it. Passwords (in URLs, the etcd password) and secrets
in worker commands are redacted; TLS file paths are shown, never key
material. Exits 1 with a one-line error if the configuration is invalid.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd, args, false)
			if err != nil {
				return err
			}
			doc := config.Document(cfg.Redacted())
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(doc)
			}
			out, err := yaml.Marshal(doc)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	config.RegisterFlags(cmd.Flags(), config.ScopeRun)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of YAML")
	return cmd
}

func newConfigReferenceCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reference",
		Short: "Print every setting with its flag, env variable and default (markdown)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			writeReference(cmd.OutOrStdout())
			return nil
		},
	}
}

// writeReference prints the settings table as markdown; the README's
// reference is generated from it.
func writeReference(w io.Writer) {
	fmt.Fprintln(w, "| key (YAML) | flag | env | default | per queue | meaning |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, s := range config.Settings {
		flag := ""
		if s.Flag != "" {
			flag = "`--" + s.Flag + "`"
		}
		env := "(none)"
		if e := s.Env(); e != "" {
			env = "`" + e + "`"
		}
		for _, e := range s.ExtraEnv {
			env += ", `" + e + "`"
		}
		def := ""
		switch d := s.Default.(type) {
		case nil:
		case time.Duration:
			def = d.String()
		case []string:
			def = strings.Join(d, ",")
		default:
			def = fmt.Sprint(d)
		}
		if def != "" {
			def = "`" + def + "`"
		}
		perQueue := ""
		if s.PerQueue {
			perQueue = "yes"
		}
		fmt.Fprintf(w, "| `%s` | %s | %s | %s | %s | %s |\n", s.Key, flag, env, def, perQueue, strings.ReplaceAll(s.Help, "|", "\\|"))
	}
}
