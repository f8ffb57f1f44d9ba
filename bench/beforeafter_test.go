package bench

import (
	"encoding/json"
	"os"
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
	start := func(bin string) *target {
		n := nodetest.Start(b, nodetest.Options{Binary: bin, Args: []string{"--slots", "8", "--log-level", "warn"}})
		token, task := minimalTask(b, n)
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
	burst := func(t *target) (tasks, leases float64) {
		tl := Load(1000, 8, func(int) error { return post(t.n.URL()+"/v1/tasks", t.token, t.task, 200) })
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
}
