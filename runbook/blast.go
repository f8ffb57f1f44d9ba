package runbook

// The blast radius (docs/runbook.md): which tasks, tenants, leases,
// profiles, modules and destinations a destination, tenant, profile,
// module, policy digest, lease or time window touches, from the ledger's
// receipts. The index (index.go) is fed as receipts are applied (Offer)
// and rebuilt from the log at start (Run); a query reads only the
// receipts it matches, and verifies each one's signature and inclusion
// in a signed checkpoint before it counts.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/ledger"
)

// Ledger is how the blast radius opens the ledger and gets a checkpoint
// to verify inclusion against (package audit's Reader).
type Ledger interface {
	View() (*consensus.Ledger, error)
	SignedCheckpoint(v *consensus.Ledger, atLeast int64) ([]byte, error)
}

// Blast is the blast-radius index and its query.
type Blast struct {
	ledger  Ledger
	log     *slog.Logger
	x       *Index
	ver     *verifier
	in      chan blastBatch
	dropped atomic.Int64
	built   atomic.Bool
}

// BlastConfig configures NewBlast.
type BlastConfig struct {
	Ledger Ledger
	// DB keeps the verifier's watermark (verified.go) across restarts;
	// nil: it starts over at each start.
	DB *pebble.DB
	// VerifyShare bounds the share of one core the verifier takes ahead
	// of the queries (DefaultVerifyShare is the node's default; 1 or
	// more: no bound; 0 or less: no verifier, queries check every
	// signature).
	VerifyShare float64
	// Busy reports that the node is running or queueing tasks; the
	// verifier then waits, so that the task path does not pay for it
	// and it catches up when the node is idle (nil: never busy).
	Busy func() bool
	Log  *slog.Logger
}

// NewBlast returns the blast radius; Run builds its index and runs its
// verifier.
func NewBlast(c BlastConfig) *Blast {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	b := &Blast{ledger: c.Ledger, log: c.Log, x: New(), in: make(chan blastBatch, 1024), ver: newVerifier(c.DB, c.VerifyShare, c.Log)}
	b.ver.busy = c.Busy
	return b
}

// Handlers is the blast-radius route, by operation name of
// httpapi.Table.
func (b *Blast) Handlers() map[string]httpapi.HandlerFunc {
	return map[string]httpapi.HandlerFunc{"blastRadius": b.blastRadius}
}

// MaxBlastReceipts bounds the receipts one query verifies.
const MaxBlastReceipts = 50000

// maxBlastTasks bounds the tasks a query's answer lists.
const maxBlastTasks = 1000

type blastBatch struct {
	receipts []*ledger.Receipt // nil: a governance entry
	idx      []int64
}

// Offer hands an applied batch, with its receipts as the FSM decoded
// them, to the indexer without blocking the FSM; a dropped batch makes
// the indexer read the log again.
func (b *Blast) Offer(c *consensus.AppendReceipts, res *consensus.AppendResult) {
	if len(c.Envelopes) != len(res.Indexes) {
		return
	}
	if len(res.Receipts) != len(res.Indexes) {
		b.dropped.Add(1) // not decoded here: the indexer reads the log again
		return
	}
	select {
	case b.in <- blastBatch{receipts: res.Receipts, idx: res.Indexes}:
	default:
		b.dropped.Add(1)
	}
}

func (b *Blast) add(idx int64, rec []byte) {
	env, err := ledger.DecodeEnvelope(rec)
	if err != nil || env.PayloadType != ledger.PayloadType {
		return // governance entries name no task
	}
	// Only what the index keeps is decoded (the rebuild at start decodes
	// every receipt of the log): ledger.Receipt's names for those fields.
	var r struct {
		LeaseID      string    `json:"lease_id"`
		Tenant       string    `json:"tenant"`
		Profile      string    `json:"profile"`
		PolicyDigest string    `json:"policy_digest"`
		ModuleDigest string    `json:"module_digest"`
		Destinations []string  `json:"destinations"`
		End          time.Time `json:"end"`
	}
	if json.Unmarshal(env.Payload, &r) == nil {
		b.x.Add(idx, &ledger.Receipt{LeaseID: r.LeaseID, Tenant: r.Tenant, Profile: r.Profile, PolicyDigest: r.PolicyDigest,
			ModuleDigest: r.ModuleDigest, Destinations: r.Destinations, End: r.End})
	}
}

// Run builds the index from the log, then follows applied batches until
// ctx ends; the verifier runs beside it.
func (b *Blast) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if b.ver.share > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.ver.run(ctx, b.ledger)
		}()
	}
	rebuild := func() {
		start := time.Now()
		v, err := b.ledger.View()
		if err != nil {
			return
		}
		defer v.Close()
		size, err := v.Log.Size(v.Reader)
		if err != nil {
			return
		}
		// One reader walks the log; every core decodes and indexes.
		type chunk struct {
			first int64
			recs  [][]byte
		}
		chunks := make(chan chunk, 4)
		var wg sync.WaitGroup
		for range runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for c := range chunks {
					for i, rec := range c.recs {
						if rec != nil {
							b.add(c.first+int64(i), rec)
						}
					}
				}
			}()
		}
		const per = 512
		recs, err := v.SeekReader() // the records in order: one iterator steps through them
		if err != nil {
			close(chunks)
			wg.Wait()
			return
		}
		for i := int64(0); i < size && ctx.Err() == nil; i += per {
			c := chunk{first: i, recs: make([][]byte, 0, per)}
			for j := i; j < min(i+per, size); j++ {
				rec, _ := v.Log.RecordAt(recs, j) // a record that cannot be read names no task
				c.recs = append(c.recs, rec)
			}
			chunks <- c
		}
		recs.Close()
		close(chunks)
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		b.built.Store(true)
		b.log.Info("blast-radius index built", "records", size, "receipts", b.x.Len(), "ms", time.Since(start).Milliseconds())
	}
	rebuild()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case bb := <-b.in:
			for i, r := range bb.receipts {
				if r != nil {
					b.x.Add(bb.idx[i], r)
				}
			}
		case <-t.C:
			if b.dropped.Swap(0) > 0 || !b.built.Load() {
				rebuild()
			}
		}
	}
}

// blastRadius: GET /v1/runbook/blast-radius.
func (b *Blast) blastRadius(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		if !slices.Contains([]string{"destination", "tenant", "profile", "module", "policy_digest", "lease", "since", "until", "format"}, k) {
			return api.BadRequest(api.CodeBadRequest, "unknown parameter %q", httpapi.Clip(k, 64))
		}
	}
	f := Filter{Destination: q.Get("destination"), Tenant: q.Get("tenant"), Profile: q.Get("profile"), Module: q.Get("module"),
		PolicyDigest: q.Get("policy_digest"), Lease: q.Get("lease")}
	for _, s := range []string{f.Destination, f.Tenant, f.Profile, f.Module, f.PolicyDigest, f.Lease} {
		if len(s) > 256 {
			return api.BadRequest(api.CodeBadRequest, "a filter is at most 256 bytes")
		}
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if s := q.Get(name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return api.BadRequest(api.CodeBadRequest, "%s is not RFC 3339", name)
			}
			*dst = t
		}
	}
	if (f == Filter{}) {
		return api.BadRequest(api.CodeBadRequest, "name a destination, tenant, profile, module, policy_digest, lease or time window")
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "dot" {
		return api.BadRequest(api.CodeBadRequest, "format is json or dot")
	}
	if !b.built.Load() {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: "the blast-radius index is being built", RetryAfter: 1}
	}
	start := time.Now()
	matched := b.x.Match(f)
	if len(matched) > MaxBlastReceipts {
		return api.BadRequest(api.CodeBadRequest, "%d receipts match, more than the %d one query verifies: narrow the filter", len(matched), MaxBlastReceipts)
	}
	v, err := b.ledger.View()
	if err != nil {
		return err
	}
	defer v.Close()
	size, err := v.Log.Size(v.Reader)
	if err != nil {
		return err
	}
	note, err := b.ledger.SignedCheckpoint(v, size)
	if err != nil {
		return err
	}
	sc, err := ledger.VerifyCheckpoint(note, v.Keys, 1)
	if err != nil {
		return err
	}
	out := api.BlastRadius{Checkpoint: sc.Checkpoint.Size, Tasks: []api.BlastTask{}, Tenants: map[string]int{}, Leases: map[string]int{},
		Profiles: map[string]int{}, Modules: map[string]int{}, Destinations: map[string]int{}, Graph: []api.BlastEdge{}}
	// An edge is kept by its kind (0 tenant → profile, 1 profile →
	// module, 2 module → destination) and its two names; the labels are
	// written once per edge, not once per receipt.
	type edge struct {
		kind     uint8
		from, to string
	}
	edges := map[edge]int{}
	below := matched
	for len(below) > 0 && below[len(below)-1] >= sc.Checkpoint.Size {
		below = below[:len(below)-1]
	}
	out.Pending = len(matched) - len(below)
	ahead := b.ahead(v, v.Log.HashReader(v.Reader), sc.Checkpoint)
	receipts, err := verifyReceipts(r.Context(), v, sc.Checkpoint, below, ahead)
	if err != nil {
		return err
	}
	for _, idx := range below {
		if ahead.has(idx) {
			out.VerifiedAhead++
		}
	}
	for i, idx := range below {
		rc := receipts[i]
		out.Verified++
		out.Tenants[rc.Tenant]++
		out.Leases[rc.LeaseID]++
		out.Profiles[rc.Profile]++
		out.Modules[rc.ModuleDigest]++
		out.EgressBytesOut += rc.EgressBytesOut
		out.EgressBytesIn += rc.EgressBytesIn
		blocked := 0
		for _, ba := range rc.BlockedAttempts {
			blocked += ba.Count
		}
		out.Blocked += blocked
		edges[edge{0, rc.Tenant, rc.Profile}]++
		edges[edge{1, rc.Profile, rc.ModuleDigest}]++
		for _, d := range rc.Destinations {
			out.Destinations[d]++
			edges[edge{2, rc.ModuleDigest, d}]++
		}
		if len(out.Tasks) < maxBlastTasks {
			out.Tasks = append(out.Tasks, api.BlastTask{Index: idx, TaskID: rc.TaskID, Tenant: rc.Tenant, Lease: rc.LeaseID, Profile: rc.Profile,
				Module: rc.ModuleDigest, Outcome: rc.Outcome, Start: rc.Start, End: rc.End, Destinations: rc.Destinations,
				EgressBytesOut: rc.EgressBytesOut, EgressBytesIn: rc.EgressBytesIn, Blocked: blocked})
		}
	}
	sort.Slice(out.Tasks, func(i, j int) bool { return out.Tasks[i].End.Before(out.Tasks[j].End) })
	labels := [3][2]string{{"tenant:", "profile:"}, {"profile:", "module:"}, {"module:", "destination:"}}
	for e, k := range edges {
		out.Graph = append(out.Graph, api.BlastEdge{From: labels[e.kind][0] + e.from, To: labels[e.kind][1] + e.to, Count: k})
	}
	sort.Slice(out.Graph, func(i, j int) bool {
		return out.Graph[i].From+"\x00"+out.Graph[i].To < out.Graph[j].From+"\x00"+out.Graph[j].To
	})
	out.Matched = len(matched)
	out.Ms = time.Since(start).Milliseconds()
	b.log.Info("blast radius", "filter", fmt.Sprintf("%+v", f), "matched", out.Matched, "verified", out.Verified, "verified_ahead", out.VerifiedAhead, "pending", out.Pending,
		"ms", out.Ms, "by", httpapi.CallerOf(r.Context()).Name())
	if format == "dot" {
		w.Header().Set("Content-Type", "text/vnd.graphviz; charset=utf-8")
		_, err := w.Write([]byte(blastDOT(out.Graph)))
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// checkedAhead is what the verifier vouches for in one query: the
// receipts below `below` but those in failed have verified signatures
// (verified.go).
type checkedAhead struct {
	below  int64
	failed map[int64]bool
}

func (c checkedAhead) has(idx int64) bool { return idx < c.below && !c.failed[idx] }

// ahead is what the verifier vouches for, checked against cp.
func (b *Blast) ahead(v *consensus.Ledger, hr tlog.HashReader, cp ledger.Checkpoint) checkedAhead {
	below, failed := b.ver.trusted(v, hr, cp)
	return checkedAhead{below: below, failed: failed}
}

// verifyReceipts reads the records at the indexes given (all below the
// checkpoint), checks each one's inclusion in the checkpoint's tree and,
// unless ahead vouches for it, its signature with the ledger's keys, on
// every core, and returns the receipts in the same order. Each worker
// reads through its own iterators of the view (consensus.SeekReader: the
// indexes are ascending, so its reads mostly step forward), and the
// proofs share the hashes of the tree's upper levels (upperHashes).
func verifyReceipts(ctx context.Context, v *consensus.Ledger, cp ledger.Checkpoint, indexes []int64, ahead checkedAhead) ([]*ledger.Receipt, error) {
	out := make([]*ledger.Receipt, len(indexes))
	upper := newUpperHashes()
	var next atomic.Int64
	var once sync.Once
	var first error
	fail := func(err error) { once.Do(func() { first = err }) }
	var failed atomic.Bool
	workers := min(runtime.GOMAXPROCS(0), max(1, len(indexes)/64))
	// Each worker takes a run of indexes at a time, so that its reads
	// stay ascending.
	const run = 64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs, hashes, done, err := seekReaders(v)
			if err != nil {
				fail(err)
				failed.Store(true)
				return
			}
			defer done()
			hr := upper.reader(v.Log.HashReader(hashes))
			for !failed.Load() {
				from := next.Add(run) - run
				if from >= int64(len(indexes)) {
					return
				}
				if ctx.Err() != nil {
					fail(ctx.Err())
					failed.Store(true)
					return
				}
				for i := from; i < min(from+run, int64(len(indexes))); i++ {
					rc, err := verifyRecord(v, recs, hr, cp, indexes[i], ahead.has(indexes[i]))
					if err != nil {
						fail(err)
						failed.Store(true)
						return
					}
					out[i] = rc
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return out, nil
}

// seekReaders opens two iterators of the view, one for records and one
// for hashes (a chunk's reads of each then step forward); done closes
// both.
func seekReaders(v *consensus.Ledger) (recs, hashes *consensus.SeekReader, done func(), err error) {
	if recs, err = v.SeekReader(); err != nil {
		return nil, nil, nil, err
	}
	if hashes, err = v.SeekReader(); err != nil {
		recs.Close()
		return nil, nil, nil, err
	}
	return recs, hashes, func() { recs.Close(); hashes.Close() }, nil
}

// verifyRecord is one receipt's check: read (through recs), inclusion
// (hashes through hr), and the signature unless signed (the verifier
// checked the record the inclusion proves this is).
func verifyRecord(v *consensus.Ledger, recs ledger.Reader, hr tlog.HashReader, cp ledger.Checkpoint, idx int64, signed bool) (*ledger.Receipt, error) {
	if idx >= cp.Size {
		return nil, fmt.Errorf("record %d is past the checkpoint of size %d", idx, cp.Size)
	}
	rec, err := v.Log.RecordAt(recs, idx)
	if err != nil {
		return nil, err
	}
	env, err := ledger.DecodeEnvelope(rec)
	if err != nil {
		return nil, fmt.Errorf("record %d: %w", idx, err)
	}
	var rc *ledger.Receipt
	if signed {
		rc = new(ledger.Receipt)
		if env.PayloadType != ledger.PayloadType {
			return nil, fmt.Errorf("record %d is not a receipt", idx)
		}
		if err := json.Unmarshal(env.Payload, rc); err != nil {
			return nil, fmt.Errorf("record %d: %w", idx, err)
		}
	} else if rc, err = ledger.VerifyEnvelope(env, v.Keys); err != nil {
		return nil, fmt.Errorf("record %d does not verify: %w", idx, err)
	}
	proof, err := tlog.ProveRecord(cp.Size, idx, hr)
	if err != nil {
		return nil, fmt.Errorf("record %d: inclusion proof: %w", idx, err)
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Root, idx, tlog.RecordHash(rec)); err != nil {
		return nil, fmt.Errorf("record %d is not included in the checkpoint: %w", idx, err)
	}
	return rc, nil
}

// upperLevel is the lowest tree level whose stored hashes one query
// keeps: a hash at level 4 or above covers 16 records or more, so the
// proofs of a query's receipts share it (each proof reads one hash a
// level), and a log of n records has fewer than n/8 of them (a query
// over a million records keeps at most 125,000, about 8 MB).
const upperLevel = 4

// upperHashes remembers the stored hashes of the tree's upper levels one
// query has read (safe for concurrent use); each worker reads every
// other hash through its own reader (reader).
type upperHashes struct {
	mu sync.Mutex
	m  map[int64]tlog.Hash
}

func newUpperHashes() *upperHashes { return &upperHashes{m: map[int64]tlog.Hash{}} }

// reader is a tlog.HashReader over hr and the shared upper hashes.
func (u *upperHashes) reader(hr tlog.HashReader) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) { return u.read(hr, indexes) })
}

func (u *upperHashes) read(hr tlog.HashReader, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var miss []int64
	var at []int
	u.mu.Lock()
	for i, x := range indexes {
		if h, ok := u.m[x]; ok {
			out[i] = h
			continue
		}
		miss, at = append(miss, x), append(at, i)
	}
	u.mu.Unlock()
	if len(miss) == 0 {
		return out, nil
	}
	// Read in ascending order (a seek reader then steps forward).
	order := make([]int, len(miss))
	for k := range order {
		order[k] = k
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(miss[a], miss[b]) })
	sorted := make([]int64, len(miss))
	for k, o := range order {
		sorted[k] = miss[o]
	}
	hs, err := hr.ReadHashes(sorted)
	if err != nil {
		return nil, err
	}
	if len(hs) != len(sorted) {
		return nil, fmt.Errorf("ledger: read %d hashes, got %d", len(sorted), len(hs))
	}
	u.mu.Lock()
	for k, o := range order {
		x := miss[o]
		out[at[o]] = hs[k]
		if level, _ := tlog.SplitStoredHashIndex(x); level >= upperLevel {
			u.m[x] = hs[k]
		}
	}
	u.mu.Unlock()
	return out, nil
}

// blastDOT draws the graph tenant → profile → module → destination.
func blastDOT(edges []api.BlastEdge) string {
	var b strings.Builder
	b.WriteString("digraph blast_radius {\n  rankdir=LR;\n")
	for _, e := range edges {
		fmt.Fprintf(&b, "  %q -> %q [label=%q];\n", e.From, e.To, fmt.Sprint(e.Count))
	}
	b.WriteString("}\n")
	return b.String()
}
