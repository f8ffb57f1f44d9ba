package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// BenchmarkUploadFlood floods a node with module uploads from two tenants
// whose bundle gives each a quota of 64 MiB (bench/testdata/flood.yaml):
// 200 distinct 1 MiB modules each, at concurrency 8, twice the quota. It
// reports what was stored and refused, and the node's data directory and
// resident memory before, at the end of the flood, and after each tenant
// deleted its modules: what one tenant can make a node hold is its quota,
// not what it sends. LEASH_BENCH_HEAP=FILE saves the node's heap profile
// at the end of the flood and logs its memory metrics.
func BenchmarkUploadFlood(b *testing.B) {
	n := nodetest.Start(b, nodetest.Options{Policy: filepath.Join(nodetest.RepoRoot(), "bench", "testdata", "flood.yaml"),
		Args: []string{"--slots", "8", "--log-level", "warn"}})
	minimal := loadGuest(b, "minimal")
	tokens := map[string]string{}
	for _, t := range []string{"a", "b"} {
		var l api.Lease
		n.JSON("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: t, Intent: "quick"}, 201, &l)
		tokens[t] = l.Token
	}
	disk0, rss0 := dirBytes(b, n.DataDir), rssBytes(b, n.PID())
	const perTenant, size = 200, 1 << 20
	var stored, refused, other atomic.Int64
	var digests [2][]string
	digestCh := make(chan [2]string, 2*perTenant)
	b.ResetTimer()
	start := time.Now()
	Load(2*perTenant, 8, func(i int) error {
		tenant := []string{"a", "b"}[i%2]
		mod := withPadding(minimal, size, i)
		req, _ := http.NewRequest("PUT", n.URL()+"/v1/modules", bytes.NewReader(mod))
		req.Header.Set("Authorization", "Bearer "+tokens[tenant])
		req.Header.Set("Content-Type", "application/wasm")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		switch {
		case resp.StatusCode == 201:
			stored.Add(1)
			var ref api.ModuleRef
			_ = json.Unmarshal(body, &ref)
			digestCh <- [2]string{tenant, ref.Digest}
		case resp.StatusCode == 413 && strings.Contains(string(body), "module_quota_exceeded"):
			refused.Add(1)
		default:
			other.Add(1)
		}
		return nil
	})
	elapsed := time.Since(start)
	b.StopTimer()
	close(digestCh)
	for d := range digestCh {
		i := 0
		if d[0] == "b" {
			i = 1
		}
		digests[i] = append(digests[i], d[1])
	}
	disk1, rss1 := dirBytes(b, n.DataDir), rssBytes(b, n.PID())
	if path := os.Getenv("LEASH_BENCH_HEAP"); path != "" {
		_, prof := n.Do("GET", "/debug/pprof/heap", n.Token, nil)
		_ = os.WriteFile(path, prof, 0o644)
		_, m := n.Do("GET", "/metrics", n.Token, nil)
		for _, line := range strings.Split(string(m), "\n") {
			if strings.HasPrefix(line, "go_memstats_heap") || strings.HasPrefix(line, "process_resident") || strings.HasPrefix(line, "go_memstats_sys") {
				b.Log(line)
			}
		}
	}
	for i, t := range []string{"a", "b"} {
		for _, d := range digests[i] {
			if st, body := n.Do("DELETE", "/v1/modules/"+d, tokens[t], nil); st != 204 {
				b.Fatalf("delete %s: %d %s", d, st, body)
			}
		}
	}
	time.Sleep(2 * time.Second) // let Pebble flush and compact what the deletes freed
	disk2, rss2 := dirBytes(b, n.DataDir), rssBytes(b, n.PID())
	if other.Load() > 0 {
		b.Fatalf("%d uploads answered neither 201 nor 413 module_quota_exceeded", other.Load())
	}
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	b.ReportMetric(float64(stored.Load()), "stored")
	b.ReportMetric(float64(refused.Load()), "refused")
	b.ReportMetric(float64(2*perTenant)/elapsed.Seconds(), "uploads/s")
	b.ReportMetric(mib(disk0), "disk0_MiB")
	b.ReportMetric(mib(disk1), "disk_flood_MiB")
	b.ReportMetric(mib(disk2), "disk_deleted_MiB")
	b.ReportMetric(mib(rss0), "rss0_MiB")
	b.ReportMetric(mib(rss1), "rss_flood_MiB")
	b.ReportMetric(mib(rss2), "rss_deleted_MiB")
}

// withPadding makes the i-th distinct module of about size bytes from a
// valid one: a custom section (ignored by the compiler) of random bytes.
func withPadding(wasm []byte, size, i int) []byte {
	pad := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{byte(i), byte(i >> 8)}).Read(pad) // incompressible, distinct
	return nodetest.WithCustomSection(wasm, pad)
}

func dirBytes(b *testing.B, dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

func rssBytes(b *testing.B, pid int) int64 {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(s), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
