// Package runbook is the security runbook (docs/runbook.md): its API
// (api.go: freeze, revocation by selector, run-time blocks, incidents,
// each answered once in force on every node, each signed into the ledger
// as a governance entry, watch.go), and the blast-radius index: which
// ledger records (receipts) name a destination,
// a tenant, a profile, a module, a policy digest, a lease or a time. The
// node adds each receipt as it is applied and answers queries from the
// index rather than a scan of the ledger; Scan is the reference the
// index must agree with.
//
// An Index is safe for concurrent use.
package runbook

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/leash-dev/leash/ledger"
)

// Filter selects receipts: every field set must match. Destination is a
// host ("api.example.com"), a host:port, an IP or a CIDR prefix (matched
// against destinations that are IP literals).
type Filter struct {
	Destination  string
	Tenant       string
	Profile      string
	Module       string
	PolicyDigest string
	Lease        string
	// Since and Until bound the task's end (zero: unbounded).
	Since, Until time.Time
}

// The index keeps no string or pointer per receipt: names (tenants,
// profiles, modules, digests, leases, destination hosts) are interned
// once as numbers, the entries are a flat slice by ledger index and the
// hosts of all entries one flat slice, so a million receipts take about
// a hundred megabytes that the garbage collector does not scan.

// entry is what the index keeps of one receipt; by names the tenant,
// profile, module, digest and lease (0: no receipt at this index).
type entry struct {
	end             int64
	by              [5]uint32
	hostAt, hostLen uint32 // its destination hosts (without port): Index.hosts[hostAt:hostAt+hostLen]
}

// Index is the blast-radius index.
type Index struct {
	mu      sync.RWMutex
	names   map[string]uint32 // name → number (from 1)
	strs    []string          // number → name
	ips     map[uint32]netip.Addr
	entries []entry // by ledger index
	n       int
	hosts   []uint32
	by      [5]map[uint32][]int64 // tenant, profile, module, digest, lease → indexes
	dests   map[uint32][]int64    // destination host (without port) → indexes
}

// New returns an empty index.
func New() *Index {
	x := &Index{names: map[string]uint32{}, strs: []string{""}, ips: map[uint32]netip.Addr{}, dests: map[uint32][]int64{}}
	for i := range x.by {
		x.by[i] = map[uint32][]int64{}
	}
	return x
}

func hostOf(dest string) string {
	if h, _, err := net.SplitHostPort(dest); err == nil {
		return h
	}
	return dest
}

// intern returns s's number, adding it; x.mu is held.
func (x *Index) intern(s string) uint32 {
	if id, ok := x.names[s]; ok {
		return id
	}
	s = strings.Clone(s) // not a slice of a decoded receipt
	id := uint32(len(x.strs))
	x.names[s] = id
	x.strs = append(x.strs, s)
	return id
}

// Add indexes the receipt at ledger index idx; adding an index twice
// changes nothing.
func (x *Index) Add(idx int64, r *ledger.Receipt) {
	if idx < 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if idx < int64(len(x.entries)) && x.entries[idx].by[0] != 0 {
		return
	}
	for int64(len(x.entries)) <= idx {
		x.entries = append(x.entries, entry{})
	}
	e := entry{end: r.End.UnixNano(), hostAt: uint32(len(x.hosts))}
	for i, k := range [5]string{r.Tenant, r.Profile, r.ModuleDigest, r.PolicyDigest, r.LeaseID} {
		e.by[i] = x.intern(k)
		x.by[i][e.by[i]] = append(x.by[i][e.by[i]], idx)
	}
	for _, d := range r.Destinations {
		h := x.intern(hostOf(d))
		if slices.Contains(x.hosts[e.hostAt:], h) {
			continue
		}
		x.hosts = append(x.hosts, h)
		x.dests[h] = append(x.dests[h], idx)
		if a, err := netip.ParseAddr(x.strs[h]); err == nil {
			x.ips[h] = a.Unmap()
		}
	}
	e.hostLen = uint32(len(x.hosts)) - e.hostAt
	x.entries[idx] = e
	x.n++
}

// Len is how many receipts the index holds.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}

// query is a Filter in the index's numbers.
type query struct {
	by           [5]uint32 // 0: any
	prefix       netip.Prefix
	isPrefix     bool
	host         uint32 // a host destination's number
	dest         bool   // a destination is given
	since, until int64  // 0: unbounded
	none         bool   // a name given is in no receipt
}

// compile resolves f's names; x.mu is held.
func (x *Index) compile(f Filter) query {
	var q query
	for i, k := range [5]string{f.Tenant, f.Profile, f.Module, f.PolicyDigest, f.Lease} {
		if k == "" {
			continue
		}
		if q.by[i] = x.names[k]; q.by[i] == 0 {
			q.none = true
		}
	}
	if f.Destination != "" {
		q.dest = true
		if q.prefix, q.isPrefix = prefixOf(f.Destination); !q.isPrefix {
			if q.host = x.names[hostOf(f.Destination)]; q.host == 0 {
				q.none = true
			}
		}
	}
	if !f.Since.IsZero() {
		q.since = f.Since.UnixNano()
	}
	if !f.Until.IsZero() {
		q.until = f.Until.UnixNano()
	}
	return q
}

// Match returns the indexes of the receipts f selects, ascending.
func (x *Index) Match(f Filter) []int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	q := x.compile(f)
	if q.none {
		return nil
	}
	// The smallest posting list of the fields set; then every candidate
	// is checked against the whole filter.
	var cands []int64
	have := false
	for i, id := range q.by {
		if id == 0 {
			continue
		}
		if l := x.by[i][id]; !have || len(l) < len(cands) {
			cands, have = l, true
		}
	}
	if q.dest {
		var l []int64
		if q.isPrefix {
			for h, a := range x.ips {
				if q.prefix.Contains(a) {
					l = append(l, x.dests[h]...)
				}
			}
		} else {
			l = x.dests[q.host]
		}
		if !have || len(l) < len(cands) {
			cands, have = l, true
		}
	}
	var out []int64
	if !have {
		for idx := range x.entries {
			if x.matches(&x.entries[idx], &q) {
				out = append(out, int64(idx))
			}
		}
		return out
	}
	for _, idx := range cands {
		if x.matches(&x.entries[idx], &q) {
			out = append(out, idx)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// prefixOf reads a destination filter as an IP prefix (an IP is a /32 or
// /128).
func prefixOf(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), true
	}
	return netip.Prefix{}, false
}

// matches reports whether e is a receipt q selects; x.mu is held.
func (x *Index) matches(e *entry, q *query) bool {
	if e.by[0] == 0 {
		return false
	}
	for i, id := range q.by {
		if id != 0 && e.by[i] != id {
			return false
		}
	}
	if (q.since != 0 && e.end < q.since) || (q.until != 0 && e.end > q.until) {
		return false
	}
	if !q.dest {
		return true
	}
	for _, h := range x.hosts[e.hostAt : e.hostAt+e.hostLen] {
		if q.isPrefix {
			if a, ok := x.ips[h]; ok && q.prefix.Contains(a) {
				return true
			}
		} else if h == q.host {
			return true
		}
	}
	return false
}

// Scan is the reference: the indexes of the receipts f selects, by
// checking every receipt's own fields (no index, no shared predicate).
func Scan(receipts map[int64]*ledger.Receipt, f Filter) []int64 {
	var out []int64
	for idx, r := range receipts {
		if scanMatches(r, f) {
			out = append(out, idx)
		}
	}
	slices.Sort(out)
	return out
}

func scanMatches(r *ledger.Receipt, f Filter) bool {
	if (f.Tenant != "" && r.Tenant != f.Tenant) || (f.Profile != "" && r.Profile != f.Profile) ||
		(f.Module != "" && r.ModuleDigest != f.Module) || (f.PolicyDigest != "" && r.PolicyDigest != f.PolicyDigest) ||
		(f.Lease != "" && r.LeaseID != f.Lease) || (!f.Since.IsZero() && r.End.Before(f.Since)) || (!f.Until.IsZero() && r.End.After(f.Until)) {
		return false
	}
	if f.Destination == "" {
		return true
	}
	for _, d := range r.Destinations {
		host := d
		if h, _, err := net.SplitHostPort(d); err == nil {
			host = h
		}
		if pf, err := netip.ParsePrefix(f.Destination); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && pf.Masked().Contains(a.Unmap()) {
				return true
			}
			continue
		}
		if fa, err := netip.ParseAddr(f.Destination); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && a.Unmap() == fa.Unmap() {
				return true
			}
			continue
		}
		want := f.Destination
		if h, _, err := net.SplitHostPort(want); err == nil {
			want = h
		}
		if host == want {
			return true
		}
	}
	return false
}
