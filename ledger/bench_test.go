package ledger

import (
	"bufio"
	"crypto/ed25519"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

var exportRecords = flag.Int("ledger.export-records", 1_000_000, "records in the export BenchmarkVerifyExport verifies")

func BenchmarkAppend(b *testing.B) {
	c := newCluster(b, "a", "b", "c")
	pool := c.envelopes(b, 0, 4096, "a", "b", "c")
	for _, batch := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			l, s := newLog(b, nil, 1)
			next := 0
			cpu0 := processCPU()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if next+batch > len(pool) {
					next = 0
				}
				if _, _, _, err := l.Append(s, pool[next:next+batch]); err != nil {
					b.Fatal(err)
				}
				next += batch
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N*batch), "cpu-ns/record")
		})
	}
}

func BenchmarkSignReceipt(b *testing.B) {
	key := seededKey("bench")
	r := sampleReceipt(1, "a")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SignReceipt(key, "", r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEnvelope(b *testing.B) {
	c := newCluster(b, "a")
	raw := c.signed(b, 1, "a")
	b.ReportAllocs()
	for b.Loop() {
		env, err := DecodeEnvelope(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := VerifyEnvelope(env, c.keys); err != nil {
			b.Fatal(err)
		}
	}
}

// smallReceipt is a minimal valid receipt for the big export.
func smallReceipt(i int, node string) *Receipt {
	start := time.Unix(1_772_000_000, int64(i)*1000).UTC()
	return &Receipt{
		LeaseID: "l1", Tenant: "t", Profile: "p",
		PolicyDigest: "sha256:" + hexSum("p"),
		TaskID:       fmt.Sprintf("%d", i),
		NodeID:       node, Start: start, End: start,
		Outcome: "ok", Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Attempt: 1,
	}
}

// writeBigExport writes an export of n small receipts signed round-robin
// by the cluster's nodes, and returns its checkpoint signed by all.
func writeBigExport(b *testing.B, c *cluster, path string, n int) []byte {
	ids := []string{"a", "b", "c"}
	keys := map[string]ed25519.PrivateKey{}
	for _, id := range ids {
		keys[id] = c.nodes[id].receiptKey
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	const chunk = 4096
	workers := runtime.GOMAXPROCS(0)
	var tree treeBuilder
	for base := 0; base < n; base += chunk * workers {
		// Sign chunk*workers receipts in parallel, then write them in order.
		out := make([][]byte, workers)
		hashes := make([][]tlog.Hash, workers)
		var wg sync.WaitGroup
		for wi := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf []byte
				for i := base + wi*chunk; i < min(base+(wi+1)*chunk, n); i++ {
					node := ids[i%len(ids)]
					env, err := SignReceipt(keys[node], "", smallReceipt(i, node))
					if err != nil {
						panic(err)
					}
					canon, _ := env.Canonical()
					h := tlog.RecordHash(canon)
					hashes[wi] = append(hashes[wi], h)
					buf = appendExportLine(buf, int64(i), h, canon)
				}
				out[wi] = buf
			}()
		}
		wg.Wait()
		for wi := range workers {
			w.Write(out[wi])
			for _, h := range hashes[wi] {
				tree.add(h)
			}
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	cp := Checkpoint{Origin: testOrigin, Size: int64(n), Root: tree.root()}
	msg, err := SignCheckpoint(cp, c.nodes["a"].signer, c.nodes["b"].signer, c.nodes["c"].signer)
	if err != nil {
		b.Fatal(err)
	}
	return msg
}

// BenchmarkVerifyExport verifies an export of -ledger.export-records small
// receipts (default 1,000,000) against a checkpoint signed by three nodes.
// Generating the export is not timed. Run it with -benchtime 1x.
func BenchmarkVerifyExport(b *testing.B) {
	n := *exportRecords
	c := newCluster(b, "a", "b", "c")
	path := filepath.Join(b.TempDir(), "export.jsonl")
	start := time.Now()
	cp := writeBigExport(b, c, path, n)
	st, _ := os.Stat(path)
	b.Logf("generated %d records (%d MB) in %v", n, st.Size()>>20, time.Since(start).Round(time.Millisecond))
	b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
		cpu0 := processCPU()
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			res, err := VerifyExport(f, cp, c.keys, VerifyOptions{MinSignatures: 3})
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
			if res.Records != int64(n) {
				b.Fatalf("verified %d records", res.Records)
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/export")
		b.ReportMetric((processCPU()-cpu0).Seconds()/float64(b.N), "cpu-s/export")
	})
}
