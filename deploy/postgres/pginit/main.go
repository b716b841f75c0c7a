package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

const defaultPGDATA = "/var/lib/postgresql/data"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "pginit: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		args = []string{"postgres"}
	}
	if args[0] != "postgres" {
		// Any other command (psql, pg_isready, ...) runs as given.
		return execPath(args)
	}
	if os.Geteuid() == 0 {
		return errors.New("refusing to run the server as root; run the image as its postgres user")
	}
	pgdata := os.Getenv("PGDATA")
	if pgdata == "" {
		pgdata = defaultPGDATA
		if err := os.Setenv("PGDATA", pgdata); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(pgdata, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := initCluster(pgdata, settingsFromEnv()); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	return execPath(args)
}

// settings are the first-start choices read from the environment.
type settings struct {
	user, password, db, hostAuth string
	initdbArgs                   []string
}

func settingsFromEnv() settings {
	s := settings{
		user:       os.Getenv("POSTGRES_USER"),
		password:   os.Getenv("POSTGRES_PASSWORD"),
		db:         os.Getenv("POSTGRES_DB"),
		hostAuth:   os.Getenv("POSTGRES_HOST_AUTH_METHOD"),
		initdbArgs: strings.Fields(os.Getenv("POSTGRES_INITDB_ARGS")),
	}
	if s.user == "" {
		s.user = "postgres"
	}
	if s.db == "" {
		s.db = s.user
	}
	if s.hostAuth == "" {
		s.hostAuth = "scram-sha-256"
	}
	return s
}

// initCluster runs initdb in pgdata, opens the server to TCP clients with
// s.hostAuth and creates s.db.
func initCluster(pgdata string, s settings) error {
	if s.password == "" && s.hostAuth != "trust" {
		return errors.New("POSTGRES_PASSWORD is not set; set it, or POSTGRES_HOST_AUTH_METHOD=trust for a throwaway local server")
	}
	fmt.Fprintf(os.Stderr, "pginit: creating a cluster in %s (superuser %s, database %s)\n", pgdata, s.user, s.db)
	pw, err := os.CreateTemp("", "pwfile-")
	if err != nil {
		return err
	}
	defer os.Remove(pw.Name())
	if _, err := pw.WriteString(s.password + "\n"); err != nil {
		pw.Close()
		return err
	}
	if err := pw.Close(); err != nil {
		return err
	}
	initdb := append([]string{"initdb", "-D", pgdata, "-U", s.user, "--pwfile", pw.Name(),
		"-E", "UTF8", "--locale=C", "--auth-local=trust", "--auth-host=" + s.hostAuth}, s.initdbArgs...)
	if err := runCmd(initdb, ""); err != nil {
		return err
	}
	if err := appendFile(filepath.Join(pgdata, "pg_hba.conf"), "\n# pginit: TCP clients from anywhere\nhost all all all "+s.hostAuth+"\n"); err != nil {
		return err
	}
	if err := appendFile(filepath.Join(pgdata, "postgresql.conf"), "\n# pginit\nlisten_addresses = '*'\n"); err != nil {
		return err
	}
	if s.db != "postgres" {
		// Single-user mode: no server, no socket; one statement per line.
		stmt := `CREATE DATABASE "` + strings.ReplaceAll(s.db, `"`, `""`) + `"` + "\n"
		if err := runCmd([]string{"postgres", "--single", "-D", pgdata, "postgres"}, stmt); err != nil {
			return fmt.Errorf("create database %s: %w", s.db, err)
		}
	}
	fmt.Fprintln(os.Stderr, "pginit: cluster ready")
	return nil
}

// runCmd runs args with stdin, its output on our stderr.
func runCmd(args []string, stdin string) error {
	c := exec.Command(args[0], args[1:]...)
	c.Stdin = strings.NewReader(stdin)
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// execPath replaces this process with args[0], looked up in PATH.
func execPath(args []string) error {
	path, err := exec.LookPath(args[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, args, os.Environ())
}
