// Package bench holds leash's benchmarks: go test -bench for the parts,
// and a load generator that drives real nodes end to end. Results are
// recorded in docs/BENCHMARKS.md; no test asserts a timing.
package bench

import (
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Latencies summarises a run.
type Latencies struct {
	N        int
	Errors   int64
	Elapsed  time.Duration
	P50, P99 time.Duration
	Max      time.Duration
}

// Rate is operations per second.
func (l Latencies) Rate() float64 { return float64(l.N) / l.Elapsed.Seconds() }

// Load runs op n times from c goroutines and measures each call.
func Load(n, c int, op func(i int) error) Latencies {
	lat := make([]time.Duration, n)
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					errs.Add(1)
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	return summarize(lat, time.Since(start), errs.Load())
}

func summarize(lat []time.Duration, elapsed time.Duration, errs int64) Latencies {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	return Latencies{N: len(lat), Errors: errs, Elapsed: elapsed, P50: q(0.50), P99: q(0.99), Max: q(1)}
}

// Report attaches a run's numbers to a benchmark.
func (l Latencies) Report(b *testing.B, unit string) {
	b.ReportMetric(l.Rate(), unit+"/s")
	b.ReportMetric(float64(l.P50.Microseconds()), "p50_µs")
	b.ReportMetric(float64(l.P99.Microseconds()), "p99_µs")
	if l.Errors > 0 {
		b.ReportMetric(float64(l.Errors), "errors")
	}
}
