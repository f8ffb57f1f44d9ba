// Usage counters and budget envelopes in replicated state: what every
// tenant used per capability profile and UTC day, the envelope that
// bounds a tenant's day, and the one-per-cluster decision that a tenant
// crossed 70% (warning) or 100% (exhausted) of a dimension.
//
// Nodes meter locally and send their deltas in batches keyed by node and
// sequence (package usage); a batch at or below the node's last applied
// sequence is a duplicate (a retried or forwarded proposal, a journal
// replayed after a crash) and changes nothing, so no delta counts twice.

package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/leash-dev/leash/policy"
)

// Keys of the usage area. Days are YYYY-MM-DD (fixed width), so a range
// of days is a range of keys.
const (
	prefixUsage       = PrefixState + "usage/c/"   // <day>/<tenant>/<profile> → UsageCounters
	prefixUsageTenant = PrefixState + "usage/t/"   // <day>/<tenant> → UsageCounters, the tenant's day over every profile
	prefixUsageSeq    = PrefixState + "usage/seq/" // <node> → 8-byte last applied batch sequence
	prefixUsageFlag   = PrefixState + "usage/f/"   // <day>/<tenant> → BudgetFlags
	prefixEnvelope    = PrefixState + "usage/e/"   // <tenant> → Envelope set at run time
)

// Bounds of the usage commands.
const (
	MaxUsageDeltas = 4096    // deltas in one batch
	MaxUsageDelta  = 1 << 50 // any one counter of one delta
	maxUsageName   = 128
	// MaxBudgetLimit bounds one dimension of an envelope.
	MaxBudgetLimit = 1 << 53
)

// Budget dimensions, as events and the API name them.
const (
	DimCPUMs       = "cpu_ms"
	DimEgressBytes = "egress_bytes"
	DimToolCalls   = "tool_calls"
	DimTasks       = "tasks"
)

// Dimensions lists the budget dimensions in a fixed order.
var Dimensions = []string{DimCPUMs, DimEgressBytes, DimToolCalls, DimTasks}

// WarnPercent is the share of a dimension at which the one warning of the
// day fires.
const WarnPercent = 70

// UsageCounters is what a tenant used under one profile on one day (or,
// under usage/t/, over every profile). Counters saturate at MaxInt64 and
// never go negative.
type UsageCounters struct {
	Tasks           int64 `msgpack:"tasks" json:"tasks"`
	CPUMs           int64 `msgpack:"cpu_ms" json:"cpu_ms"`
	WallMs          int64 `msgpack:"wall_ms" json:"wall_ms"`
	MemoryPeakBytes int64 `msgpack:"mem_peak" json:"memory_peak_bytes"` // the largest of the day
	MemoryMiBs      int64 `msgpack:"mem_mibs" json:"memory_mib_seconds"`
	EgressBytesIn   int64 `msgpack:"eg_in" json:"egress_bytes_in"`
	EgressBytesOut  int64 `msgpack:"eg_out" json:"egress_bytes_out"`
	ToolCalls       int64 `msgpack:"tools" json:"tool_calls"`
	Blocked         int64 `msgpack:"blocked" json:"blocked_calls"`
	Subrequests     int64 `msgpack:"subreq" json:"subrequests"`
	TokensIn        int64 `msgpack:"tok_in" json:"model_tokens_input"`
	TokensOut       int64 `msgpack:"tok_out" json:"model_tokens_output"`
}

// fields lists the counters that add up (all but the memory peak).
func (u *UsageCounters) fields() []*int64 {
	return []*int64{&u.Tasks, &u.CPUMs, &u.WallMs, &u.MemoryMiBs, &u.EgressBytesIn, &u.EgressBytesOut,
		&u.ToolCalls, &u.Blocked, &u.Subrequests, &u.TokensIn, &u.TokensOut}
}

// Add adds d to u, saturating.
func (u *UsageCounters) Add(d *UsageCounters) {
	a, b := u.fields(), d.fields()
	for i := range a {
		*a[i] = satAdd(*a[i], *b[i])
	}
	u.MemoryPeakBytes = max(u.MemoryPeakBytes, d.MemoryPeakBytes)
}

// Dim is the value of a budget dimension.
func (u *UsageCounters) Dim(dim string) int64 {
	switch dim {
	case DimCPUMs:
		return u.CPUMs
	case DimEgressBytes:
		return satAdd(u.EgressBytesIn, u.EgressBytesOut)
	case DimToolCalls:
		return u.ToolCalls
	case DimTasks:
		return u.Tasks
	}
	return 0
}

func satAdd(a, b int64) int64 {
	if a < 0 {
		a = 0
	}
	if b < 0 {
		b = 0
	}
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// UsageDelta is one node's metered usage of a tenant under a profile on a
// day, since its last batch.
type UsageDelta struct {
	Tenant  string        `msgpack:"t"`
	Profile string        `msgpack:"p"`
	Day     string        `msgpack:"d"`
	Usage   UsageCounters `msgpack:"u"`
}

// UsageBatch is a node's batch of deltas. Seq increases with every batch
// the node cuts; a batch at or below the node's last applied Seq is a
// duplicate and changes nothing.
type UsageBatch struct {
	Node   string       `msgpack:"node"`
	Seq    uint64       `msgpack:"seq"`
	Deltas []UsageDelta `msgpack:"deltas"`
}

// Envelope is a tenant's daily envelope as an operator set it at run
// time; it replaces the bundle's budget for the tenant until reset. A
// zero dimension is unlimited.
type Envelope struct {
	Limits policy.Budget `msgpack:"limits"`
	By     string        `msgpack:"by"`
	At     int64         `msgpack:"at"`
}

// Envelope modes.
const (
	EnvelopeSet   = "set"   // replace the envelope
	EnvelopeRaise = "raise" // replace it, refused if any dimension would go down
	EnvelopeReset = "reset" // back to the bundle's budget, with Day's usage forgiven
)

// SetEnvelope sets, raises or resets a tenant's envelope. Day is the UTC
// day the proposer is in: the day whose exhaustion a raise lifts and whose
// usage a reset forgives (for budgets only: the counters keep it, for
// chargeback).
type SetEnvelope struct {
	Tenant string        `msgpack:"tenant"`
	Mode   string        `msgpack:"mode"`
	Limits policy.Budget `msgpack:"limits"`
	Day    string        `msgpack:"day"`
	Node   string        `msgpack:"node"`
	By     string        `msgpack:"by"`
	At     int64         `msgpack:"at"`
}

func (UsageBatch) Op() Op  { return OpUsageBatch }
func (SetEnvelope) Op() Op { return OpSetEnvelope }

// BudgetFlags is a tenant's day in the budget decision: the dimensions it
// was warned of and exhausted (each once a day for the whole cluster),
// and the usage a reset forgave.
type BudgetFlags struct {
	Warned    []string      `msgpack:"warned"`
	Exhausted []string      `msgpack:"exhausted"`
	Forgiven  UsageCounters `msgpack:"forgiven"`
}

// Crossing is a decision of the applier: a tenant crossed a level of a
// dimension on a day, for the first time in the cluster.
type Crossing struct {
	Tenant string `msgpack:"tenant"`
	Day    string `msgpack:"day"`
	Dim    string `msgpack:"dim"`
	Level  string `msgpack:"level"` // warning or exhausted
	Used   int64  `msgpack:"used"`
	Limit  int64  `msgpack:"limit"`
}

// Crossing levels.
const (
	LevelWarning   = "warning"
	LevelExhausted = "exhausted"
)

// UsageApplied is what a batch or an envelope change did.
type UsageApplied struct {
	Duplicate bool       `msgpack:"duplicate"`
	Crossings []Crossing `msgpack:"crossings"`
}

// Refusal codes of the usage commands.
const (
	CodeBadEnvelope  = "invalid_envelope"
	CodeNotRaise     = "envelope_not_raised"
	CodeBadUsageBody = "invalid_usage_batch"
)

// ValidDay reports whether d is a UTC day written YYYY-MM-DD.
func ValidDay(d string) bool {
	if len(d) != 10 {
		return false
	}
	t, err := time.Parse(time.DateOnly, d)
	return err == nil && t.Format(time.DateOnly) == d
}

// Day is the UTC day of t.
func Day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

func validUsageName(s string) bool {
	return s != "" && len(s) <= maxUsageName && !strings.ContainsAny(s, "/\x00")
}

func validDelta(u *UsageCounters) bool {
	for _, p := range append(u.fields(), &u.MemoryPeakBytes) {
		if *p < 0 || *p > MaxUsageDelta {
			return false
		}
	}
	return true
}

func validLimits(b *policy.Budget) bool {
	for _, v := range []int64{b.CPUMsPerDay, b.EgressBytesPerDay, b.ToolCallsPerDay, b.TasksPerDay} {
		if v < 0 || v > MaxBudgetLimit {
			return false
		}
	}
	return true
}

// Limit is a budget's limit for a dimension; 0 is unlimited.
func Limit(b policy.Budget, dim string) int64 {
	switch dim {
	case DimCPUMs:
		return b.CPUMsPerDay
	case DimEgressBytes:
		return b.EgressBytesPerDay
	case DimToolCalls:
		return b.ToolCallsPerDay
	case DimTasks:
		return b.TasksPerDay
	}
	return 0
}

func applyUsageBatch(tx *Tx, c *UsageBatch) (*UsageApplied, error) {
	switch {
	case !validUsageName(c.Node) || c.Seq == 0:
		return nil, refuse(CodeBadUsageBody, "a usage batch names its node and a sequence from 1")
	case len(c.Deltas) > MaxUsageDeltas:
		return nil, refuse(CodeBadUsageBody, "a usage batch holds at most %d deltas", MaxUsageDeltas)
	}
	for i := range c.Deltas {
		d := &c.Deltas[i]
		if !validUsageName(d.Tenant) || !validUsageName(d.Profile) || !ValidDay(d.Day) || !validDelta(&d.Usage) {
			return nil, refuse(CodeBadUsageBody, "delta %d: a tenant, a profile, a day YYYY-MM-DD and counters from 0 to %d", i, int64(MaxUsageDelta))
		}
	}
	last, err := getUint(tx, prefixUsageSeq+c.Node)
	if err != nil {
		return nil, err
	}
	if c.Seq <= last {
		return &UsageApplied{Duplicate: true}, nil
	}
	putUint(tx, prefixUsageSeq+c.Node, c.Seq)
	type td struct{ tenant, day string }
	var touched []td
	seen := map[td]bool{}
	for i := range c.Deltas {
		d := &c.Deltas[i]
		for _, key := range []string{prefixUsage + d.Day + "/" + d.Tenant + "/" + d.Profile, prefixUsageTenant + d.Day + "/" + d.Tenant} {
			var cur UsageCounters
			if err := getRecord(tx, key, &cur); err != nil && !errors.Is(err, ErrNotFound) {
				return nil, err
			}
			cur.Add(&d.Usage)
			if err := put(tx, key, &cur); err != nil {
				return nil, err
			}
		}
		if k := (td{d.Tenant, d.Day}); !seen[k] {
			seen[k] = true
			touched = append(touched, k)
		}
	}
	out := &UsageApplied{}
	for _, k := range touched {
		cs, err := decide(tx, k.tenant, k.day)
		if err != nil {
			return nil, err
		}
		out.Crossings = append(out.Crossings, cs...)
	}
	return out, nil
}

// decide compares a tenant's day with its envelope and records the
// crossings not recorded yet: each dimension warns once and exhausts once
// a day, whichever node's batch crosses. An exhaustion a raise lifted is
// recorded again when the new limit is crossed.
func decide(tx *Tx, tenant, day string) ([]Crossing, error) {
	limits, _, err := envelopeOf(tx, tenant)
	if err != nil {
		return nil, err
	}
	used, flags, err := budgetUsed(tx, tenant, day)
	if err != nil {
		return nil, err
	}
	var out []Crossing
	changed := false
	for _, dim := range Dimensions {
		limit := Limit(limits, dim)
		if limit <= 0 {
			continue
		}
		u := used.Dim(dim)
		exhausted := u >= limit
		if !exhausted {
			flags.Exhausted = remove(flags.Exhausted, dim, &changed)
		}
		if reachedWarning(u, limit) && !contains(flags.Warned, dim) {
			flags.Warned = append(flags.Warned, dim)
			changed = true
			out = append(out, Crossing{Tenant: tenant, Day: day, Dim: dim, Level: LevelWarning, Used: u, Limit: limit})
		}
		if exhausted && !contains(flags.Exhausted, dim) {
			flags.Exhausted = append(flags.Exhausted, dim)
			changed = true
			out = append(out, Crossing{Tenant: tenant, Day: day, Dim: dim, Level: LevelExhausted, Used: u, Limit: limit})
		}
	}
	if changed {
		if err := put(tx, prefixUsageFlag+day+"/"+tenant, flags); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func reachedWarning(used, limit int64) bool {
	// Below limit ≤ MaxBudgetLimit, used*100 and limit*WarnPercent do not
	// overflow.
	return used >= limit || used*100 >= limit*WarnPercent
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func remove(list []string, s string, changed *bool) []string {
	out := list[:0]
	for _, v := range list {
		if v == s {
			*changed = true
			continue
		}
		out = append(out, v)
	}
	return out
}

// budgetUsed is a tenant's day as its budget counts it: the day's usage
// over every profile, less what a reset forgave.
func budgetUsed(r reader, tenant, day string) (*UsageCounters, *BudgetFlags, error) {
	var total UsageCounters
	if err := getRecord(r, prefixUsageTenant+day+"/"+tenant, &total); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, nil, err
	}
	flags := &BudgetFlags{}
	if err := getRecord(r, prefixUsageFlag+day+"/"+tenant, flags); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, nil, err
	}
	a, f := total.fields(), flags.Forgiven.fields()
	for i := range a {
		*a[i] = max(0, *a[i]-*f[i])
	}
	return &total, flags, nil
}

// envelopeOf is the envelope a tenant's day is held to: the one set at
// run time, else the budget of prod's stable bundle (not its canary's).
func envelopeOf(r reader, tenant string) (policy.Budget, string, error) {
	var e Envelope
	err := getRecord(r, prefixEnvelope+tenant, &e)
	if err == nil {
		return e.Limits, "override", nil
	}
	if !errors.Is(err, ErrNotFound) {
		return policy.Budget{}, "", err
	}
	d, err := getString(r, prefixEnv+policy.EnvProd)
	if errors.Is(err, ErrNotFound) {
		return policy.Budget{}, "none", nil
	}
	if err != nil {
		return policy.Budget{}, "", err
	}
	budgets, err := bundleBudgets(r, d)
	if err != nil {
		return policy.Budget{}, "", err
	}
	return budgets[tenant], "bundle", nil
}

// budgetCache keeps each stored bundle's budgets by digest (a digest
// names immutable bytes, so the cache cannot change an outcome).
var budgetCache struct {
	sync.Mutex
	m map[string]map[string]policy.Budget
}

func bundleBudgets(r reader, digest string) (map[string]policy.Budget, error) {
	budgetCache.Lock()
	b, ok := budgetCache.m[digest]
	budgetCache.Unlock()
	if ok {
		return b, nil
	}
	var rec PolicyRecord
	if err := getRecord(r, prefixBundle+digest, &rec); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", digest, err)
	}
	bundle, err := policy.FromCanonical(rec.Canonical)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", digest, err)
	}
	b = map[string]policy.Budget{}
	for name, t := range bundle.Tenants {
		if t != nil {
			b[name] = t.Budget
		}
	}
	budgetCache.Lock()
	if budgetCache.m == nil || len(budgetCache.m) > 32 {
		budgetCache.m = map[string]map[string]policy.Budget{}
	}
	budgetCache.m[digest] = b
	budgetCache.Unlock()
	return b, nil
}

func applySetEnvelope(tx *Tx, c *SetEnvelope) (*UsageApplied, error) {
	switch {
	case !validUsageName(c.Tenant):
		return nil, refuse(CodeBadEnvelope, "an envelope names its tenant")
	case !ValidDay(c.Day):
		return nil, refuse(CodeBadEnvelope, "an envelope change names the UTC day it is made on")
	case c.By == "" || c.At <= 0:
		return nil, refuse(CodeBadEnvelope, "an envelope change needs who made it and when")
	case !validLimits(&c.Limits):
		return nil, refuse(CodeBadEnvelope, "every limit is from 0 (unlimited) to %d", int64(MaxBudgetLimit))
	}
	switch c.Mode {
	case EnvelopeSet, EnvelopeRaise:
		if c.Mode == EnvelopeRaise {
			cur, _, err := envelopeOf(tx, c.Tenant)
			if err != nil {
				return nil, err
			}
			for _, dim := range Dimensions {
				old, nw := Limit(cur, dim), Limit(c.Limits, dim)
				if old == 0 && nw != 0 || nw != 0 && nw < old {
					return nil, refuse(CodeNotRaise, "a raise lowers %s from %d to %d (0 is unlimited): use set", dim, old, nw)
				}
			}
		}
		if err := put(tx, prefixEnvelope+c.Tenant, &Envelope{Limits: c.Limits, By: c.By, At: c.At}); err != nil {
			return nil, err
		}
	case EnvelopeReset:
		if c.Limits != (policy.Budget{}) {
			return nil, refuse(CodeBadEnvelope, "a reset takes no limits")
		}
		tx.Delete(prefixEnvelope + c.Tenant)
		var total UsageCounters
		if err := getRecord(tx, prefixUsageTenant+c.Day+"/"+c.Tenant, &total); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if err := put(tx, prefixUsageFlag+c.Day+"/"+c.Tenant, &BudgetFlags{Forgiven: total}); err != nil {
			return nil, err
		}
	default:
		return nil, refuse(CodeBadEnvelope, "mode is set, raise or reset")
	}
	cs, err := decide(tx, c.Tenant, c.Day)
	if err != nil {
		return nil, err
	}
	return &UsageApplied{Crossings: cs}, nil
}

func getUint(r reader, key string) (uint64, error) {
	b, closer, err := r.Get([]byte(key))
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return 0, nil
		}
		return 0, err
	}
	defer closer.Close()
	if len(b) != 8 {
		return 0, fmt.Errorf("%s is %d bytes", key, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

func putUint(tx *Tx, key string, v uint64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	tx.Set(key, b[:])
}

// Reads.

// BudgetView is a tenant's day against its envelope.
type BudgetView struct {
	Limits policy.Budget
	// Source is where the limits come from: override (set at run time),
	// bundle (prod's stable bundle) or none.
	Source    string
	Used      UsageCounters // as the budget counts it (less what a reset forgave)
	Warned    []string
	Exhausted []string // dimensions at or over their limit now
}

// Budget reads a tenant's day against its envelope. Exhausted is computed
// from the counters and the limits now (so a new bundle with a higher
// limit lifts an exhaustion at once); Warned is the day's record.
func (s *State) Budget(tenant, day string) (*BudgetView, error) {
	limits, src, err := envelopeOf(s.db, tenant)
	if err != nil {
		return nil, err
	}
	used, flags, err := budgetUsed(s.db, tenant, day)
	if err != nil {
		return nil, err
	}
	v := &BudgetView{Limits: limits, Source: src, Used: *used, Warned: flags.Warned}
	for _, dim := range Dimensions {
		if l := Limit(limits, dim); l > 0 && used.Dim(dim) >= l {
			v.Exhausted = append(v.Exhausted, dim)
		}
	}
	return v, nil
}

// UsageRow is one tenant × profile × day of the counters.
type UsageRow struct {
	Day, Tenant, Profile string
	Usage                UsageCounters
}

// Usage calls fn for every counter row from day from to day to (both
// included), for tenant (every tenant when ""), in day, tenant, profile
// order; fn returning an error ends the scan with it.
func (s *State) Usage(from, to, tenant string, fn func(UsageRow) error) error {
	if tenant == "" {
		// '0' sorts after '/': every key of day to.
		return s.usageRange(prefixUsage+from, prefixUsage+to+"0", fn)
	}
	start, err := time.Parse(time.DateOnly, from)
	if err != nil {
		return fmt.Errorf("usage from %q: %w", from, err)
	}
	for d := start; Day(d) <= to; d = d.AddDate(0, 0, 1) {
		p := prefixUsage + Day(d) + "/" + tenant + "/"
		if err := s.usageRange(p, string(PrefixEnd([]byte(p))), fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *State) usageRange(lo, hi string, fn func(UsageRow) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(lo), UpperBound: []byte(hi)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		rest := string(it.Key()[len(prefixUsage):])
		parts := strings.SplitN(rest, "/", 3)
		if len(parts) != 3 {
			continue
		}
		row := UsageRow{Day: parts[0], Tenant: parts[1], Profile: parts[2]}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := msgpack.Unmarshal(v, &row.Usage); err != nil {
			return fmt.Errorf("decode usage %s: %w", rest, err)
		}
		if err := fn(row); err != nil {
			return err
		}
	}
	return it.Error()
}

// UsageSeq is the last batch sequence applied for a node.
func (s *State) UsageSeq(node string) (uint64, error) { return getUint(s.db, prefixUsageSeq+node) }
