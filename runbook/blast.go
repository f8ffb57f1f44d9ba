package runbook

// The blast radius (docs/runbook.md): which tasks, tenants, leases,
// profiles, modules and destinations a destination, tenant, profile,
// module, policy digest, lease or time window touches, from the ledger's
// receipts. The index (index.go) is fed as receipts are applied (Offer)
// and rebuilt from the log at start (Run); a query reads only the
// receipts it matches, and verifies each one's signature and inclusion
// in a signed checkpoint before it counts.

import (
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
	in      chan blastBatch
	dropped atomic.Int64
	built   atomic.Bool
}

// NewBlast returns the blast radius over l; Run builds its index.
func NewBlast(l Ledger, log *slog.Logger) *Blast {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Blast{ledger: l, log: log, x: New(), in: make(chan blastBatch, 1024)}
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
	envs [][]byte
	idx  []int64
}

// Offer hands an applied batch to the indexer without blocking the FSM;
// a dropped batch makes the indexer read the log again.
func (b *Blast) Offer(c *consensus.AppendReceipts, res *consensus.AppendResult) {
	if len(c.Envelopes) != len(res.Indexes) {
		return
	}
	select {
	case b.in <- blastBatch{envs: c.Envelopes, idx: res.Indexes}:
	default:
		b.dropped.Add(1)
	}
}

func (b *Blast) add(idx int64, rec []byte) {
	env, err := ledger.DecodeEnvelope(rec)
	if err != nil || env.PayloadType != ledger.PayloadType {
		return // governance entries name no task
	}
	var r ledger.Receipt
	if json.Unmarshal(env.Payload, &r) == nil {
		b.x.Add(idx, &r)
	}
}

// Run builds the index from the log, then follows applied batches until
// ctx ends.
func (b *Blast) Run(ctx context.Context) {
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
		for i := int64(0); i < size && ctx.Err() == nil; i += per {
			c := chunk{first: i, recs: make([][]byte, 0, per)}
			for j := i; j < min(i+per, size); j++ {
				rec, _ := v.Log.Record(v.Reader, j) // a record that cannot be read names no task
				c.recs = append(c.recs, rec)
			}
			chunks <- c
		}
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
			for i, e := range bb.envs {
				b.add(bb.idx[i], e)
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
	edges := map[[3]string]int{}
	below := matched
	for len(below) > 0 && below[len(below)-1] >= sc.Checkpoint.Size {
		below = below[:len(below)-1]
	}
	out.Pending = len(matched) - len(below)
	receipts, err := verifyReceipts(r.Context(), v, sc.Checkpoint, below)
	if err != nil {
		return err
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
		edges[[3]string{"tenant:" + rc.Tenant, "profile:" + rc.Profile, ""}]++
		edges[[3]string{"profile:" + rc.Profile, "module:" + rc.ModuleDigest, ""}]++
		for _, d := range rc.Destinations {
			out.Destinations[d]++
			edges[[3]string{"module:" + rc.ModuleDigest, "destination:" + d, ""}]++
		}
		if len(out.Tasks) < maxBlastTasks {
			out.Tasks = append(out.Tasks, api.BlastTask{Index: idx, TaskID: rc.TaskID, Tenant: rc.Tenant, Lease: rc.LeaseID, Profile: rc.Profile,
				Module: rc.ModuleDigest, Outcome: rc.Outcome, Start: rc.Start, End: rc.End, Destinations: rc.Destinations,
				EgressBytesOut: rc.EgressBytesOut, EgressBytesIn: rc.EgressBytesIn, Blocked: blocked})
		}
	}
	sort.Slice(out.Tasks, func(i, j int) bool { return out.Tasks[i].End.Before(out.Tasks[j].End) })
	for e, k := range edges {
		out.Graph = append(out.Graph, api.BlastEdge{From: e[0], To: e[1], Count: k})
	}
	sort.Slice(out.Graph, func(i, j int) bool {
		return out.Graph[i].From+"\x00"+out.Graph[i].To < out.Graph[j].From+"\x00"+out.Graph[j].To
	})
	out.Matched = len(matched)
	out.Ms = time.Since(start).Milliseconds()
	b.log.Info("blast radius", "filter", fmt.Sprintf("%+v", f), "matched", out.Matched, "verified", out.Verified, "pending", out.Pending,
		"ms", out.Ms, "by", httpapi.CallerOf(r.Context()).Name())
	if format == "dot" {
		w.Header().Set("Content-Type", "text/vnd.graphviz; charset=utf-8")
		_, err := w.Write([]byte(blastDOT(out.Graph)))
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// verifyReceipts reads the records at the indexes given (all below the
// checkpoint), checks each one's signature with the ledger's keys and its
// inclusion in the checkpoint's tree, on every core, and returns the
// receipts in the same order. The proofs share one reader of the tree's
// upper levels (every proof of a query climbs the same few hashes there).
func verifyReceipts(ctx context.Context, v *consensus.Ledger, cp ledger.Checkpoint, indexes []int64) ([]*ledger.Receipt, error) {
	out := make([]*ledger.Receipt, len(indexes))
	hr := newUpperHashes(v.Log.HashReader(v.Reader))
	var next atomic.Int64
	var once sync.Once
	var first error
	fail := func(err error) { once.Do(func() { first = err }) }
	var failed atomic.Bool
	workers := min(runtime.GOMAXPROCS(0), max(1, len(indexes)/64))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= int64(len(indexes)) {
					return
				}
				if i%256 == 0 && ctx.Err() != nil {
					fail(ctx.Err())
					failed.Store(true)
					return
				}
				rc, err := verifyRecord(v, hr, cp, indexes[i])
				if err != nil {
					fail(err)
					failed.Store(true)
					return
				}
				out[i] = rc
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return out, nil
}

// verifyRecord is one receipt's check: read, signature, inclusion.
func verifyRecord(v *consensus.Ledger, hr tlog.HashReader, cp ledger.Checkpoint, idx int64) (*ledger.Receipt, error) {
	rec, err := v.Log.Record(v.Reader, idx)
	if err != nil {
		return nil, err
	}
	env, err := ledger.DecodeEnvelope(rec)
	if err != nil {
		return nil, fmt.Errorf("record %d: %w", idx, err)
	}
	rc, err := ledger.VerifyEnvelope(env, v.Keys)
	if err != nil {
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

// upperHashes is a tlog.HashReader that remembers the stored hashes of
// the tree's upper levels it has read (one query's; safe for concurrent
// use) and reads every other hash through.
type upperHashes struct {
	hr tlog.HashReader
	mu sync.Mutex
	m  map[int64]tlog.Hash
}

func newUpperHashes(hr tlog.HashReader) *upperHashes {
	return &upperHashes{hr: hr, m: map[int64]tlog.Hash{}}
}

func (u *upperHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
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
	hs, err := u.hr.ReadHashes(miss)
	if err != nil {
		return nil, err
	}
	if len(hs) != len(miss) {
		return nil, fmt.Errorf("ledger: read %d hashes, got %d", len(miss), len(hs))
	}
	u.mu.Lock()
	for k, x := range miss {
		out[at[k]] = hs[k]
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
