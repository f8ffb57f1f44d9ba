package node

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
)

// TestTaskRetention: task records older than the cutoff go, newer stay.
func TestTaskRetention(t *testing.T) {
	db, err := consensus.OpenDB(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	n := &Node{db: db, now: func() time.Time { return now }}
	if err := n.saveTask(&api.Task{TaskID: "tsk_old", State: api.TaskSucceeded}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(8 * 24 * time.Hour)
	if err := n.saveTask(&api.Task{TaskID: "tsk_new", State: api.TaskSucceeded}); err != nil {
		t.Fatal(err)
	}
	k, err := n.purgeTasks(now.Add(-taskRetention), 100)
	if err != nil || k != 1 {
		t.Fatalf("purged %d, %v; want 1", k, err)
	}
	if _, err := n.loadTask("tsk_new"); err != nil {
		t.Fatalf("the new record went: %v", err)
	}
	_, closer, err := db.Get([]byte(prefixTask + "tsk_old"))
	if !errors.Is(err, pebble.ErrNotFound) {
		closer.Close()
		t.Fatal("the old record stayed")
	}
}
