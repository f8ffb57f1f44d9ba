package difftest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/leash-dev/leash/sandbox"
)

// enginePath is the engine `make engine` built; LEASH_TEST_ENGINE names
// another build (an engine being worked on).
var enginePath = func() string {
	if p := os.Getenv("LEASH_TEST_ENGINE"); p != "" {
		return p
	}
	return "../build/engine/engine.wasm"
}()

var (
	update      = flag.Bool("update", false, "record golden/*.json from a live workerd (needs -workerd)")
	workerdFlag = flag.String("workerd", os.Getenv("LEASH_WORKERD"), "path of a workerd binary to compare with live (npm @cloudflare/workerd-linux-64)")
)

const (
	// host is the request URL's authority in both runtimes.
	host = "difftest.example"
	// compatibilityDate is workerd's; docs/javascript.md names it.
	compatibilityDate = "2025-09-01"
)

// env is the Workers env of every case (text bindings in workerd).
var env = map[string]string{"GREETING": "hello", "COUNT": "3"}

// request is one request a case sends, from a "// request: {...}" line.
type request struct {
	Method     string            `json:"method"`
	Path       string            `json:"path"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       string            `json:"body,omitempty"`
	BodyBase64 string            `json:"body_base64,omitempty"`
	// Known names a known difference (docs/javascript.md): only the
	// status is compared.
	Known string `json:"known,omitempty"`
}

func (r request) body() []byte {
	if r.BodyBase64 != "" {
		b, _ := base64.StdEncoding.DecodeString(r.BodyBase64)
		return b
	}
	return []byte(r.Body)
}

// response is what is compared.
type response struct {
	Request    request     `json:"request"`
	Status     int         `json:"status"`
	Headers    [][2]string `json:"headers"`
	Body       string      `json:"body,omitempty"`
	BodyBase64 string      `json:"body_base64,omitempty"`
}

type testCase struct {
	name     string
	path     string
	source   []byte
	requests []request
}

func loadCases(t *testing.T) []testCase {
	t.Helper()
	files, err := filepath.Glob("cases/*.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	var out []testCase
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c := testCase{name: strings.TrimSuffix(filepath.Base(f), ".js"), path: f, source: src}
		sc := bufio.NewScanner(bytes.NewReader(src))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if rest, ok := strings.CutPrefix(line, "// request:"); ok {
				var r request
				if err := json.Unmarshal([]byte(rest), &r); err != nil {
					t.Fatalf("%s: bad request line %q: %v", f, line, err)
				}
				if r.Method == "" {
					r.Method = "GET"
				}
				c.requests = append(c.requests, r)
			}
		}
		if len(c.requests) == 0 {
			t.Fatalf("%s has no // request: lines", f)
		}
		out = append(out, c)
	}
	return out
}

// dropped headers are the HTTP layer's, not the worker's.
var dropped = map[string]bool{"content-length": true, "date": true, "connection": true, "transfer-encoding": true, "keep-alive": true, "server": true}

func makeResponse(req request, status int, h http.Header, body []byte) response {
	r := response{Request: req, Status: status, Headers: [][2]string{}}
	for k, vs := range h {
		lk := strings.ToLower(k)
		if dropped[lk] {
			continue
		}
		for _, v := range vs {
			r.Headers = append(r.Headers, [2]string{lk, v})
		}
	}
	sort.Slice(r.Headers, func(i, j int) bool {
		if r.Headers[i][0] != r.Headers[j][0] {
			return r.Headers[i][0] < r.Headers[j][0]
		}
		return r.Headers[i][1] < r.Headers[j][1]
	})
	if utf8.Valid(body) {
		r.Body = string(body)
	} else {
		r.BodyBase64 = base64.StdEncoding.EncodeToString(body)
	}
	return r
}

// runLeash runs a request in leash's sandbox. A failed task is shown as
// workerd shows one: 500 "Internal Server Error".
func runLeash(t *testing.T, rt *sandbox.Runtime, m *sandbox.Module, req request) response {
	t.Helper()
	h := http.Header{}
	for k, v := range req.Headers {
		h.Set(k, v)
	}
	h.Set("Host", host)
	path, _, _ := strings.Cut(req.Path, "#") // HTTP carries no fragment
	res := rt.Run(context.Background(), &sandbox.Task{
		ID:      "difftest",
		Module:  m,
		Request: sandbox.Request{Method: req.Method, URL: "http://" + host + path, Headers: h, Body: req.body()},
		Env:     env,
		Limits: sandbox.Limits{CPU: 2 * time.Second, Wall: 2 * time.Second, MemoryBytes: 128 << 20,
			OutputBytes: 8 << 20, LogBytes: 64 << 10, Subrequests: 10},
	})
	if res.Outcome != sandbox.OutcomeOK {
		t.Logf("%s %s: leash outcome %s: %s", req.Method, req.Path, res.Outcome, res.Error)
		return makeResponse(req, 500, nil, []byte("Internal Server Error"))
	}
	return makeResponse(req, res.Response.Status, res.Response.Headers, res.Response.Body)
}

func TestDifferential(t *testing.T) {
	if _, err := os.Stat(enginePath); err != nil {
		t.Fatalf("the JS engine is missing (%v): run `make engine`", err)
	}
	cases := loadCases(t)
	ctx := context.Background()
	rt, err := sandbox.New(ctx, sandbox.Config{EnginePath: enginePath})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	if err := rt.JSError(); err != nil {
		t.Fatal(err)
	}
	var live *workerd
	if *workerdFlag != "" {
		live = startWorkerd(t, *workerdFlag, cases)
	} else if *update {
		t.Fatal("-update needs -workerd PATH (or LEASH_WORKERD)")
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := rt.Compile(ctx, sandbox.KindJS, c.source)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			goldenPath := filepath.Join("golden", c.name+".json")
			var want []response
			if live != nil {
				for _, r := range c.requests {
					want = append(want, live.do(t, c.name, r))
				}
				if *update {
					b, _ := json.MarshalIndent(want, "", "  ")
					if err := os.WriteFile(goldenPath, append(b, '\n'), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				b, err := os.ReadFile(goldenPath)
				if err != nil {
					t.Fatalf("no golden file (%v): record it with -update -workerd PATH", err)
				}
				if err := json.Unmarshal(b, &want); err != nil {
					t.Fatal(err)
				}
				if len(want) != len(c.requests) {
					t.Fatalf("%s has %d responses for %d requests: record it again with -update", goldenPath, len(want), len(c.requests))
				}
			}
			for i, r := range c.requests {
				got := runLeash(t, rt, m, r)
				w := want[i]
				if r.Known != "" {
					if got.Status != w.Status {
						t.Errorf("%s %s: status %d, workerd %d (known difference: %s)", r.Method, r.Path, got.Status, w.Status, r.Known)
					}
					if testing.Verbose() && got.Body != w.Body {
						t.Logf("%s %s, a known difference (%s):\nleash:   %s\nworkerd: %s", r.Method, r.Path, r.Known, got.Body, w.Body)
					}
					continue
				}
				if got.Status != w.Status || fmt.Sprint(got.Headers) != fmt.Sprint(w.Headers) || got.Body != w.Body || got.BodyBase64 != w.BodyBase64 {
					gb, _ := json.MarshalIndent(got, "", "  ")
					wb, _ := json.MarshalIndent(w, "", "  ")
					t.Errorf("%s %s differs\nleash:   %s\nworkerd: %s", r.Method, r.Path, gb, wb)
				}
			}
		})
	}
}

// workerd is a live workerd serving every case on its own port.
type workerd struct {
	ports  map[string]int
	client *http.Client
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startWorkerd(t *testing.T, bin string, cases []testCase) *workerd {
	t.Helper()
	dir := t.TempDir()
	w := &workerd{ports: map[string]int{}, client: &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	var services, sockets []string
	var bindings []string
	for k, v := range env {
		bindings = append(bindings, fmt.Sprintf("(name = %q, text = %q)", k, v))
	}
	sort.Strings(bindings)
	for _, c := range cases {
		// embed paths are relative to the config file
		if err := os.WriteFile(filepath.Join(dir, c.name+".js"), c.source, 0o644); err != nil {
			t.Fatal(err)
		}
		port := freePort(t)
		w.ports[c.name] = port
		services = append(services, fmt.Sprintf("(name = %q, worker = (modules = [(name = \"worker.js\", esModule = embed %q)], compatibilityDate = %q, bindings = [%s]))",
			c.name, c.name+".js", compatibilityDate, strings.Join(bindings, ", ")))
		sockets = append(sockets, fmt.Sprintf("(name = %q, address = \"127.0.0.1:%d\", http = (), service = %q)", c.name, port, c.name))
	}
	conf := fmt.Sprintf("using Workerd = import \"/workerd/workerd.capnp\";\nconst config :Workerd.Config = (\n  services = [\n    %s\n  ],\n  sockets = [\n    %s\n  ],\n);\n",
		strings.Join(services, ",\n    "), strings.Join(sockets, ",\n    "))
	confPath := filepath.Join(dir, "config.capnp")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", confPath)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start workerd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("workerd output:\n%s", logs.String())
		}
	})
	// wait for every socket
	deadline := time.Now().Add(20 * time.Second)
	for _, port := range w.ports {
		for {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				t.Fatalf("workerd exited:\n%s", logs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("workerd did not listen on %d:\n%s", port, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return w
}

func (w *workerd) do(t *testing.T, name string, r request) response {
	t.Helper()
	req, err := http.NewRequest(r.Method, fmt.Sprintf("http://127.0.0.1:%d%s", w.ports[name], r.Path), bytes.NewReader(r.body()))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("User-Agent", "")
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		t.Fatalf("workerd %s %s: %v", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return makeResponse(r, resp.StatusCode, resp.Header, body)
}
