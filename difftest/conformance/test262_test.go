//go:build conformance

package conformance

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/sandbox"
)

var (
	test262Dir = flag.String("test262", os.Getenv("LEASH_TEST262"), "a tc39/test262 checkout (harness/, test/built-ins/, features.txt)")
	reportDir  = flag.String("report", os.Getenv("LEASH_CONFORMANCE_REPORT"), "write each suite's results as JSON into this directory")
	only262    = flag.String("test262-only", "", "run only test files whose path under test/built-ins/ has this prefix")
)

func enginePath() string {
	if p := os.Getenv("LEASH_TEST_ENGINE"); p != "" {
		return p
	}
	return "../../build/engine/engine.wasm"
}

func newRuntime(t *testing.T) *sandbox.Runtime {
	t.Helper()
	ctx := context.Background()
	rt, err := sandbox.New(ctx, sandbox.Config{EnginePath: enginePath()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(ctx) })
	if err := rt.JSError(); err != nil {
		t.Fatal(err)
	}
	return rt
}

// es2026 are the standard features test262 tags that came after ES2025
// (ECMA-262 16th edition, June 2025): ES2026's, and those that reached
// stage 4 in 2026 and moved to features.txt's standard section (test262
// 2949e48d3f: joint-iteration, iterator-chunking, iterator-includes); the
// proposals (features.txt's first section) are after it too.
var es2026 = map[string]bool{
	"Array.fromAsync": true, "Error.isError": true, "Math.sumPrecise": true, "uint8array-base64": true,
	"upsert": true, "iterator-sequencing": true, "explicit-resource-management": true,
	"json-parse-with-source": true, "Temporal": true, "Intl.Era-monthcode": true, "canonical-tz": true,
	"joint-iteration": true, "iterator-chunking": true, "iterator-includes": true,
}

// host features a Workers runtime does not offer: agents (threads that
// block), other realms, document.all.
var hostOnly = map[string]bool{"IsHTMLDDA": true, "cross-realm": true, "host-gc-required": true}

type meta262 struct {
	includes, flags, features []string
	negPhase, negType         string
}

var metaRe = regexp.MustCompile(`(?s)/\*---(.*?)---\*/`)

func parseMeta(src string) meta262 {
	var m meta262
	mm := metaRe.FindStringSubmatch(src)
	if mm == nil {
		return m
	}
	var key string
	inNeg := false
	sc := bufio.NewScanner(strings.NewReader(mm[1]))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	list := func(v string) []string {
		v = strings.TrimSpace(v)
		v = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
		var out []string
		for _, x := range strings.Split(v, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
		return out
	}
	for sc.Scan() {
		line := sc.Text()
		trim := strings.TrimSpace(line)
		if trim == "" {
			continue
		}
		indented := line[0] == ' ' || line[0] == '\t'
		if !indented {
			inNeg = false
			k, v, ok := strings.Cut(trim, ":")
			if !ok {
				continue
			}
			key = k
			switch k {
			case "includes":
				m.includes = append(m.includes, list(v)...)
			case "flags":
				m.flags = append(m.flags, list(v)...)
			case "features":
				m.features = append(m.features, list(v)...)
			case "negative":
				inNeg = true
			}
			continue
		}
		if inNeg {
			k, v, _ := strings.Cut(trim, ":")
			switch strings.TrimSpace(k) {
			case "phase":
				m.negPhase = strings.TrimSpace(v)
			case "type":
				m.negType = strings.TrimSpace(v)
			}
			continue
		}
		if strings.HasPrefix(trim, "- ") {
			v := strings.TrimSpace(trim[2:])
			switch key {
			case "includes":
				m.includes = append(m.includes, v)
			case "flags":
				m.flags = append(m.flags, v)
			case "features":
				m.features = append(m.features, v)
			}
		}
	}
	return m
}

func has(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// proposals reads features.txt's first section: the stage 3 proposals.
func proposals(t *testing.T, dir string) map[string]bool {
	b, err := os.ReadFile(filepath.Join(dir, "features.txt"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "## Standard language features") {
			break
		}
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out[strings.Fields(line)[0]] = true
		}
	}
	return out
}

// prelude262 is what the harness needs of the host: print (for async
// tests) and a $262 with what a Workers script can do.
const prelude262 = `const __t262 = { msgs: [] };
globalThis.print = (s) => { __t262.msgs.push(String(s)); };
globalThis.$262 = {
  global: globalThis,
  gc() { throw new Test262Error("gc is not available"); },
  detachArrayBuffer(buf) {
    if (typeof ArrayBuffer.prototype.transfer === "function") { buf.transfer(); return null; }
    structuredClone(buf, { transfer: [buf] });
    return null;
  },
  evalScript() { throw new Test262Error("evalScript is not available"); },
  createRealm() { throw new Test262Error("createRealm is not available"); },
  agent: {},
};
`

// handler262 answers once an async test printed its outcome (up to 1 s).
const handler262 = `
export default { async fetch() {
  for (let i = 0; i < 200 && __t262.msgs.length === 0; i++) await null;
  for (let i = 0; i < 100 && __t262.msgs.length === 0; i++) await new Promise(r => setTimeout(r, 10));
  return new Response(__t262.msgs.join("\n"));
} };
`

const handler262Sync = "\nexport default { fetch() { return new Response(\"ok\"); } };\n"

// result262 is one test's outcome.
type result262 struct {
	Path    string `json:"path"`
	Pass    bool   `json:"pass"`
	Skip    string `json:"skip,omitempty"`
	ES2026  bool   `json:"es2026,omitempty"`
	Message string `json:"message,omitempty"`
}

func TestTest262(t *testing.T) {
	if *test262Dir == "" {
		t.Skip("set -test262 DIR (or LEASH_TEST262) to a tc39/test262 checkout")
	}
	dir := *test262Dir
	props := proposals(t, dir)
	harness := map[string]string{}
	readHarness := func(name string) string {
		if s, ok := harness[name]; ok {
			return s
		}
		b, err := os.ReadFile(filepath.Join(dir, "harness", name))
		if err != nil {
			t.Fatalf("harness %s: %v", name, err)
		}
		harness[name] = string(b)
		return harness[name]
	}
	root := filepath.Join(dir, "test", "built-ins")
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if !d.IsDir() && strings.HasSuffix(p, ".js") && !strings.Contains(p, "_FIXTURE") && strings.HasPrefix(rel, *only262) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	rt := newRuntime(t)
	type job struct {
		rel, src string
		m        meta262
	}
	results := make([]result262, len(files))
	var jobs []int
	srcs := make([]job, len(files))
	for i, p := range files {
		rel, _ := filepath.Rel(root, p)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		m := parseMeta(src)
		r := result262{Path: rel}
		for _, f := range m.features {
			if es2026[f] {
				r.ES2026 = true
			}
			if props[f] {
				r.Skip = "proposal " + f
			}
			if hostOnly[f] {
				r.Skip = "host feature " + f
			}
		}
		switch {
		case r.Skip != "":
		case has(m.flags, "noStrict"):
			r.Skip = "sloppy mode only (a worker is module code)"
		case has(m.flags, "raw"):
			r.Skip = "raw (no harness)"
		case has(m.flags, "module"):
			r.Skip = "module with imports"
		case has(m.flags, "CanBlockIsTrue"):
			r.Skip = "blocking agent"
		case strings.Contains(src, "$262.agent"):
			r.Skip = "agents"
		}
		results[i] = r
		if r.Skip == "" {
			for _, inc := range m.includes {
				readHarness(inc)
			}
			readHarness("assert.js")
			readHarness("sta.js")
			readHarness("doneprintHandle.js")
			jobs = append(jobs, i)
			srcs[i] = job{rel: rel, src: src, m: m}
		}
	}
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				j := srcs[i]
				pass, msg := run262(rt, harness, j.src, j.m)
				results[i].Pass, results[i].Message = pass, msg
			}
		}()
	}
	t0 := time.Now()
	for _, i := range jobs {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Logf("test262: %d files in %v", len(jobs), time.Since(t0).Round(time.Second))
	summarize262(t, results)
}

func run262(rt *sandbox.Runtime, harness map[string]string, src string, m meta262) (bool, string) {
	var b strings.Builder
	b.WriteString(prelude262)
	b.WriteString(harness["assert.js"])
	b.WriteString("\n")
	b.WriteString(harness["sta.js"])
	b.WriteString("\n")
	async := has(m.flags, "async")
	if async {
		b.WriteString(harness["doneprintHandle.js"])
		// a module's function declarations are not properties of the
		// global object, which asyncHelpers.js looks for $DONE on
		b.WriteString("\nglobalThis.$DONE = $DONE;\n")
	}
	for _, inc := range m.includes {
		b.WriteString(harness[inc])
		b.WriteString("\n")
	}
	b.WriteString(src)
	b.WriteString("\n;")
	if async {
		b.WriteString(handler262)
	} else {
		b.WriteString(handler262Sync)
	}
	ctx := context.Background()
	mod, err := rt.Compile(ctx, sandbox.KindJS, []byte(b.String()))
	if err != nil {
		if m.negPhase == "parse" || m.negPhase == "resolution" {
			return strings.Contains(err.Error(), m.negType), err.Error()
		}
		return false, "compile: " + err.Error()
	}
	if m.negPhase == "parse" || m.negPhase == "resolution" {
		return false, "compiled, want " + m.negType
	}
	res := rt.Run(ctx, &sandbox.Task{ID: "t262", Module: mod, Request: sandbox.Request{Method: "GET", URL: "http://t262.test/"},
		Limits: sandbox.Limits{CPU: 5 * time.Second, Wall: 10 * time.Second, MemoryBytes: 256 << 20, OutputBytes: 1 << 20, LogBytes: 1 << 16}})
	if res.Outcome != sandbox.OutcomeOK {
		msg := cut(res.Error)
		if m.negPhase == "runtime" {
			return strings.Contains(res.Error, "script_error: "+m.negType), msg
		}
		return false, string(res.Outcome) + ": " + msg
	}
	if m.negPhase == "runtime" {
		return false, "ran, want " + m.negType
	}
	out := string(res.Response.Body)
	if async {
		return strings.Contains(out, "Test262:AsyncTestComplete"), cut(out)
	}
	return true, ""
}

func cut(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// summarize262 logs and writes pass counts per directory and in all, for
// ES2025 and earlier, and for the ES2026 features apart.
func summarize262(t *testing.T, results []result262) {
	type count struct{ Run, Pass, Skip int }
	dirs := map[string]*count{}
	var es25, es26 count
	for _, r := range results {
		d := strings.SplitN(r.Path, string(filepath.Separator), 2)[0]
		c := dirs[d]
		if c == nil {
			c = &count{}
			dirs[d] = c
		}
		total := &es25
		if r.ES2026 {
			total = &es26
		}
		if r.Skip != "" {
			c.Skip++
			total.Skip++
			continue
		}
		c.Run++
		total.Run++
		if r.Pass {
			c.Pass++
			total.Pass++
		}
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		c := dirs[d]
		t.Logf("test262 built-ins/%-32s %5d/%5d  (%d not applicable)", d, c.Pass, c.Run, c.Skip)
	}
	pct := func(c count) float64 { return 100 * float64(c.Pass) / float64(max(c.Run, 1)) }
	t.Logf("test262 built-ins, ES2025 and earlier: %d/%d pass (%.1f%%), %d not applicable", es25.Pass, es25.Run, pct(es25), es25.Skip)
	t.Logf("test262 built-ins, ES2026 and later:   %d/%d pass (%.1f%%), %d not applicable", es26.Pass, es26.Run, pct(es26), es26.Skip)
	if *reportDir != "" {
		b, _ := json.MarshalIndent(map[string]any{"es2025": es25, "es2026": es26, "dirs": dirs, "tests": results}, "", " ")
		if err := os.WriteFile(filepath.Join(*reportDir, "test262.json"), b, 0o644); err != nil {
			t.Error(err)
		}
	}
	_ = fmt.Sprint
}

func flagString(name, env, usage string) *string {
	return flag.String(name, os.Getenv(env), usage+" (or $"+env+")")
}
