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

// entry is what the index keeps of one receipt.
type entry struct {
	tenant, profile, module, digest, lease string
	hosts                                  []string // host:port as recorded
	end                                    int64
}

// Index is the blast-radius index.
type Index struct {
	mu      sync.RWMutex
	entries map[int64]*entry
	by      [5]map[string][]int64 // tenant, profile, module, digest, lease
	dests   map[string][]int64    // destination host (without port) → indexes
}

// New returns an empty index.
func New() *Index {
	x := &Index{entries: map[int64]*entry{}, dests: map[string][]int64{}}
	for i := range x.by {
		x.by[i] = map[string][]int64{}
	}
	return x
}

func hostOf(dest string) string {
	if h, _, err := net.SplitHostPort(dest); err == nil {
		return h
	}
	return dest
}

// Add indexes the receipt at ledger index idx; adding an index twice
// changes nothing.
func (x *Index) Add(idx int64, r *ledger.Receipt) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.entries[idx]; ok {
		return
	}
	e := &entry{tenant: r.Tenant, profile: r.Profile, module: r.ModuleDigest, digest: r.PolicyDigest, lease: r.LeaseID,
		hosts: slices.Clone(r.Destinations), end: r.End.UnixNano()}
	x.entries[idx] = e
	for i, k := range [5]string{e.tenant, e.profile, e.module, e.digest, e.lease} {
		x.by[i][k] = append(x.by[i][k], idx)
	}
	seen := map[string]bool{}
	for _, d := range e.hosts {
		h := hostOf(d)
		if !seen[h] {
			seen[h] = true
			x.dests[h] = append(x.dests[h], idx)
		}
	}
}

// Len is how many receipts the index holds.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.entries)
}

// Match returns the indexes of the receipts f selects, ascending.
func (x *Index) Match(f Filter) []int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	// The smallest posting list of the fields set; then every candidate
	// is checked against the whole filter.
	var cands []int64
	have := false
	for i, k := range [5]string{f.Tenant, f.Profile, f.Module, f.PolicyDigest, f.Lease} {
		if k == "" {
			continue
		}
		l := x.by[i][k]
		if !have || len(l) < len(cands) {
			cands, have = l, true
		}
	}
	if f.Destination != "" {
		var l []int64
		if p, ok := prefixOf(f.Destination); ok {
			for h, ids := range x.dests {
				if a, err := netip.ParseAddr(h); err == nil && p.Contains(a.Unmap()) {
					l = append(l, ids...)
				}
			}
		} else {
			l = x.dests[hostOf(f.Destination)]
		}
		if !have || len(l) < len(cands) {
			cands, have = l, true
		}
	}
	var out []int64
	if !have {
		for idx, e := range x.entries {
			if e.matches(f) {
				out = append(out, idx)
			}
		}
	} else {
		for _, idx := range cands {
			if e := x.entries[idx]; e != nil && e.matches(f) {
				out = append(out, idx)
			}
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

func (e *entry) matches(f Filter) bool {
	switch {
	case f.Tenant != "" && e.tenant != f.Tenant,
		f.Profile != "" && e.profile != f.Profile,
		f.Module != "" && e.module != f.Module,
		f.PolicyDigest != "" && e.digest != f.PolicyDigest,
		f.Lease != "" && e.lease != f.Lease,
		!f.Since.IsZero() && e.end < f.Since.UnixNano(),
		!f.Until.IsZero() && e.end > f.Until.UnixNano():
		return false
	}
	if f.Destination == "" {
		return true
	}
	p, isPrefix := prefixOf(f.Destination)
	for _, d := range e.hosts {
		h := hostOf(d)
		if isPrefix {
			if a, err := netip.ParseAddr(h); err == nil && p.Contains(a.Unmap()) {
				return true
			}
		} else if h == hostOf(f.Destination) {
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
