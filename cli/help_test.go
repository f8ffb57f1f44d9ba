package cli

import (
	"bytes"
	"context"
	"sort"
	"strings"
	"testing"
)

// subcommands lists, for each command that has them, its subcommands, so
// that the help test reaches every one. A command added to commands is
// checked on its own; one with subcommands must be listed here too.
var subcommands = map[string][]string{
	"ledger":        {"keys", "checkpoint", "receipt", "export", "proof", "verify"},
	"ledger verify": {"receipt", "export", "consistency", "agree"},
	"tasks":         {"submit", "get", "list", "cancel"},
	"policy":        {"check", "lint", "diff", "push", "promote", "canary", "rollback", "history", "envs"},
	"policy canary": {"set", "promote", "abort", "status"},
	"keys":          {"create", "list", "revoke"},
	"tenants":       {"list"},
	"incident":      {"open", "list", "report", "step", "close"},
	"runbook":       {"status", "blast-radius", "restore"},
	"drill":         {"timeout", "egress"},
}

// TestEveryCommandAnswersHelp runs every command and subcommand with -h and
// --help: each prints a usage line and exits 0, and none of them does its
// work (no node is started, no request is sent: LEASH_URL points nowhere).
func TestEveryCommandAnswersHelp(t *testing.T) {
	var paths [][]string
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if n == "version" {
			continue
		}
		paths = append(paths, []string{n})
	}
	for parent, subs := range subcommands {
		for _, s := range subs {
			paths = append(paths, append(strings.Fields(parent), s))
		}
	}
	for _, p := range paths {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string{}, p...), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var out, errOut bytes.Buffer
				env := &Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
					if k == "LEASH_URL" {
						return "http://127.0.0.1:1"
					}
					return ""
				}}
				code := Main(context.Background(), args, env)
				if code != 0 {
					t.Fatalf("exit %d, want 0; stderr: %s", code, errOut.String())
				}
				if !strings.Contains(out.String()+errOut.String(), "usage: leash") {
					t.Fatalf("no usage printed; stdout %q stderr %q", out.String(), errOut.String())
				}
			})
		}
	}
}

// TestBareCommandWithSubcommandsIsUsageError keeps `leash ledger` and
// friends, with nothing after them, an error (exit 2) that shows usage.
func TestBareCommandWithSubcommandsIsUsageError(t *testing.T) {
	for _, args := range [][]string{{"ledger"}, {"ledger", "verify"}, {"tasks"}} {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), args, &Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
		if code != 2 || !strings.Contains(errOut.String(), "usage: leash") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and usage", args, code, errOut.String())
		}
	}
}

// TestServeRefusesAVerifyShareOutOfRange: --blast-verify-share is a share
// of one core; anything outside [0, 1] is refused (exit 2) before the
// node starts.
func TestServeRefusesAVerifyShareOutOfRange(t *testing.T) {
	for _, v := range []string{"-0.5", "2"} {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), []string{"serve", "--data", t.TempDir(), "--blast-verify-share", v}, &Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
		if code != 2 || !strings.Contains(errOut.String(), "--blast-verify-share is between 0 and 1") {
			t.Errorf("--blast-verify-share %s: exit %d, stderr %q", v, code, errOut.String())
		}
	}
}
