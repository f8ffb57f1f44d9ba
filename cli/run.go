package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/leash-dev/leash/api"
)

// runRun builds or reads a module, leases, submits it as a task and prints
// the response body (or the whole result with --json). The exit status is
// 0 only when the outcome is ok.
func runRun(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "run", "run PATH [--intent I] [--tenant T] [--method M] [--path /p?q] [-H 'K: V'] [--data @file|text] [--env K=V] [--json]")
	tenant := fs.String("tenant", "demo", "tenant")
	intent := fs.String("intent", "read_docs", "task intent")
	method := fs.String("method", "GET", "request method")
	path := fs.String("path", "/", "request path and query")
	data := fs.String("data", "", "request body: text, or @file")
	asJSON := fs.Bool("json", false, "print the whole result as JSON")
	var headers, envs multi
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable)")
	fs.Var(&envs, "env", "task variable K=V (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return &exitError{code: 2}
	}
	mod, err := loadModule(ctx, env, pos[0])
	if err != nil {
		return err
	}
	req := api.TaskRequest{Module: mod, Request: api.TaskHTTPRequest{Method: strings.ToUpper(*method), URL: "https://task.leash.local" + ensureSlash(*path), Headers: map[string]string{}}}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return &exitError{code: 2, msg: fmt.Sprintf("-H %q: want 'Name: value'", h)}
		}
		req.Request.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if len(envs) > 0 {
		req.Env = map[string]string{}
		for _, kv := range envs {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return &exitError{code: 2, msg: fmt.Sprintf("--env %q: want K=V", kv)}
			}
			req.Env[k] = v
		}
	}
	if *data != "" {
		body := []byte(*data)
		if strings.HasPrefix(*data, "@") {
			if body, err = os.ReadFile((*data)[1:]); err != nil {
				return err
			}
		}
		req.Request.Body = api.MakeBody(body)
	}
	c := newClient(env)
	l, err := c.lease(ctx, api.LeaseRequest{Tenant: *tenant, Intent: *intent})
	if err != nil {
		return err
	}
	var res api.TaskResult
	if err := c.json(ctx, http.MethodPost, "/v1/tasks", l.Token, req, &res); err != nil {
		return err
	}
	if *asJSON {
		if err := printJSON(env, res); err != nil {
			return err
		}
	} else if res.Response != nil {
		body, _ := res.Response.Bytes()
		env.Stdout.Write(body)
	}
	if res.Outcome != "ok" {
		msg := "outcome " + res.Outcome
		if res.Error != "" {
			msg += ": " + res.Error
		}
		return &exitError{code: 1, msg: msg}
	}
	return nil
}

func ensureSlash(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "/" + p
	}
	return p
}

// loadModule reads a .wasm or .js file, or builds a Go package directory
// for GOOS=wasip1 GOARCH=wasm.
func loadModule(ctx context.Context, env *Env, path string) (api.Module, error) {
	st, err := os.Stat(path)
	if err != nil {
		return api.Module{}, err
	}
	if st.IsDir() {
		wasm, err := buildGo(ctx, env, path)
		if err != nil {
			return api.Module{}, err
		}
		s := base64.StdEncoding.EncodeToString(wasm)
		return api.Module{WASM: &s}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return api.Module{}, err
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".wasm":
		s := base64.StdEncoding.EncodeToString(b)
		return api.Module{WASM: &s}, nil
	case ".js", ".mjs":
		s := string(b)
		return api.Module{JS: &s}, nil
	}
	return api.Module{}, fmt.Errorf("%s: want a Go package directory, a .wasm or a .js file", path)
}

func buildGo(ctx context.Context, env *Env, dir string) ([]byte, error) {
	out, err := os.CreateTemp("", "leash-*.wasm")
	if err != nil {
		return nil, err
	}
	out.Close()
	defer os.Remove(out.Name())
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out.Name(), ".")
	cmd.Dir = abs
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	cmd.Stdout = env.Stderr
	cmd.Stderr = env.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build %s for wasip1/wasm: %w", dir, err)
	}
	return os.ReadFile(out.Name())
}
