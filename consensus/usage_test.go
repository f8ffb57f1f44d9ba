package consensus

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/policy"
)

// usageFSM is an FSM with the built-in bundle in prod (demo: 3,600,000
// CPU ms and 100,000 tasks a day).
type usageFSM struct {
	t   testing.TB
	f   *FSM
	idx uint64
}

func newUsageFSM(t testing.TB) *usageFSM {
	u := &usageFSM{t: t, f: NewFSM(newStateDB(t), nil)}
	u.must(&PutPolicy{Canonical: policy.Default().Canonical(), Env: "prod", By: "test", At: qt0})
	return u
}

func (u *usageFSM) apply(c Command) *Result {
	u.t.Helper()
	b, err := Encode(c)
	if err != nil {
		u.t.Fatal(err)
	}
	u.idx++
	return u.f.Apply(&raft.Log{Index: u.idx, Term: 1, Type: raft.LogCommand, Data: b}).(*Result)
}

func (u *usageFSM) must(c Command) *UsageApplied {
	u.t.Helper()
	r := u.apply(c)
	if r.Code != "" {
		u.t.Fatalf("%s refused: %s %s", c.Op(), r.Code, r.Message)
	}
	v, _ := r.Value.(*UsageApplied)
	return v
}

func delta(tenant, profile, day string, u UsageCounters) UsageDelta {
	return UsageDelta{Tenant: tenant, Profile: profile, Day: day, Usage: u}
}

func levels(cs []Crossing) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Day+" "+c.Dim+" "+c.Level)
	}
	return out
}

// TestUsageBatchIdempotent: a batch counts once per node and sequence,
// whichever way it arrives again; two nodes' batches add up.
func TestUsageBatchIdempotent(t *testing.T) {
	u := newUsageFSM(t)
	const day = "2026-12-02"
	b := &UsageBatch{Node: "n1", Seq: 1, Deltas: []UsageDelta{
		delta("demo", "docs-reader", day, UsageCounters{Tasks: 2, CPUMs: 100, MemoryPeakBytes: 10 << 20, EgressBytesOut: 5}),
		delta("demo", "api-caller", day, UsageCounters{Tasks: 1, CPUMs: 50, MemoryPeakBytes: 20 << 20}),
	}}
	if r := u.must(b); r.Duplicate {
		t.Fatal("first batch was a duplicate")
	}
	for _, seq := range []uint64{1, 1} { // retried, forwarded
		b.Seq = seq
		if r := u.must(b); !r.Duplicate {
			t.Fatalf("seq %d again: not a duplicate", seq)
		}
	}
	u.must(&UsageBatch{Node: "n2", Seq: 1, Deltas: []UsageDelta{delta("demo", "docs-reader", day, UsageCounters{Tasks: 1, CPUMs: 1, MemoryPeakBytes: 1})}})
	st := u.f.State()
	var rows []UsageRow
	if err := st.Usage("2026-11-01", day, "", func(r UsageRow) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Profile != "api-caller" || rows[1].Usage.Tasks != 3 || rows[1].Usage.CPUMs != 101 || rows[1].Usage.MemoryPeakBytes != 10<<20 {
		t.Fatalf("rows %+v", rows)
	}
	v, err := st.Budget("demo", day)
	if err != nil {
		t.Fatal(err)
	}
	if v.Used.Tasks != 4 || v.Used.CPUMs != 151 || v.Source != "bundle" || v.Limits.TasksPerDay != 100000 {
		t.Fatalf("budget %+v", v)
	}
	if seq, _ := st.UsageSeq("n1"); seq != 1 {
		t.Fatalf("n1 seq %d", seq)
	}
}

// TestUsageCrossingsOncePerDay: 70% warns once, 100% exhausts once, for
// each dimension and day, whichever batch crosses; a new day starts
// afresh (the day rolls over with the deltas' days, not a clock).
func TestUsageCrossingsOncePerDay(t *testing.T) {
	u := newUsageFSM(t)
	const d1, d2 = "2026-12-02", "2026-12-03"
	seq := uint64(0)
	send := func(node, day string, tasks int64) []string {
		seq++
		return levels(u.must(&UsageBatch{Node: node, Seq: seq, Deltas: []UsageDelta{delta("demo", "docs-reader", day, UsageCounters{Tasks: tasks})}}).Crossings)
	}
	if got := send("n1", d1, 69_999); len(got) != 0 {
		t.Fatalf("below 70%%: %v", got)
	}
	if got := send("n2", d1, 1); !slices.Equal(got, []string{d1 + " tasks warning"}) {
		t.Fatalf("at 70%%: %v", got)
	}
	if got := send("n3", d1, 29_999); len(got) != 0 {
		t.Fatalf("between: %v", got)
	}
	if got := send("n1", d1, 1); !slices.Equal(got, []string{d1 + " tasks exhausted"}) {
		t.Fatalf("at 100%%: %v", got)
	}
	if got := send("n2", d1, 5); len(got) != 0 {
		t.Fatalf("over: %v", got)
	}
	v, _ := u.f.State().Budget("demo", d1)
	if !slices.Equal(v.Exhausted, []string{DimTasks}) || !slices.Equal(v.Warned, []string{DimTasks}) {
		t.Fatalf("day 1 %+v", v)
	}
	// The next day: nothing exhausted; one batch from 0 to past 100%
	// crosses both levels at once.
	if v, _ := u.f.State().Budget("demo", d2); len(v.Exhausted) != 0 {
		t.Fatalf("day 2 starts exhausted: %+v", v)
	}
	if got := send("n1", d2, 200_000); !slices.Equal(got, []string{d2 + " tasks warning", d2 + " tasks exhausted"}) {
		t.Fatalf("day 2: %v", got)
	}
}

// TestEnvelopeSetRaiseReset: an operator's envelope replaces the
// bundle's; a raise that lowers is refused; raising past the usage lifts
// the exhaustion; a reset returns to the bundle's budget and forgives the
// day's usage (the counters keep it).
func TestEnvelopeSetRaiseReset(t *testing.T) {
	u := newUsageFSM(t)
	const day = "2026-12-02"
	env := func(mode string, b policy.Budget) *SetEnvelope {
		return &SetEnvelope{Tenant: "demo", Mode: mode, Limits: b, Day: day, Node: "n1", By: "op", At: qt0}
	}
	u.must(&UsageBatch{Node: "n1", Seq: 1, Deltas: []UsageDelta{delta("demo", "docs-reader", day, UsageCounters{Tasks: 10, ToolCalls: 8})}})
	// Setting a lower envelope crosses at once.
	got := levels(u.must(env(EnvelopeSet, policy.Budget{ToolCallsPerDay: 10})).Crossings)
	if !slices.Equal(got, []string{day + " tool_calls warning"}) {
		t.Fatalf("set: %v", got)
	}
	got = levels(u.must(env(EnvelopeSet, policy.Budget{ToolCallsPerDay: 8})).Crossings)
	if !slices.Equal(got, []string{day + " tool_calls exhausted"}) {
		t.Fatalf("set lower: %v", got)
	}
	if r := u.apply(env(EnvelopeRaise, policy.Budget{ToolCallsPerDay: 6})); r.Code != CodeNotRaise {
		t.Fatalf("a lowering raise: %+v", r)
	}
	if r := u.apply(env(EnvelopeRaise, policy.Budget{ToolCallsPerDay: 20, CPUMsPerDay: 5})); r.Code != CodeNotRaise {
		t.Fatalf("a raise that limits an unlimited dimension: %+v", r)
	}
	u.must(env(EnvelopeRaise, policy.Budget{ToolCallsPerDay: 20}))
	v, _ := u.f.State().Budget("demo", day)
	if len(v.Exhausted) != 0 || v.Source != "override" {
		t.Fatalf("after raise %+v", v)
	}
	// Crossing the raised limit exhausts again, once.
	got = levels(u.must(&UsageBatch{Node: "n1", Seq: 2, Deltas: []UsageDelta{delta("demo", "docs-reader", day, UsageCounters{ToolCalls: 12})}}).Crossings)
	if !slices.Equal(got, []string{day + " tool_calls exhausted"}) {
		t.Fatalf("past the raise: %v", got)
	}
	u.must(env(EnvelopeReset, policy.Budget{}))
	v, _ = u.f.State().Budget("demo", day)
	if v.Source != "bundle" || v.Used.ToolCalls != 0 || v.Used.Tasks != 0 || len(v.Exhausted) != 0 || len(v.Warned) != 0 {
		t.Fatalf("after reset %+v", v)
	}
	var total int64
	_ = u.f.State().Usage(day, day, "demo", func(r UsageRow) error { total += r.Usage.ToolCalls; return nil })
	if total != 20 {
		t.Fatalf("the counters after a reset hold %d tool calls, want 20", total)
	}
	for name, c := range map[string]*SetEnvelope{
		"negative":     env(EnvelopeSet, policy.Budget{TasksPerDay: -1}),
		"huge":         env(EnvelopeSet, policy.Budget{TasksPerDay: math.MaxInt64}),
		"unknown mode": env("lower", policy.Budget{}),
		"reset limits": env(EnvelopeReset, policy.Budget{TasksPerDay: 1}),
		"bad day":      {Tenant: "demo", Mode: EnvelopeSet, Day: "2026-13-01", By: "op", At: 1},
	} {
		if r := u.apply(c); r.Code != CodeBadEnvelope {
			t.Errorf("%s: %+v", name, r)
		}
	}
}

// TestUsageBounds: counters saturate instead of overflowing; negative,
// oversized and malformed deltas are refused whole.
func TestUsageBounds(t *testing.T) {
	u := newUsageFSM(t)
	const day = "2026-12-02"
	// 9 × 1,024 × 2^50 is past 2^63.
	for i := range 9 {
		var ds []UsageDelta
		for range MaxUsageDeltas / 4 {
			ds = append(ds, delta("demo", "docs-reader", day, UsageCounters{CPUMs: MaxUsageDelta}))
		}
		u.must(&UsageBatch{Node: "n1", Seq: uint64(i + 1), Deltas: ds})
	}
	v, _ := u.f.State().Budget("demo", day)
	if v.Used.CPUMs != math.MaxInt64 {
		t.Fatalf("cpu %d, want saturated", v.Used.CPUMs)
	}
	for name, b := range map[string]*UsageBatch{
		"negative": {Node: "n1", Seq: 100, Deltas: []UsageDelta{delta("demo", "p", day, UsageCounters{Tasks: -1})}},
		"too big":  {Node: "n1", Seq: 100, Deltas: []UsageDelta{delta("demo", "p", day, UsageCounters{Tasks: MaxUsageDelta + 1})}},
		"bad day":  {Node: "n1", Seq: 100, Deltas: []UsageDelta{delta("demo", "p", "2026-02-30", UsageCounters{})}},
		"slash":    {Node: "n1", Seq: 100, Deltas: []UsageDelta{delta("de/mo", "p", day, UsageCounters{})}},
		"seq 0":    {Node: "n1", Seq: 0},
		"no node":  {Seq: 100},
		"too many": {Node: "n1", Seq: 100, Deltas: make([]UsageDelta, MaxUsageDeltas+1)},
	} {
		if r := u.apply(b); r.Code != CodeBadUsageBody {
			t.Errorf("%s: %+v", name, r)
		}
	}
	if seq, _ := u.f.State().UsageSeq("n1"); seq != 9 {
		t.Fatalf("a refused batch moved the sequence to %d", seq)
	}
}

// TestUsageStateFormat pins the bytes the usage commands leave in
// replicated state (as TestQueueStateFormat does for the queue).
func TestUsageStateFormat(t *testing.T) {
	u := newUsageFSM(t)
	const day = "2026-12-02"
	script := []Command{
		&UsageBatch{Node: "n1", Seq: 1, Deltas: []UsageDelta{delta("demo", "docs-reader", day, UsageCounters{Tasks: 1, CPUMs: 2, WallMs: 3, MemoryPeakBytes: 4, MemoryMiBs: 5, EgressBytesIn: 6, EgressBytesOut: 7, ToolCalls: 8, Blocked: 9, Subrequests: 10, TokensIn: 11, TokensOut: 12})}},
		&SetEnvelope{Tenant: "demo", Mode: EnvelopeSet, Limits: policy.Budget{TasksPerDay: 1, ToolCallsPerDay: 100}, Day: day, Node: "n1", By: "op", At: qt0},
		&UsageBatch{Node: "n2", Seq: 7, Deltas: []UsageDelta{delta("demo", "api-caller", day, UsageCounters{ToolCalls: 90})}},
		&SetEnvelope{Tenant: "demo", Mode: EnvelopeReset, Day: day, Node: "n1", By: "op", At: qt0 + 1},
	}
	h := sha256.New()
	keys := 0
	for _, c := range script {
		u.must(c)
		if err := scan(u.f.db, PrefixState+"usage/", func(k, v []byte) error {
			h.Write(k)
			h.Write([]byte{0})
			h.Write(v)
			h.Write([]byte{0})
			keys++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	const want = "0fa568a58a96abe5dccba838e7bc333489f6df46a9e1759239931f94937f8118"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("usage state along the script: %d keys, sha256 %s, want %s", keys, got, want)
	}
}

// FuzzDecodeUsageCommand: any bytes decode to a command or an error; a
// usage command that decodes applies or is refused without panicking,
// and no counter ever goes negative.
func FuzzDecodeUsageCommand(f *testing.F) {
	const day = "2026-12-02"
	for _, c := range []Command{
		&UsageBatch{Node: "n1", Seq: 1, Deltas: []UsageDelta{delta("demo", "docs-reader", day, UsageCounters{Tasks: 1, CPUMs: MaxUsageDelta})}},
		&SetEnvelope{Tenant: "demo", Mode: EnvelopeRaise, Limits: policy.Budget{TasksPerDay: 1 << 40}, Day: day, Node: "n1", By: "op", At: 1},
	} {
		b, err := Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	u := newUsageFSM(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		switch c.(type) {
		case *UsageBatch, *SetEnvelope:
		default:
			return
		}
		u.idx++
		u.f.Apply(&raft.Log{Index: u.idx, Term: 1, Type: raft.LogCommand, Data: b})
		if err := u.f.State().Usage("0000-01-01", "9999-12-31", "", func(r UsageRow) error {
			for _, p := range append(r.Usage.fields(), &r.Usage.MemoryPeakBytes) {
				if *p < 0 {
					t.Fatalf("negative counter in %+v", r)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}
