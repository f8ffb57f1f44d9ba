package consensus

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"
)

// TestQueueStateFormat pins the bytes the queue script (and a revocation
// and an expiry of its leases) leaves under the queue's and the leases'
// prefixes (records, indexes, counters, modules): the on-disk format
// of replicated state is a contract (a node replays its log and restores
// snapshots written by earlier builds), so a refactoring of the appliers
// must leave it as it is. A deliberate format change updates the hash
// here together with a migration and its test.
func TestQueueStateFormat(t *testing.T) {
	db := newStateDB(t)
	f := NewFSM(db, nil)
	h := sha256.New()
	refused, keys := 0, 0
	// The state after every command, not only the last: the purge at the
	// end of the script forgets most of what the indexes held.
	script := queueScript(t)
	for _, c := range []Command{
		&RevokeLease{LeaseID: "li", Reason: "test", By: "admin", At: at(3 * time.Second)},
		&ExpireLeases{Before: at(time.Hour)},
	} {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		script = append(script, b)
	}
	for i, c := range script {
		for _, r := range applyAll(t, f, [][]byte{c}, uint64(i+1)) {
			if r.Code != "" {
				refused++
			}
		}
		for _, prefix := range []string{prefixQueue, prefixLease, prefixLeaseExp} {
			if err := scan(db, prefix, func(k, v []byte) error {
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
		h.Write([]byte{1})
	}
	if refused != 1 {
		t.Fatalf("%d refusals, want 1", refused)
	}
	const want = "2fd921e8c8a55b2e640266c3a6d809f777e7f55511ec03329b6099b0cabe9139"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("queue state along the script: %d keys in all, sha256 %s, want %s", keys, got, want)
	}
}
