package obs

import (
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// QueueSnapshot is what the scheduler and the bulk queue report when
// /metrics is scraped. Histograms are given as non-cumulative counts per
// upper bound (seconds), plus one count above the last bound.
type QueueSnapshot struct {
	// Depth is the bulk tasks in each state, cluster-wide.
	Depth map[string]int64
	// Classes are the node's slot scheduler counters per class.
	Classes map[string]ClassSnapshot
	// QueueWait is the bulk tasks' time from due to claimed, on this node.
	QueueWait Histogram
	// Counters of what this node did with bulk tasks.
	Retries, BudgetRefusals, ClaimExpiries uint64
}

// ClassSnapshot is one scheduler class on this node.
type ClassSnapshot struct {
	Running, Queued int
	Shed            int64 // refused (queue full) or timed out
	Wait            Histogram
}

// Histogram is a non-cumulative histogram: Counts[i] observations of at
// most Bounds[i] (and above Bounds[i-1]); Counts[len(Bounds)] above.
type Histogram struct {
	Bounds []float64
	Counts []int64
	Sum    float64
}

// SetQueueSource makes /metrics report the scheduler and bulk queue from
// f, called on each scrape.
func (m *Metrics) SetQueueSource(f func() QueueSnapshot) {
	if m == nil || f == nil {
		return
	}
	m.reg.MustRegister(&queueCollector{src: f})
}

var (
	descQueueDepth    = prometheus.NewDesc("leash_queue_depth", "Bulk tasks in each state, cluster-wide.", []string{"state"}, nil)
	descSlotsInUse    = prometheus.NewDesc("leash_slots_in_use", "Sandbox slots held, by class.", []string{"class"}, nil)
	descSlotQueue     = prometheus.NewDesc("leash_slot_queue_length", "Tasks waiting for a sandbox slot, by class.", []string{"class"}, nil)
	descSlotWait      = prometheus.NewDesc("leash_slot_wait_seconds", "Time a task waited for a sandbox slot, by class.", []string{"class"}, nil)
	descShed          = prometheus.NewDesc("leash_shed_total", "Tasks refused for want of a slot (queue_full, queue_timeout), by class.", []string{"class"}, nil)
	descBulkWait      = prometheus.NewDesc("leash_bulk_queue_wait_seconds", "Time a bulk task waited in the queue, from due to claimed.", nil, nil)
	descRetries       = prometheus.NewDesc("leash_task_retries_total", "Bulk task attempts this node scheduled again.", nil, nil)
	descBudgetRefused = prometheus.NewDesc("leash_retry_budget_refusals_total", "Retries refused by the retry budget.", nil, nil)
	descClaimExpiries = prometheus.NewDesc("leash_claim_expiries_total", "Bulk claims that expired (their node died or stalled).", nil, nil)
)

type queueCollector struct {
	src func() QueueSnapshot
	mu  sync.Mutex
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueDepth, descSlotsInUse, descSlotQueue, descSlotWait, descShed, descBulkWait, descRetries, descBudgetRefused, descClaimExpiries} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	s := c.src()
	c.mu.Unlock()
	for _, state := range sortedKeys(s.Depth) {
		ch <- prometheus.MustNewConstMetric(descQueueDepth, prometheus.GaugeValue, float64(s.Depth[state]), state)
	}
	for _, class := range sortedKeys(s.Classes) {
		cs := s.Classes[class]
		ch <- prometheus.MustNewConstMetric(descSlotsInUse, prometheus.GaugeValue, float64(cs.Running), class)
		ch <- prometheus.MustNewConstMetric(descSlotQueue, prometheus.GaugeValue, float64(cs.Queued), class)
		ch <- prometheus.MustNewConstMetric(descShed, prometheus.CounterValue, float64(cs.Shed), class)
		ch <- constHistogram(descSlotWait, cs.Wait, class)
	}
	ch <- constHistogram(descBulkWait, s.QueueWait)
	ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(s.Retries))
	ch <- prometheus.MustNewConstMetric(descBudgetRefused, prometheus.CounterValue, float64(s.BudgetRefusals))
	ch <- prometheus.MustNewConstMetric(descClaimExpiries, prometheus.CounterValue, float64(s.ClaimExpiries))
}

func constHistogram(d *prometheus.Desc, h Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			cum += uint64(max(h.Counts[i], 0))
		}
		buckets[b] = cum
	}
	if len(h.Counts) > len(h.Bounds) {
		cum += uint64(max(h.Counts[len(h.Bounds)], 0))
	}
	return prometheus.MustNewConstHistogram(d, cum, h.Sum, buckets, labels...)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
