//go:build conformance

package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/sandbox"
)

var (
	wptDir     = flagString("wpt", "LEASH_WPT", "a web-platform-tests checkout")
	workerdBin = flagString("workerd", "LEASH_WORKERD", "a workerd binary (npm @cloudflare/workerd-linux-64) to run the same files in")
	onlyWPT    = flag.String("wpt-only", "", "run only the files whose path has this prefix")
)

// wptAreas are the areas measured, by path prefix, in order.
var wptAreas = []struct{ name, prefix string }{
	{"URL", "url/"},
	{"Encoding", "encoding/"},
	{"Headers", "fetch/api/headers/"},
	{"Request", "fetch/api/request/"},
	{"Response", "fetch/api/response/"},
	{"Body", "fetch/api/body/"},
	{"Events", "dom/events/"},
	{"Abort", "dom/abort/"},
	{"atob/btoa", "html/webappapis/atob/"},
	{"structuredClone", "html/webappapis/structured-clone/"},
	{"WebCrypto digest", "WebCryptoAPI/digest/"},
}

const wptHost = "wpt.test"

// wptWorker wraps a .any.js file, its META scripts and testharness.js in
// a Workers module: the harness runs in the handler (timers and fetch
// belong to a request), its results come back as JSON. Relative fetches
// resolve against the file's directory on http://wpt.test/.
func wptWorker(root, rel string) (string, error) {
	src, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return "", err
	}
	harness, err := os.ReadFile(filepath.Join(root, "resources", "testharness.js"))
	if err != nil {
		return "", err
	}
	dir := path.Dir(rel)
	var scripts []string
	for _, line := range strings.Split(string(src), "\n") {
		if !strings.HasPrefix(line, "//") {
			if strings.TrimSpace(line) != "" {
				break
			}
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(strings.TrimPrefix(line, "//")), "META: script="); ok {
			p := strings.TrimSpace(v)
			if !strings.HasPrefix(p, "/") {
				p = path.Join("/", dir, p)
			}
			b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
			if err != nil {
				scripts = append(scripts, fmt.Sprintf("throw new Error(%q);", "META script missing: "+p))
				continue
			}
			scripts = append(scripts, string(b))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "const __wptBase = %q, __wptURL = %q;\n", "http://"+wptHost+"/"+dir+"/", "http://"+wptHost+"/"+rel)
	b.WriteString(`export default { async fetch() {
  const __results = [];
  const __realFetch = globalThis.fetch;
  globalThis.fetch = function (input, init) {
    if (typeof input === "string") input = new URL(input, __wptBase).href;
    return __realFetch(input, init);
  };
  let __finish, __loadError = null;
  const __done = new Promise((r) => { __finish = r; });
  try {
    (function () {
      // testharness.js takes a runtime that names a worker scope for a
      // worker and waits for its events; both runtimes run it as a shell
      // a worker's location is its script's URL (WorkerLocation); the
      // file sees one in its scope, not on the global object
      const location = new URL(__wptURL);
      const self = new Proxy(globalThis, {
        has: (t, k) => !["WorkerGlobalScope", "ServiceWorkerGlobalScope", "DedicatedWorkerGlobalScope", "SharedWorkerGlobalScope", "document"].includes(k) && k in t,
      });
`)
	b.Write(harness)
	b.WriteString(`
      add_result_callback((t) => { __results.push({ name: t.name, status: t.status, message: t.message == null ? null : String(t.message).slice(0, 300) }); });
      add_completion_callback((tests, status) => { __finish(__loadError === null ? { status: status.status, message: status.message } : { status: 1, message: __loadError }); });
`)
	for _, s := range scripts {
		b.WriteString(s)
		b.WriteString("\n;\n")
	}
	b.Write(src)
	b.WriteString(`
    })();
  } catch (e) {
    // as testharness.js's error handler in a window or a worker: the
    // harness status is ERROR and done() lets the tests registered
    // before the throw finish
    __loadError = "load: " + String(e);
    try { globalThis.done(); } catch (_) { __finish({ status: 1, message: __loadError }); }
  }
  const harness = await Promise.race([__done, new Promise((r) => setTimeout(() => r({ status: 2, message: "harness timeout" }), 8000))]);
  return new Response(JSON.stringify({ harness, results: __results }));
} };
`)
	return b.String(), nil
}

type wptResult struct {
	Harness struct {
		Status  int     `json:"status"`
		Message *string `json:"message"`
	} `json:"harness"`
	Results []struct {
		Name    string  `json:"name"`
		Status  int     `json:"status"`
		Message *string `json:"message"`
	} `json:"results"`
	Error string `json:"error,omitempty"`
}

func (r wptResult) passed() map[string]bool {
	out := map[string]bool{}
	for _, x := range r.Results {
		if x.Status == 0 {
			out[x.Name] = true
		} else if !out[x.Name] {
			out[x.Name] = false
		}
	}
	return out
}

// wptFiles lists the .any.js files of the areas (idlharness files need the
// IDL files and a WebIDL parser; they are left out).
func wptFiles(t *testing.T, root string) []string {
	var files []string
	for _, a := range wptAreas {
		err := filepath.WalkDir(filepath.Join(root, filepath.FromSlash(a.prefix)), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(p, ".any.js") && !strings.HasSuffix(p, "idlharness.any.js") {
				rel, _ := filepath.Rel(root, p)
				if strings.HasPrefix(filepath.ToSlash(rel), *onlyWPT) {
					files = append(files, filepath.ToSlash(rel))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// wptFetcher serves the checkout's files for leash's fetches to wpt.test.
type wptFetcher struct{ root string }

func (f wptFetcher) Fetch(_ context.Context, req *sandbox.FetchRequest) (*sandbox.FetchResponse, error) {
	rest, ok := strings.CutPrefix(req.URL, "http://"+wptHost+"/")
	if !ok {
		return nil, &sandbox.FetchError{Clause: "profile.default_deny", Message: req.URL}
	}
	rest, _, _ = strings.Cut(rest, "?")
	p := filepath.Join(f.root, filepath.FromSlash(path.Clean("/"+rest)))
	b, err := os.ReadFile(p)
	if err != nil {
		return &sandbox.FetchResponse{Status: 404, Headers: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("not found"), URL: req.URL}, nil
	}
	ct := "text/plain"
	switch path.Ext(p) {
	case ".json":
		ct = "application/json"
	case ".js":
		ct = "text/javascript"
	}
	return &sandbox.FetchResponse{Status: 200, Headers: http.Header{"Content-Type": {ct}}, Body: b, URL: req.URL}, nil
}

func TestWPT(t *testing.T) {
	if *wptDir == "" {
		t.Skip("set -wpt DIR (or LEASH_WPT) to a web-platform-tests checkout")
	}
	root := *wptDir
	files := wptFiles(t, root)
	sources := map[string]string{}
	for _, f := range files {
		s, err := wptWorker(root, f)
		if err != nil {
			t.Fatal(err)
		}
		sources[f] = s
	}
	rt := newRuntime(t)
	leash := map[string]wptResult{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for _, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := runWPTLeash(rt, root, sources[f])
			mu.Lock()
			leash[f] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	var wd map[string]wptResult
	if *workerdBin != "" {
		wd = runWPTWorkerd(t, *workerdBin, root, files, sources)
	}
	summarizeWPT(t, files, leash, wd)
}

func runWPTLeash(rt *sandbox.Runtime, root, src string) wptResult {
	ctx := context.Background()
	var r wptResult
	m, err := rt.Compile(ctx, sandbox.KindJS, []byte(src))
	if err != nil {
		r.Error = "compile: " + err.Error()
		return r
	}
	res := rt.Run(ctx, &sandbox.Task{ID: "wpt", Module: m, Request: sandbox.Request{Method: "GET", URL: "http://" + wptHost + "/"},
		Host:   sandbox.Host{Fetch: wptFetcher{root}},
		Limits: sandbox.Limits{CPU: 20 * time.Second, Wall: 30 * time.Second, MemoryBytes: 256 << 20, OutputBytes: 8 << 20, LogBytes: 1 << 20, Subrequests: 50}})
	if res.Outcome != sandbox.OutcomeOK {
		r.Error = string(res.Outcome) + ": " + cut(res.Error)
		return r
	}
	if err := json.Unmarshal(res.Response.Body, &r); err != nil {
		r.Error = "bad result: " + cut(string(res.Response.Body))
	}
	return r
}

// runWPTWorkerd runs every file in one workerd, each its own worker on its
// own port, with a global outbound that serves the checkout.
func runWPTWorkerd(t *testing.T, bin, root string, files []string, sources map[string]string) map[string]wptResult {
	srv := httptest.NewServer(http.FileServer(http.Dir(root)))
	defer srv.Close()
	dir := t.TempDir()
	ports := map[string]int{}
	var services, sockets []string
	services = append(services, fmt.Sprintf("(name = \"wptserver\", external = (address = %q, http = ()))", strings.TrimPrefix(srv.URL, "http://")))
	next := 14000 + os.Getpid()%4000
	for i, f := range files {
		name := fmt.Sprintf("f%d", i)
		if err := os.WriteFile(filepath.Join(dir, name+".js"), []byte(sources[f]), 0o644); err != nil {
			t.Fatal(err)
		}
		// ports below the ephemeral range, which the kernel does not hand
		// to the connections made meanwhile
		for {
			next++
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", next))
			if err == nil {
				l.Close()
				break
			}
		}
		ports[f] = next
		services = append(services, fmt.Sprintf("(name = %q, worker = (modules = [(name = \"worker.js\", esModule = embed %q)], compatibilityDate = \"2025-09-01\", globalOutbound = \"wptserver\"))", name, name+".js"))
		sockets = append(sockets, fmt.Sprintf("(name = %q, address = \"127.0.0.1:%d\", http = (), service = %q)", name, ports[f], name))
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
	defer func() { cancel(); <-exited }()
	client := &http.Client{Timeout: 60 * time.Second}
	out := map[string]wptResult{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	deadline := time.Now().Add(60 * time.Second)
	for _, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := getWorkerd(client, ports[f], deadline, exited)
			mu.Lock()
			out[f] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	select {
	case <-exited:
		t.Fatalf("workerd exited:\n%s", logs.String())
	default:
	}
	return out
}

func getWorkerd(client *http.Client, port int, deadline time.Time, exited chan struct{}) wptResult {
	{
		var r wptResult
		for {
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
			req.Host = wptHost
			resp, err := client.Do(req)
			if err != nil {
				select {
				case <-exited:
					r.Error = "workerd exited"
					return r
				default:
				}
				if time.Now().After(deadline) {
					r.Error = err.Error()
					break
				}
				time.Sleep(100 * time.Millisecond)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				r.Error = fmt.Sprintf("status %d", resp.StatusCode)
			} else if err := json.Unmarshal(body, &r); err != nil {
				r.Error = "bad result: " + cut(string(body))
			}
			break
		}
		return r
	}
}

func summarizeWPT(t *testing.T, files []string, leash, wd map[string]wptResult) {
	type count struct {
		Files, Tests, Leash, Workerd int
	}
	areas := map[string]*count{}
	type fileRow struct {
		File                  string
		Tests, Leash, Workerd int
		LeashError, WdError   string
		LeashOnlyFail         []string `json:",omitempty"`
		LeashFailures         []string `json:",omitempty"`
	}
	var rows []fileRow
	for _, f := range files {
		area := ""
		for _, a := range wptAreas {
			if strings.HasPrefix(f, a.prefix) {
				area = a.name
				break
			}
		}
		c := areas[area]
		if c == nil {
			c = &count{}
			areas[area] = c
		}
		lp := leash[f].passed()
		names := map[string]bool{}
		for n := range lp {
			names[n] = true
		}
		var wp map[string]bool
		if wd != nil {
			wp = wd[f].passed()
			for n := range wp {
				names[n] = true
			}
		}
		row := fileRow{File: f, Tests: len(names), LeashError: leash[f].Error}
		if wd != nil {
			row.WdError = wd[f].Error
		}
		for n := range names {
			if lp[n] {
				row.Leash++
			}
			if wp[n] {
				row.Workerd++
			}
			if wp[n] && !lp[n] {
				row.LeashOnlyFail = append(row.LeashOnlyFail, n)
			}
		}
		sort.Strings(row.LeashOnlyFail)
		for _, x := range leash[f].Results {
			if x.Status != 0 {
				msg := ""
				if x.Message != nil {
					msg = *x.Message
				}
				row.LeashFailures = append(row.LeashFailures, x.Name+": "+cut(msg))
			}
		}
		c.Files++
		c.Tests += row.Tests
		c.Leash += row.Leash
		c.Workerd += row.Workerd
		rows = append(rows, row)
		t.Logf("wpt %-70s %4d tests  leash %4d  workerd %4d %s %s", f, row.Tests, row.Leash, row.Workerd, cut(row.LeashError), cut(row.WdError))
	}
	for _, a := range wptAreas {
		c := areas[a.name]
		if c == nil {
			continue
		}
		t.Logf("wpt area %-18s %3d files %5d tests  leash %5d  workerd %5d", a.name, c.Files, c.Tests, c.Leash, c.Workerd)
	}
	if *reportDir != "" {
		b, _ := json.MarshalIndent(map[string]any{"areas": areas, "files": rows}, "", " ")
		if err := os.WriteFile(filepath.Join(*reportDir, "wpt.json"), b, 0o644); err != nil {
			t.Error(err)
		}
	}
}
