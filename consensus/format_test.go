package consensus

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestQueueStateFormat pins the bytes the queue script leaves under the
// queue's prefix (records, indexes, counters, modules): the on-disk format
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
	for i, c := range queueScript(t) {
		for _, r := range applyAll(t, f, [][]byte{c}, uint64(i+1)) {
			if r.Code != "" {
				refused++
			}
		}
		if err := scan(db, prefixQueue, func(k, v []byte) error {
			h.Write(k)
			h.Write([]byte{0})
			h.Write(v)
			h.Write([]byte{0})
			keys++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		h.Write([]byte{1})
	}
	if refused != 1 {
		t.Fatalf("%d refusals, want 1", refused)
	}
	const want = "64a927f730e002d5047e702979cb32c65d675a50f41baa806887ed4f4abd7d76"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("queue state along the script: %d keys in all, sha256 %s, want %s", keys, got, want)
	}
}
