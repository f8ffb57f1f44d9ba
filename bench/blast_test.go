package bench

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/ledger"
)

// blastReceipts is the scale: the blast-radius query over a
// million receipts.
const blastReceipts = 1_000_000

// BenchmarkBlastRadius1M: a real node's ledger holds 1,000,000 signed
// receipts (appended as batches through a real one-node Raft on the
// node's own data dir, signed by a receipt key in replicated state);
// the node process is started on that state and GET
// /v1/runbook/blast-radius is asked through HTTP for a narrow selector
// (one tenant: 1,000 receipts), a CIDR (a /18: 16,384) and a wide one
// (one profile: 50,000, the most one query verifies). Every matched
// receipt is verified (signature, inclusion in the signed checkpoint);
// the benchmark checks verified == matched and pending == 0.
//
// Three phases: "behind", each selector once in the first process while
// the node's verifier (runbook/verified.go) has not checked the log yet
// (the query checks the signatures itself); then, once the verifier
// has caught up (its log line), a fresh process: "cold" (the first query
// of each selector, its index just built from the log, the verifier's
// watermark read back from the store) and "warm" (the median of the 5
// after it).
//
// LEASH_BENCH_BLAST_DIR keeps the built state in that directory and
// reuses it on the next run (building it takes a few minutes; a reused
// state has its verifier's watermark already, so "behind" is skipped);
// LEASH_BENCH_BLAST_ONLY=profile (names, comma-separated) asks only those
// selectors.
func BenchmarkBlastRadius1M(b *testing.B) {
	dir := os.Getenv("LEASH_BENCH_BLAST_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	marker := filepath.Join(dir, "bench-built")
	args := []string{"--stay-on-stop", "--log-level", "info"}
	n := nodetest.Start(b, nodetest.Options{DataDir: dir, Args: args})
	if _, err := os.Stat(marker); err != nil {
		id := n.ID()
		if err := n.Stop(time.Minute); err != nil {
			b.Fatalf("stop the node: %v", err)
		}
		start := time.Now()
		buildBlastState(b, dir, id)
		b.ReportMetric(time.Since(start).Seconds(), "build_s")
		if err := os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339)), 0o644); err != nil {
			b.Fatal(err)
		}
		n.Restart()
	}
	queries := []struct {
		name, query string
		want        int
	}{
		{"tenant", "tenant=tenant-007", 1000},
		{"cidr", "destination=10.3.0.0/18", 16384},
		{"profile", "profile=profile-07", 50000},
	}
	only := os.Getenv("LEASH_BENCH_BLAST_ONLY") // e.g. "profile"
	built := regexp.MustCompile(`"msg":"blast-radius index built".*?"ms":(\d+)`)
	caught := regexp.MustCompile(`"msg":"blast-radius verifier caught up".*?"ms":(\d+)`)
	waitIndex := func(name string) {
		restarted := time.Now()
		for { // the index is built from the log at start: 503 until then
			st, body := n.Do("GET", "/v1/runbook/blast-radius?tenant=nobody", n.Token, nil)
			if st == 200 {
				break
			}
			if st != 503 || time.Since(restarted) > 10*time.Minute {
				b.Fatalf("probe: %d %s", st, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if m := built.FindAllStringSubmatch(n.Logs(), -1); len(m) > 0 {
			ms, _ := strconv.Atoi(m[len(m)-1][1])
			b.ReportMetric(float64(ms)/1000, name+"_index_build_s")
		}
	}
	ask := func(name, query string, want int) (api.BlastRadius, time.Duration, time.Duration) {
		var out api.BlastRadius
		cpu0 := procCPU(b, n.PID())
		t0 := time.Now()
		n.JSON("GET", "/v1/runbook/blast-radius?"+query, n.Token, nil, 200, &out)
		d := time.Since(t0)
		if out.Matched != want || out.Verified != out.Matched || out.Pending != 0 {
			b.Fatalf("%s: matched %d, verified %d, pending %d", name, out.Matched, out.Verified, out.Pending)
		}
		return out, d, procCPU(b, n.PID()) - cpu0
	}
	waitIndex("first")
	for _, q := range queries {
		if only != "" && !slices.Contains(strings.Split(only, ","), q.name) {
			continue
		}
		if ahead := func() int { out, _, _ := ask(q.name, "tenant=tenant-000", 1000); return out.VerifiedAhead }(); ahead == 1000 {
			break // the verifier is ahead already (a reused state)
		}
		out, d, cpu := ask(q.name, q.query, q.want)
		b.ReportMetric(ms(d), q.name+"_behind_ms")
		b.ReportMetric(cpu.Seconds(), q.name+"_behind_cpu_s")
		b.Logf("%s (%s), verifier behind: matched %d, verified %d (%d by the verifier), %v (node CPU %v)", q.name, q.query,
			out.Matched, out.Verified, out.VerifiedAhead, d.Round(time.Millisecond), cpu)
	}
	// A reused state may have its watermark at the log's end already
	// (tenant-999's last receipt is near it); otherwise wait for the
	// verifier's log line. Polling with a query would check signatures
	// beside the verifier and slow what is measured.
	if out, _, _ := ask("tenant", "tenant=tenant-999", 1000); out.VerifiedAhead != 1000 {
		waited := time.Now()
		for !caught.MatchString(n.Logs()) {
			if time.Since(waited) > 30*time.Minute {
				b.Fatal("the verifier did not catch up in 30 minutes")
			}
			time.Sleep(2 * time.Second)
		}
	}
	if m := caught.FindStringSubmatch(n.Logs()); m != nil {
		ms, _ := strconv.Atoi(m[1])
		b.ReportMetric(float64(ms)/1000, "verifier_catchup_s")
		b.Logf("the verifier caught up in %v", time.Duration(ms)*time.Millisecond)
	}
	if err := n.Stop(time.Minute); err != nil {
		b.Fatalf("stop the node: %v", err)
	}
	n.Restart()
	waitIndex("cold")
	for _, q := range queries {
		if only != "" && !slices.Contains(strings.Split(only, ","), q.name) {
			continue
		}
		first, firstT, firstCPU := ask(q.name, q.query, q.want)
		var warm, warmCPU []time.Duration
		for range 5 {
			_, d, c := ask(q.name, q.query, q.want)
			warm, warmCPU = append(warm, d), append(warmCPU, c)
		}
		slices.Sort(warm)
		slices.Sort(warmCPU)
		// The machine is shared: what one signature check costs on it
		// now, serially in this process, is the yardstick of the query.
		verify := verifyCost(b)
		b.ReportMetric(float64(verify.Microseconds()), q.name+"_one_verify_us")
		b.ReportMetric(float64(warm[len(warm)/2])/float64(time.Duration(q.want)*verify), q.name+"_warm_per_serial_verify")
		b.ReportMetric(float64(first.VerifiedAhead), q.name+"_verified_ahead")
		b.ReportMetric(ms(firstT), q.name+"_cold_ms")
		b.ReportMetric(firstCPU.Seconds(), q.name+"_cold_cpu_s")
		b.ReportMetric(ms(warm[len(warm)/2]), q.name+"_warm_p50_ms")
		b.ReportMetric(warmCPU[len(warmCPU)/2].Seconds(), q.name+"_warm_cpu_p50_s")
		b.Logf("%s (%s): matched %d, verified %d (%d by the verifier), cold %v (node CPU %v), warm p50 %v (CPU %v), max %v; one VerifyEnvelope here now %v",
			q.name, q.query, first.Matched, first.Verified, first.VerifiedAhead, firstT.Round(time.Millisecond), firstCPU,
			warm[len(warm)/2].Round(time.Millisecond), warmCPU[len(warmCPU)/2], warm[len(warm)-1].Round(time.Millisecond), verify)
	}
}

// verifyCost is the time of one ledger.VerifyEnvelope of a receipt like
// the benchmark's, serially, the median of 5 runs of 200.
func verifyCost(b *testing.B) time.Duration {
	pub, priv, _ := ed25519.GenerateKey(nil)
	env, err := ledger.SignReceipt(priv, "", blastReceipt(7, "n1", time.Now().UTC()))
	if err != nil {
		b.Fatal(err)
	}
	keys, err := ledger.NewKeySet("leash/bench", ledger.NodeKeys{ID: "n1", ReceiptKeys: []ledger.ReceiptKey{{KeyID: ledger.KeyID(pub), Alg: "ed25519",
		PublicKey: base64.StdEncoding.EncodeToString(pub)}}})
	if err != nil {
		b.Fatal(err)
	}
	var runs []time.Duration
	for range 5 {
		t0 := time.Now()
		for range 200 {
			if _, err := ledger.VerifyEnvelope(env, keys); err != nil {
				b.Fatal(err)
			}
		}
		runs = append(runs, time.Since(t0)/200)
	}
	slices.Sort(runs)
	return runs[2]
}

// procCPU is the user and system CPU time process pid has used.
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which is in parentheses): utime
	// and stime are the 12th and 13th, in clock ticks (100 a second).
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// buildBlastState appends blastReceipts signed receipts to the ledger in
// dir through a real one-node Raft (the node's own Raft identity, its
// Pebble store), after registering the signing key as a receipt key.
func buildBlastState(b *testing.B, dir, nodeID string) {
	ctx := context.Background()
	db, err := consensus.OpenDB(filepath.Join(dir, "pebble"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	fsm := consensus.NewFSM(db, nil)
	r, err := consensus.Open(ctx, consensus.Config{NodeID: nodeID, Dir: dir, DB: db, BindAddr: "127.0.0.1:0",
		Tune: func(c *raft.Config) { c.LogLevel = "ERROR" }}, fsm)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := r.WaitLeader(wctx); err != nil {
		b.Fatal(err)
	}
	for !r.IsLeader() {
		time.Sleep(10 * time.Millisecond)
	}
	const signer = "bench-signer"
	pub, priv, _ := ed25519.GenerateKey(nil)
	if _, err := r.Apply(ctx, &consensus.PutNodeKey{Key: consensus.NodeKey{KID: ledger.KeyID(pub), NodeID: signer,
		Use: consensus.KeyUseReceipt, Algorithm: "EdDSA", PublicKey: pub, AddedAt: time.Now().UnixNano()}}); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now().Add(-30 * 24 * time.Hour).UTC().Truncate(time.Second)
	receipt := func(i int) []byte {
		rc := blastReceipt(i, signer, t0)
		env, err := ledger.SignReceipt(priv, "", rc)
		if err != nil {
			b.Error(err)
			return nil
		}
		c, _ := env.Canonical()
		return c
	}
	// Signers on every core feed batches of 1,024 to four appliers.
	const batch = 1024
	batches := make(chan [][]byte, 8)
	var sw sync.WaitGroup
	next := make(chan int)
	go func() {
		for i := 0; i < blastReceipts; i += batch {
			next <- i
		}
		close(next)
	}()
	for range runtime.GOMAXPROCS(0) {
		sw.Add(1)
		go func() {
			defer sw.Done()
			for first := range next {
				envs := make([][]byte, 0, batch)
				for i := first; i < min(first+batch, blastReceipts); i++ {
					envs = append(envs, receipt(i))
				}
				batches <- envs
			}
		}()
	}
	go func() { sw.Wait(); close(batches) }()
	var aw sync.WaitGroup
	for range 4 {
		aw.Add(1)
		go func() {
			defer aw.Done()
			for envs := range batches {
				if _, err := r.Apply(ctx, &consensus.AppendReceipts{Envelopes: envs}); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	aw.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// blastReceipt is receipt i of the benchmark's ledger: 1,000 tenants, 20
// profiles, 5,000 modules, 100,000 leases, one named host of 100 and one
// IP of 65,536 per task, ends 100 ms apart.
func blastReceipt(i int, node string, t0 time.Time) *ledger.Receipt {
	end := t0.Add(time.Duration(i) * 100 * time.Millisecond)
	return &ledger.Receipt{
		LeaseID: fmt.Sprintf("lse_bench%06d", i/10), Tenant: fmt.Sprintf("tenant-%03d", i%1000), Profile: fmt.Sprintf("profile-%02d", i%20),
		PolicyDigest: "sha256:" + hex64, ModuleDigest: fmt.Sprintf("sha256:%060x%04d", 0, i%5000), TaskID: fmt.Sprintf("tsk_bench%07d", i),
		RequestSHA256: hex64, ResponseSHA256: hex64, NodeID: node, Start: end.Add(-40 * time.Millisecond), End: end,
		CPUMillis: 3, MemoryPeakBytes: 1 << 20, EgressBytesOut: 120, EgressBytesIn: 2048,
		Destinations:    []string{fmt.Sprintf("api%d.example.com:443", i%100), fmt.Sprintf("10.%d.%d.%d:443", (i/65536)%256, (i/256)%256, i%256)},
		BlockedAttempts: []ledger.BlockedAttempt{}, Outcome: "ok",
		Traceparent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01", Attempt: 1,
	}
}
