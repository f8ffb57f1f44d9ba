package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/leash-dev/leash/mcp"
)

func init() {
	commands["mcp"] = command{"serve the Model Context Protocol over stdio, with the tools calling the node at LEASH_URL as LEASH_KEY", runMCP}
}

// runMCP serves MCP over stdin and stdout (docs/mcp.md). Every tool call
// runs with the credential from the environment: LEASH_KEY (a tenant key,
// the usual case), else LEASH_TOKEN, else ./leash-data/admin.token. Logs
// go to stderr: stdout carries the protocol.
func runMCP(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "mcp", "mcp [--log-level LEVEL]  (env: LEASH_URL, LEASH_KEY or LEASH_TOKEN)")
	level := fs.String("log-level", "warn", "log level on stderr: debug, info, warn, error")
	if _, err := parseN(fs, args, 0); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return &exitError{code: 2, msg: "--log-level: " + err.Error()}
	}
	c := newClient(env)
	tok := strings.TrimSpace(env.Getenv("LEASH_KEY"))
	if tok == "" {
		tok = c.token
	}
	if tok == "" {
		return errors.New("no credential: set LEASH_KEY to a tenant key (or LEASH_TOKEN)")
	}
	srv, err := mcp.New(mcp.Options{
		API:     http.DefaultTransport,
		BaseURL: c.base,
		Logger:  slog.New(slog.NewJSONHandler(env.Stderr, &slog.HandlerOptions{Level: lv})),
		Version: Version,
		Token:   tok,
	})
	if err != nil {
		return err
	}
	in := io.NopCloser(env.Stdin)
	if f, ok := env.Stdin.(*os.File); ok {
		in = f
	}
	err = srv.ServeStdio(ctx, in, nopWriteCloser{env.Stdout})
	if errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
