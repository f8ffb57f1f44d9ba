package ledger

import "golang.org/x/mod/sumdb/tlog"

// treeBuilder computes RFC 6962 tree hashes (the same as tlog.TreeHash)
// over a stream of record hashes in O(log n) memory. stack holds the roots
// of the perfect subtrees the records so far decompose into, largest (and
// leftmost) first: one per set bit of n.
type treeBuilder struct {
	n     int64
	stack []tlog.Hash
}

// add appends the record hash h.
func (b *treeBuilder) add(h tlog.Hash) {
	b.stack = append(b.stack, h)
	// Each trailing one bit of the old size is a perfect subtree of the
	// same height as the one just completed: merge them.
	for k := b.n; k&1 == 1; k >>= 1 {
		top := len(b.stack)
		b.stack[top-2] = tlog.NodeHash(b.stack[top-2], b.stack[top-1])
		b.stack = b.stack[:top-1]
	}
	b.n++
}

// root returns the tree hash of the records added so far.
func (b *treeBuilder) root() tlog.Hash {
	if len(b.stack) == 0 {
		h, _ := tlog.TreeHash(0, nil) // the hash of the empty tree; reads nothing
		return h
	}
	h := b.stack[len(b.stack)-1]
	for i := len(b.stack) - 2; i >= 0; i-- {
		h = tlog.NodeHash(b.stack[i], h)
	}
	return h
}
