package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/sandbox"
)

// BenchmarkTaskPath measures the path around the sandbox (issue 19) in
// one run: for the JS hello worker and the minimal WASI guest, each at
// concurrency 1, 8 and 32, the same engine in process (no HTTP, no lease,
// no receipt), POST /v1/tasks on a real node (answering once the receipt
// is in the ledger, the default), on a node started with --receipt-ack
// spool (answering once the receipt is fsynced in its spool), and on a
// node with audit off (LEASH_BENCH_UNAUDITED=1: no receipts, no events).
// The four are driven in rotating rounds so the shared machine's drift
// lands on each; it prints one table with the ratios, and a second with
// the CPU each task cost: the node process's (from /proc) and the
// benchmark process's own, which is the engine in process and the load
// generator (HTTP client) through a node. CPU per task is steadier than
// a rate on a shared machine: it does not count time spent waiting for
// a core or a disk.
//
//	go test -run '^$' -bench BenchmarkTaskPath -benchtime 1x -timeout 30m ./bench/
//
// LEASH_BENCH_PROFILE=DIR also takes a 10 s CPU profile and the
// allocations of the audited node under each guest's load at
// concurrency 8 (DIR/cpu-<guest>.pprof, DIR/allocs-<guest>-{0,1}.pprof:
// read the second with -base the first).
func BenchmarkTaskPath(b *testing.B) {
	engine := filepath.Join(nodetest.RepoRoot(), "build", "engine", "engine.wasm")
	if _, err := os.Stat(engine); err != nil {
		b.Fatalf("the JS engine is missing (%v): run `make engine`", err)
	}
	args := []string{"--slots", "8", "--log-level", "warn", "--engine", engine}
	on := nodetest.Start(b, nodetest.Options{Args: args})
	off := nodetest.Start(b, nodetest.Options{Args: args, Env: []string{"LEASH_BENCH_UNAUDITED=1"}})
	spool := nodetest.Start(b, nodetest.Options{Args: append([]string{"--receipt-ack", "spool"}, args...)})
	rt := jsRuntime(b)
	ctx := context.Background()

	type guest struct {
		name, ctype string
		kind        sandbox.Kind
		code        []byte
		perRound    int
	}
	guests := []guest{
		{"js-hello", "application/javascript", sandbox.KindJS, []byte(jsHello), 600},
		{"wasi-minimal", "application/wasm", sandbox.KindWASI, loadGuest(b, "minimal"), 1500},
	}
	type target struct{ url, token string }
	prep := func(n *nodetest.Node, g guest) (target, []byte) {
		var l api.Lease
		n.JSON("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "demo", Intent: "read_docs", TTLSeconds: 900}, 201, &l)
		st, body := n.Do("PUT", "/v1/modules", l.Token, g.code, "Content-Type", g.ctype)
		if st != 201 {
			b.Fatalf("put module: %d %s", st, body)
		}
		var ref api.ModuleRef
		_ = json.Unmarshal(body, &ref)
		task, _ := json.Marshal(api.TaskRequest{Module: api.Module{Digest: &ref.Digest}, Request: api.TaskHTTPRequest{Method: "GET", URL: "https://bench.example/"}})
		return target{n.URL() + "/v1/tasks", l.Token}, task
	}
	const rounds = 3
	var table, cpuTable strings.Builder
	fmt.Fprintf(&cpuTable, "\n| guest | c | in process µs/task | ledger ack: node + client µs/task | spool ack: node + client | unaudited: node + client |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&table, "\n| guest | c | in process/s | audited (ledger ack)/s | audited (spool ack)/s | unaudited/s | ledger/in-process | spool/in-process | unaudited/in-process | ledger/unaudited | spool/unaudited |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range guests {
		m, err := rt.Compile(ctx, g.kind, g.code)
		if err != nil {
			b.Fatal(err)
		}
		limits := sandbox.Limits{CPU: time.Second, Wall: 5 * time.Second, MemoryBytes: 64 << 20, OutputBytes: 1 << 20, LogBytes: 1 << 16}
		inproc := func(int) error {
			t := &sandbox.Task{ID: "bench", Module: m, Request: sandbox.Request{Method: "GET", URL: "https://bench.example/"}, Limits: limits}
			if res := rt.Run(ctx, t); res.Outcome != sandbox.OutcomeOK {
				return fmt.Errorf("%s: %s", res.Outcome, res.Error)
			}
			return nil
		}
		tOn, taskOn := prep(on, g)
		tOff, taskOff := prep(off, g)
		tSp, taskSp := prep(spool, g)
		nodes := []*nodetest.Node{nil, on, off, spool} // whose CPU each op uses besides ours
		viaOn := func(int) error { return post(tOn.url, tOn.token, taskOn, 200) }
		viaOff := func(int) error { return post(tOff.url, tOff.token, taskOff, 200) }
		viaSp := func(int) error { return post(tSp.url, tSp.token, taskSp, 200) }
		if dir := os.Getenv("LEASH_BENCH_PROFILE"); dir != "" {
			profileNode(b, on, dir, g.name, viaOn)
		}
		for _, c := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/c=%d", g.name, c), func(b *testing.B) {
				ops := []func(int) error{inproc, viaOn, viaOff, viaSp}
				for _, op := range ops {
					Load(g.perRound/4, c, op) // warm up
				}
				var elapsed, nodeCPU, selfCPU [4]time.Duration
				var errs int64
				for r := 0; r < rounds; r++ {
					for k := range ops {
						i := (k + r) % len(ops) // rotate who goes first
						var n0 time.Duration
						if nodes[i] != nil {
							n0 = procCPU(b, nodes[i].PID())
						}
						s0 := selfCPUTime()
						lat := Load(g.perRound, c, ops[i])
						selfCPU[i] += selfCPUTime() - s0
						if nodes[i] != nil {
							nodeCPU[i] += procCPU(b, nodes[i].PID()) - n0
						}
						elapsed[i] += lat.Elapsed
						errs += lat.Errors
					}
				}
				n := float64(rounds * g.perRound)
				in, au, un, sp := n/elapsed[0].Seconds(), n/elapsed[1].Seconds(), n/elapsed[2].Seconds(), n/elapsed[3].Seconds()
				b.ReportMetric(in, "inprocess_tasks/s")
				b.ReportMetric(au, "audited_tasks/s")
				b.ReportMetric(sp, "spool_ack_tasks/s")
				b.ReportMetric(un, "unaudited_tasks/s")
				b.ReportMetric(au/in, "audited/inprocess")
				b.ReportMetric(sp/in, "spool_ack/inprocess")
				b.ReportMetric(au/un, "audited/unaudited")
				b.ReportMetric(sp/un, "spool_ack/unaudited")
				if errs > 0 {
					b.Fatalf("%d tasks failed", errs)
				}
				fmt.Fprintf(&table, "| %s | %d | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", g.name, c, in, au, sp, un, au/in, sp/in, un/in, au/un, sp/un)
				us := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
				fmt.Fprintf(&cpuTable, "| %s | %d | %.0f | %.0f + %.0f | %.0f + %.0f | %.0f + %.0f |\n", g.name, c, us(selfCPU[0]),
					us(nodeCPU[1]), us(selfCPU[1]), us(nodeCPU[3]), us(selfCPU[3]), us(nodeCPU[2]), us(selfCPU[2]))
			})
		}
	}
	fmt.Println(table.String()) // the whole table, once (b.Log of a parent benchmark shows only with -v)
	fmt.Println(cpuTable.String())
}

// selfCPUTime is the user and system CPU time this process has used.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// profileNode loads n with op at concurrency 8 while it takes a 10 s CPU
// profile, and fetches its cumulative allocations before and after.
func profileNode(b *testing.B, n *nodetest.Node, dir, name string, op func(int) error) {
	fetch := func(path, file string) {
		req, _ := http.NewRequest("GET", n.URL()+path, nil)
		req.Header.Set("Authorization", "Bearer "+n.Token)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			b.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		if err := os.WriteFile(filepath.Join(dir, file), body, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	Load(300, 8, op) // warm up
	var stop atomic.Bool
	var wg sync.WaitGroup
	var done atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			done.Add(int64(Load(100, 8, op).N))
		}
	}()
	fetch("/debug/pprof/allocs", "allocs-"+name+"-0.pprof")
	fetch("/debug/pprof/profile?seconds=10", "cpu-"+name+".pprof")
	fetch("/debug/pprof/allocs", "allocs-"+name+"-1.pprof")
	stop.Store(true)
	wg.Wait()
	b.Logf("%s: profiled over %d tasks", name, done.Load())
}
