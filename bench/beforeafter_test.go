package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// BenchmarkBuildsCompared runs the task path (lease check, sandbox, task
// record, signed receipt through Raft) and lease issuance at concurrency
// 8 against two builds in one run, in alternating bursts: the one
// LEASH_BENCH_BASELINE names (a `go build ./cmd/leash` of an earlier
// commit) and LEASH_BENCH_CANDIDATE's (default: this tree's). It reports
// each build's median rates and the median of the paired ratios
// (candidate/baseline); a refactoring
// that claims no behaviour change shows ratios near 1.
//
//	git worktree add /tmp/base <commit> && (cd /tmp/base && go build -o /tmp/leash-base ./cmd/leash)
//	LEASH_BENCH_BASELINE=/tmp/leash-base go test ./bench -run '^$' -bench BuildsCompared -benchtime 1x
//
// It also reports each build's node CPU per task (median over the
// bursts, from /proc): steadier than a rate on a shared machine.
// LEASH_BENCH_GUEST=js runs the JS hello worker instead of the minimal
// WASI guest; LEASH_BENCH_UNAUDITED=1 starts both nodes with audit off.
func BenchmarkBuildsCompared(b *testing.B) {
	base := os.Getenv("LEASH_BENCH_BASELINE")
	if base == "" {
		b.Skip("set LEASH_BENCH_BASELINE to a leash binary built from the commit to compare with")
	}
	cand := os.Getenv("LEASH_BENCH_CANDIDATE") // "": this tree
	type target struct {
		n           *nodetest.Node
		token       string
		task, lease []byte
	}
	js := os.Getenv("LEASH_BENCH_GUEST") == "js"
	args := []string{"--slots", "8", "--log-level", "warn"}
	if js {
		args = append(args, "--engine", filepath.Join(nodetest.RepoRoot(), "build", "engine", "engine.wasm"))
	}
	var env []string
	if os.Getenv("LEASH_BENCH_UNAUDITED") != "" {
		env = []string{"LEASH_BENCH_UNAUDITED=1"}
	}
	start := func(bin string) *target {
		n := nodetest.Start(b, nodetest.Options{Binary: bin, Args: args, Env: env})
		token, task := minimalTask(b, n)
		if js {
			token, task = jsHelloTask(b, n)
		}
		lreq, _ := json.Marshal(api.LeaseRequest{Tenant: "demo", Intent: "read_docs"})
		Load(300, 8, func(int) error { return post(n.URL()+"/v1/tasks", token, task, 200) })
		return &target{n: n, token: token, task: task, lease: lreq}
	}
	// Both nodes run for the whole benchmark (one idles while the other
	// is measured); short alternating bursts see the same machine, and
	// the median of the paired ratios discards the bursts a neighbour's
	// load spoiled.
	bt, ct := start(base), start(cand)
	defer bt.n.Stop(30 * time.Second)
	defer ct.n.Stop(30 * time.Second)
	var bCPU, cCPU []float64 // node µs per task
	burst := func(t *target) (tasks, leases float64) {
		c0 := procCPU(b, t.n.PID())
		tl := Load(1000, 8, func(int) error { return post(t.n.URL()+"/v1/tasks", t.token, t.task, 200) })
		us := float64((procCPU(b, t.n.PID()) - c0).Microseconds()) / float64(tl.N)
		if t == bt {
			bCPU = append(bCPU, us)
		} else {
			cCPU = append(cCPU, us)
		}
		ll := Load(500, 8, func(int) error { return post(t.n.URL()+"/v1/leases", t.n.Token, t.lease, 201) })
		return tl.Rate(), ll.Rate()
	}
	var taskRatios, leaseRatios, bTasks, cTasks, bLeases, cLeases []float64
	b.ResetTimer()
	for r := 0; r < 9; r++ {
		first, second := bt, ct
		if r%2 == 1 {
			first, second = ct, bt
		}
		t1, l1 := burst(first)
		t2, l2 := burst(second)
		if first == ct {
			t1, l1, t2, l2 = t2, l2, t1, l1
		}
		bTasks, bLeases, cTasks, cLeases = append(bTasks, t1), append(bLeases, l1), append(cTasks, t2), append(cLeases, l2)
		taskRatios, leaseRatios = append(taskRatios, t2/t1), append(leaseRatios, l2/l1)
	}
	median := func(xs []float64) float64 {
		xs = slices.Clone(xs)
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	b.ReportMetric(median(bTasks), "base_tasks/s")
	b.ReportMetric(median(cTasks), "cand_tasks/s")
	b.ReportMetric(median(taskRatios), "tasks_ratio")
	b.ReportMetric(median(bLeases), "base_leases/s")
	b.ReportMetric(median(cLeases), "cand_leases/s")
	b.ReportMetric(median(leaseRatios), "leases_ratio")
	b.ReportMetric(median(bCPU), "base_node_us/task")
	b.ReportMetric(median(cCPU), "cand_node_us/task")
}

// jsHelloTask uploads the JS hello worker and returns a lease token and
// the task naming it by digest.
func jsHelloTask(b *testing.B, n *nodetest.Node) (token string, task []byte) {
	var l api.Lease
	n.JSON("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "demo", Intent: "read_docs", TTLSeconds: 900}, 201, &l)
	st, body := n.Do("PUT", "/v1/modules", l.Token, []byte(jsHello), "Content-Type", "application/javascript")
	if st != 201 {
		b.Fatalf("put module: %d %s", st, body)
	}
	var ref api.ModuleRef
	_ = json.Unmarshal(body, &ref)
	task, _ = json.Marshal(api.TaskRequest{Module: api.Module{Digest: &ref.Digest}, Request: api.TaskHTTPRequest{Method: "GET", URL: "https://bench.example/"}})
	return l.Token, task
}
