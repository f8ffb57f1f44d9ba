// Package cli is leash's command line: `leash serve` starts a node; the
// other commands talk to a node's API at LEASH_URL with LEASH_TOKEN.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Version is set at build time.
var Version = "dev"

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

// Env is what a command sees of the world; tests replace it.
type Env struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	Getenv         func(string) string
}

var commands = map[string]command{
	"serve":    {"start a node (a one-node cluster unless --join)", runServe},
	"run":      {"run a module (Go package dir, .wasm or .js) under a new lease and print the response", runRun},
	"events":   {"events [filters] [--follow] [--cluster]: query or follow the event history", runEvents},
	"lease":    {"issue a lease and print its token", runLease},
	"revoke":   {"revoke LEASE_ID | revoke --tenant/--profile/--session/--digest: revoke a lease, or every live lease a selector matches, on every node", runRevokeAny},
	"freeze":   {"freeze PROFILE [--revoke-live]: no new leases for a profile on any node (the runbook)", runFreeze},
	"unfreeze": {"unfreeze PROFILE: thaw a frozen profile", runUnfreeze},
	"block":    {"block DEST...: add hosts, *.wildcards, IPs or CIDRs to the global deny list at run time", runBlock},
	"unblock":  {"unblock DEST...: remove run-time blocks", runUnblock},
	"incident": {"incident open|list|report|step|close: incidents, their steps and timeline", runIncident},
	"runbook":  {"runbook status|blast-radius|restore: what is frozen and blocked; what the receipts touched; a patch restored through prod's canary", runRunbook},
	"drill":    {"drill timeout|egress: chaos drills of the sandbox's limits and egress refusals, with a pass/fail report", runDrill},
	"members":  {"list the cluster's members: state, suffrage, leader, applied index, load", runMembers},
	"policy":   {"policy check|lint|diff|push|promote|canary|rollback|history|envs: bundles and their lifecycle (dev → stage → prod)", runPolicy},
	"tasks":    {"tasks submit PATH | get ID | list | cancel ID: bulk tasks in the replicated queue", runTasks},
	"keys":     {"keys create --role R [--tenant T] | list | revoke ID: API keys (shown once, revocable everywhere)", runKeys},
	"tenants":  {"tenants list: the active bundle's tenants, their quotas and how many API keys each holds", runTenants},
	"usage":    {"usage [--tenant T] [--from D] [--to D] [--group-by G]: usage and cost per tenant, profile and day; usage budget TENANT | budget set|raise|reset TENANT: envelopes", runUsage},
	"ledger":   {"ledger keys|checkpoint|receipt N|export|proof; ledger verify receipt|export|consistency|agree (offline)", runLedger},
	"report":   {"report --from D --to D [--out report.html] [--pdf F]: the sandbox risk and cost report of a window of days, as self-contained HTML", runReport},
	"recover":  {"recover --data DIR: make a stopped node's data dir a one-voter cluster (disaster recovery)", runRecover},
	"version":  {"print the version", func(_ context.Context, env *Env, _ []string) error { fmt.Fprintln(env.Stdout, Version); return nil }},
}

// exitError carries an exit status other than 1.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// Main runs the command line and returns the process exit status.
func Main(ctx context.Context, args []string, env *Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if env.Stdin == nil {
		env.Stdin = os.Stdin
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.Stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "leash: unknown command %q\n\n", args[0])
		usage(env.Stderr)
		return 2
	}
	err := cmd.run(ctx, env, args[1:])
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(env.Stderr, "leash:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(env.Stderr, "leash:", err)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: leash <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nThe client commands use LEASH_URL (default http://127.0.0.1:8080) and\nLEASH_TOKEN (default: the contents of ./leash-data/admin.token).")
}

// flags makes a FlagSet that reports errors instead of exiting.
func flags(env *Env, name, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: leash %s\n", usageLine)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, allowing them before and after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &exitError{code: 2}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseN parses flags and wants exactly n positional arguments.
func parseN(fs *flag.FlagSet, args []string, n int) ([]string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != n {
		fs.Usage()
		return nil, &exitError{code: 2}
	}
	return pos, nil
}

// helpArgs are the arguments that ask a command for its usage.
var helpArgs = map[string]bool{"-h": true, "-help": true, "--help": true, "help": true}

// subUsage answers a command with subcommands: with no arguments it prints
// usage and exits 2; asked for help (leash CMD --help, or leash CMD SUB
// --help for a SUB without flags of its own) it prints usage and exits 0.
// It reports whether the caller should stop.
func subUsage(env *Env, args []string, usageLine string) (bool, error) {
	switch {
	case len(args) == 0:
		fmt.Fprintln(env.Stderr, "usage: leash "+usageLine)
		return true, &exitError{code: 2}
	case helpArgs[args[0]] || (len(args) > 1 && helpArgs[args[1]]):
		fmt.Fprintln(env.Stderr, "usage: leash "+usageLine)
		return true, flag.ErrHelp
	}
	return false, nil
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ", ") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }
