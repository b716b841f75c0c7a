package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// Exit codes of status --check (Nagios convention).
const (
	checkOK       = 0
	checkWarning  = 1
	checkCritical = 2
	checkUnknown  = 3
)

const statusLong = `Show every queue's leader (node, host, pid, term, since, version), its
effective config and workers, each follower with its config conflicts, and the
problems found. Reads only the backend: works on any host with access to it,
and never trusts a local pid file.

The members list shows every live replica (node, host, pid, version, the HTTP
address it actually listens on, whether it is drained); every leader and
follower shows its config_generation, a short hash of the queue's effective
config, equal on replicas with equal configs (a rollout shows as generations
changing). Cluster-wide problems (a drained node) come before the queues.

--check exit codes (Nagios-style, one summary line per problem):
  0 OK        every queue has exactly one leader and no conflict
  1 WARNING   config conflicts, crash or RSS loops, wedged workers, stale writes
              refused by the fence, a drained node
  2 CRITICAL  a queue with no leader, two claimants, a live worker of an old term,
              a resource fenced by another deployment (foreign_owner)
  3 UNKNOWN   the backend is unreachable or the config is invalid`

func newStatusCmd() *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status [--queue Q] [--json] [--watch] [--check]",
		Short: "Show every queue's leader, term, config, followers and problems",
		Long:  statusLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd, o)
		},
	}
	config.RegisterFlags(cmd.Flags(), config.ScopeBackend)
	cmd.Flags().StringVar(&o.queue, "queue", "", "show only this queue")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print the JSON document (same as the /status endpoint)")
	cmd.Flags().BoolVar(&o.watch, "watch", false, "redraw whenever the backend records change")
	cmd.Flags().BoolVar(&o.check, "check", false, "doctor mode: one line per problem, exit 0 OK, 1 warning, 2 critical, 3 unknown")
	cmd.Flags().BoolVar(&o.history, "history", false, "show the last leadership changes per queue and the last operator actions")
	return cmd
}

// statusOptions are status's own flags.
type statusOptions struct {
	queue                         string
	asJSON, watch, check, history bool
}

// runStatus reads the backend and prints the status once, or on every
// change with --watch. With --check every failure is an UNKNOWN line and
// exit 3.
func runStatus(cmd *cobra.Command, o statusOptions) error {
	unknown := func(what string, err error) error {
		if !o.check {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "REGENT UNKNOWN - %s%s\n", what, config.RedactText(oneLine(err.Error())))
		return errSilent{checkUnknown}
	}
	cfg, err := loadConfig(cmd, nil, false)
	if err != nil {
		return unknown("", err)
	}
	log := newLogger(config.LogConfig{Level: "error", Format: cfg.Log.Format}, cmd.ErrOrStderr())
	opts := electionOptions(cfg, true)
	host, _ := os.Hostname()
	opts.Node = "status-" + host
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b, err := openBackend(ctx, cfg, opts, log)
	if err != nil {
		return unknown("backend unreachable: ", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = b.Close(cctx)
	}()
	render := func(w io.Writer) (*statusDoc, error) { return renderStatus(ctx, w, b, cfg, o) }
	if o.watch {
		return watchStatus(ctx, b, cmd.OutOrStdout(), render)
	}
	doc, err := render(cmd.OutOrStdout())
	if err != nil {
		return unknown("backend read failed: ", err)
	}
	if o.check {
		return errSilent{checkCode(doc)}
	}
	return nil
}

// renderStatus builds the status document and writes it to w in the form
// the flags ask for.
func renderStatus(ctx context.Context, w io.Writer, b election.Backend, cfg *config.Config, o statusOptions) (*statusDoc, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	doc, err := buildStatus(ctx, b, cfg.Cluster, o.queue)
	if err != nil {
		return nil, err
	}
	doc.Cluster = cfg.Cluster
	if o.history {
		if err := addHistory(ctx, b, doc); err != nil {
			return nil, err
		}
	}
	if cfg.Fence.PostgresURL != "" {
		addFence(ctx, b, cfg.Fence.PostgresURL, doc, time.Now())
	}
	switch {
	case o.check:
		writeCheck(w, doc)
	case o.asJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return doc, enc.Encode(doc)
	default:
		writeHuman(w, doc)
		writeActions(w, doc.Actions)
	}
	return doc, nil
}

func checkCode(doc *statusDoc) int {
	code := checkOK
	all := [][]diagnosis.Problem{doc.Problems}
	for _, q := range doc.Queues {
		all = append(all, q.Problems)
	}
	for _, ps := range all {
		for _, p := range ps {
			switch p.Severity {
			case sevCritical:
				code = checkCritical
			case sevWarning:
				if code < checkWarning {
					code = checkWarning
				}
			}
		}
	}
	return code
}

func writeCheck(w io.Writer, doc *statusDoc) {
	type line struct {
		rank int
		text string
	}
	rank := map[string]int{sevCritical: 0, sevWarning: 1}
	var lines []line
	add := func(scope, name string, p diagnosis.Problem) {
		r, ok := rank[p.Severity]
		if !ok {
			r = 2 // info
		}
		lines = append(lines, line{r, fmt.Sprintf("REGENT %s - %s %s: %s: %s", strings.ToUpper(p.Severity), scope, checkText(name), p.Code, checkText(p.Message))})
	}
	for _, p := range doc.Problems {
		add("cluster", doc.Cluster, p)
	}
	for _, q := range doc.Queues {
		for _, p := range q.Problems {
			add("queue", q.Queue, p)
		}
	}
	// The most severe first: a check plugin's first line is its summary.
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].rank < lines[j].rank })
	if checkCode(doc) == checkOK {
		fmt.Fprintf(w, "REGENT OK - cluster %s: %d queue(s), each with one leader and no conflict\n", checkText(doc.Cluster), len(doc.Queues))
	}
	for _, l := range lines {
		fmt.Fprintln(w, l.text)
	}
}

// checkText makes text read from the backend (queue and node names in a
// member's payload, record errors) safe for a --check line: control
// characters become spaces, so that no record can end the line early and
// forge another ("REGENT OK ...").
func checkText(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

func writeHuman(w io.Writer, doc *statusDoc) {
	fmt.Fprintf(w, "cluster %s\n", doc.Cluster)
	writeMembers(w, doc)
	if len(doc.Queues) == 0 {
		fmt.Fprintln(w, "\nno queue has a leader or a member")
	}
	for _, q := range doc.Queues {
		fmt.Fprintf(w, "\nqueue %s\n", q.Queue)
		writeQueueHead(w, q)
		if q.Leader != nil && len(q.Leader.Workers) > 0 {
			tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "  WORKER\tPID\tRSS\tRESTARTS\tSTATE")
			for _, wk := range q.Leader.Workers {
				fmt.Fprintf(tw, "  %d\t%d\t%s\t%d\t%s\n", wk.Index, wk.PID, humanBytes(wk.RSSBytes), wk.Restarts, wk.State)
			}
			tw.Flush()
		}
		if len(q.Followers) > 0 {
			tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "  FOLLOWER\tHOST\tLAST SEEN\tGENERATION\tCONFLICTS")
			for _, f := range q.Followers {
				conf := "none"
				if len(f.Conflicts) > 0 {
					conf = fmt.Sprintf("%d", len(f.Conflicts))
				}
				seen := "-"
				if !f.LastSeen.IsZero() {
					seen = time.Since(f.LastSeen).Round(time.Second).String() + " ago"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", f.Node, f.Host, seen, f.ConfigGeneration, conf)
			}
			tw.Flush()
			for _, f := range q.Followers {
				for _, c := range f.Conflicts {
					fmt.Fprintf(w, "    %s: %s: leader %s, this replica %s\n", f.Node, c.Field, c.Leader, c.Follower)
				}
			}
		}
		if len(q.History) > 0 {
			tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "  TERM\tNODE\tFROM\tTO\tENDED BY")
			for _, h := range q.History {
				to, why := "-", "(leading)"
				if !h.To.IsZero() {
					to = h.To.Local().Format("01-02 15:04:05.000")
				}
				if h.EndReason != "" {
					why = h.EndReason
				} else if q.Leader == nil || q.Leader.Term != h.Term {
					why = "?"
				}
				fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", h.Term, h.Node, h.From.Local().Format("01-02 15:04:05.000"), to, why)
			}
			tw.Flush()
		}
		if len(q.Problems) == 0 {
			fmt.Fprintln(w, "  problems: none")
		} else {
			fmt.Fprintln(w, "  problems:")
			for _, p := range q.Problems {
				fmt.Fprintf(w, "    %s %s: %s\n", strings.ToUpper(p.Severity), p.Code, p.Message)
			}
		}
	}
}

// writeMembers writes the live members and the cluster-wide problems.
func writeMembers(w io.Writer, doc *statusDoc) {
	if len(doc.Members) > 0 {
		tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "\nMEMBER\tHOST\tPID\tVERSION\tHTTP\tDRAINED\tLAST SEEN")
		for _, m := range doc.Members {
			addr, drained, seen := m.HTTPAddr, "no", "-"
			if addr == "" {
				addr = "-"
			}
			if m.Drained {
				drained = "yes"
			}
			if !m.LastSeen.IsZero() {
				seen = time.Since(m.LastSeen).Round(time.Second).String() + " ago"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", m.Node, m.Host, m.PID, m.Version, addr, drained, seen)
		}
		tw.Flush()
	}
	for _, p := range doc.Problems {
		fmt.Fprintf(w, "%s %s: %s\n", strings.ToUpper(p.Severity), p.Code, p.Message)
	}
}

// writeActions prints the operator log of status --history.
func writeActions(w io.Writer, actions []election.Action) {
	if len(actions) == 0 {
		return
	}
	fmt.Fprintln(w, "\noperator actions")
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "  AT\tACTION\tTARGET\tBY\tREASON")
	for _, a := range actions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", a.At.Local().Format("01-02 15:04:05"), a.Action, a.Target, a.By, a.Reason)
	}
	tw.Flush()
}

// writeQueueHead prints a queue's leader, config, pause and fence.
func writeQueueHead(w io.Writer, q queueStatus) {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	if l := q.Leader; l != nil {
		fmt.Fprintf(tw, "  leader\t%s (host %s, pid %d)\n", l.Node, l.Host, l.PID)
		fmt.Fprintf(tw, "  term\t%d, since %s (%s ago), version %s\n", l.Term, l.Since.Local().Format("2006-01-02 15:04:05"), time.Since(l.Since).Round(time.Second), l.Version)
		if c := l.Config; c != nil {
			fmt.Fprintf(tw, "  command\t%s\n", strings.Join(c.Command, " "))
			fmt.Fprintf(tw, "  generation\t%s\n", l.ConfigGeneration)
			fmt.Fprintf(tw, "  config\tconcurrency=%d max_rss_mb=%d lease_ttl=%s stop_timeout=%s\n", c.Concurrency, c.MaxRSSMB, c.LeaseTTL, c.StopTimeout)
		}
	} else {
		fmt.Fprintf(tw, "  leader\tnone\n")
	}
	if p := q.Paused; p != nil {
		why := ""
		if p.Reason != "" {
			why = ": " + p.Reason
		}
		fmt.Fprintf(tw, "  paused\tsince %s by %s%s (no worker runs; 'regent resume' to undo)\n", p.Since.Local().Format("2006-01-02 15:04:05"), p.By, why)
	}
	if f := q.Fence; f != nil {
		fmt.Fprintf(tw, "  fence\tkey %s, term %d (since %s), owner %s\n", f.Key, f.Term, f.At.Local().Format("2006-01-02 15:04:05"), f.Owner)
	}
	tw.Flush()
}

func humanBytes(b uint64) string {
	switch {
	case b == 0:
		return "-"
	case b >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(b)/(1<<30))
	default:
		return fmt.Sprintf("%.0fM", float64(b)/(1<<20))
	}
}

// watchStatus redraws the status whenever the backend reports a change.
func watchStatus(ctx context.Context, b election.Backend, out io.Writer, render func(io.Writer) (*statusDoc, error)) error {
	changes := b.Changes(ctx)
	isTTY := false
	if f, ok := out.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			isTTY = true
		}
	}
	var last string
	for {
		var buf strings.Builder
		if _, err := render(&buf); err != nil {
			fmt.Fprintf(out, "status read failed: %s\n", config.RedactText(oneLine(err.Error())))
		} else if buf.String() != last {
			last = buf.String()
			if isTTY {
				fmt.Fprint(out, "\033[H\033[2J")
			} else {
				fmt.Fprintf(out, "--- %s\n", time.Now().Format(time.RFC3339))
			}
			fmt.Fprint(out, last)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-b.Done():
			return fmt.Errorf("backend connection closed")
		case _, ok := <-changes:
			if !ok {
				return nil
			}
		case <-time.After(5 * time.Second):
			// "ago" columns age; redraw on a slow tick too.
		}
	}
}
