package cli

import (
	"context"
	"encoding/base64"
	"flag"
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
// taskFlags are the flags that shape a task's request, shared by
// leash run and leash tasks submit.
type taskFlags struct {
	method, path, data *string
	headers, envs      multi
}

func addTaskFlags(fs *flag.FlagSet) *taskFlags {
	tf := &taskFlags{
		method: fs.String("method", "GET", "request method"),
		path:   fs.String("path", "/", "request path and query"),
		data:   fs.String("data", "", "request body: text, or @file"),
	}
	fs.Var(&tf.headers, "H", "request header 'Name: value' (repeatable)")
	fs.Var(&tf.envs, "env", "task variable K=V (repeatable)")
	return tf
}

// request loads the module at path and builds the task request.
func (tf *taskFlags) request(ctx context.Context, env *Env, path string) (api.TaskRequest, error) {
	mod, err := loadModule(ctx, env, path)
	if err != nil {
		return api.TaskRequest{}, err
	}
	req := api.TaskRequest{Module: mod, Request: api.TaskHTTPRequest{Method: strings.ToUpper(*tf.method), URL: "https://task.leash.local" + ensureSlash(*tf.path), Headers: map[string]string{}}}
	for _, h := range tf.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return req, &exitError{code: 2, msg: fmt.Sprintf("-H %q: want 'Name: value'", h)}
		}
		req.Request.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	for _, kv := range tf.envs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return req, &exitError{code: 2, msg: fmt.Sprintf("--env %q: want K=V", kv)}
		}
		if req.Env == nil {
			req.Env = api.Env{}
		}
		req.Env[k] = api.EnvVar{Text: v}
	}
	if *tf.data != "" {
		body := []byte(*tf.data)
		if strings.HasPrefix(*tf.data, "@") {
			if body, err = os.ReadFile((*tf.data)[1:]); err != nil {
				return req, err
			}
		}
		req.Request.Body = api.MakeBody(body)
	}
	return req, nil
}

// runRun builds or reads a module, leases, submits it as a task and prints
// the response body (or the whole result with --json). The exit status is
// 0 only when the outcome is ok.
func runRun(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "run", "run PATH [--intent I] [--tenant T] [--method M] [--path /p?q] [-H 'K: V'] [--data @file|text] [--env K=V] [--json]")
	tenant := fs.String("tenant", "demo", "tenant")
	intent := fs.String("intent", "read_docs", "task intent")
	asJSON := fs.Bool("json", false, "print the whole result as JSON")
	tf := addTaskFlags(fs)
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	req, err := tf.request(ctx, env, pos[0])
	if err != nil {
		return err
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
