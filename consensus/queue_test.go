package consensus

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/policy"
)

var (
	qt0        = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	qModule    = []byte("\x00asm\x01\x00\x00\x00 queue test module")
	qModDigest = func() string { s := sha256.Sum256(qModule); return "sha256:" + hex.EncodeToString(s[:]) }()
)

func at(d time.Duration) int64 { return qt0 + int64(d) }

// queueSetup is what every queue test starts from: a bundle, a lease key,
// a bulk lease and an interactive lease of tenant demo, and a module.
func queueSetup(t testing.TB) []Command {
	t.Helper()
	bundle := policy.Default()
	pub, _, _ := ed25519.GenerateKey(nil)
	lease := func(id, class string) Lease {
		return Lease{ID: id, Tenant: "demo", Profile: "docs-reader", PolicyDigest: bundle.Digest(), Class: class,
			IssuedAt: qt0, NotBefore: qt0, ExpiresAt: qt0 + int64(10*time.Minute), IssuedBy: "n1", KID: "n1-lease"}
	}
	return []Command{
		&PutNodeKey{Key: NodeKey{KID: "n1-lease", NodeID: "n1", Use: KeyUseLease, Algorithm: "EdDSA", PublicKey: pub, AddedAt: qt0}},
		&PutPolicy{Canonical: bundle.Canonical(), Env: "prod", By: "test", At: qt0},
		&IssueLease{Lease: lease("lb", ClassBulk)},
		&IssueLease{Lease: lease("li", ClassInteractive)},
		&PutQueueModule{Digest: qModDigest, Kind: "wasi", Size: len(qModule), Code: qModule, At: qt0},
	}
}

// newTask is a bulk task of lease lb enqueued at qt0+offset.
func newTask(id, key string, offset time.Duration) *EnqueueTask {
	return &EnqueueTask{Task: QueueTask{
		ID: id, Tenant: "demo", LeaseID: "lb", Profile: "docs-reader", PolicyDigest: policy.Default().Digest(), Class: ClassBulk,
		IdempotencyKey: key, MaxAttempts: 3, EnqueuedAt: at(offset), EnqueuedBy: "n1",
		Spec: TaskSpec{Kind: "wasi", ModuleDigest: qModDigest, Method: "POST", URL: "https://task.leash.local/",
			Headers: []Pair{{K: "Content-Type", V: "text/plain"}}, Body: []byte("the body")},
	}}
}

type queueFSM struct {
	t     testing.TB
	f     *FSM
	index uint64
}

func newQueueFSM(t testing.TB) *queueFSM {
	q := &queueFSM{t: t, f: NewFSM(newStateDB(t), nil)}
	for _, c := range queueSetup(t) {
		if r := q.do(c); r.Code != "" {
			t.Fatalf("setup %s: %s %s", c.Op(), r.Code, r.Message)
		}
	}
	return q
}

func (q *queueFSM) do(c Command) *Result {
	q.t.Helper()
	b, err := Encode(c)
	if err != nil {
		q.t.Fatal(err)
	}
	q.index++
	return q.f.Apply(&raft.Log{Index: q.index, Term: 1, Type: raft.LogCommand, Data: b}).(*Result)
}

func (q *queueFSM) task(id string) *QueueTask {
	q.t.Helper()
	task, err := q.f.State().QueueTask(id)
	if err != nil {
		q.t.Fatalf("task %s: %v", id, err)
	}
	return task
}

// TestQueueCommands walks the queue through every command, refusals
// included, checking each result and the task records after each step.
func TestQueueCommands(t *testing.T) {
	q := newQueueFSM(t)
	bigBody := newTask("big", "", 0)
	bigBody.Task.Spec.Body = make([]byte, MaxQueueBodyBytes+1)
	unsorted := newTask("unsorted", "", 0)
	unsorted.Task.Spec.Headers = []Pair{{K: "b", V: "1"}, {K: "a", V: "2"}}
	interactive := newTask("inter", "", 0)
	interactive.Task.LeaseID = "li"
	interactive.Task.Class = ClassInteractive
	otherSpec := newTask("t1-again", "k1", time.Second)
	otherSpec.Task.Spec.Body = []byte("another body")
	noModule := newTask("nomod", "", 0)
	noModule.Task.Spec.ModuleDigest = "sha256:" + strings.Repeat("ab", 32)
	noLease := newTask("nolease", "", 0)
	noLease.Task.LeaseID = "missing"

	type step struct {
		name  string
		cmd   Command
		code  string
		check func(t *testing.T, r *Result)
	}
	wantState := func(id, state string, attempts int) func(t *testing.T, r *Result) {
		return func(t *testing.T, r *Result) {
			t.Helper()
			task := q.task(id)
			if task.State != state || task.Attempts != attempts {
				t.Fatalf("%s: state %s attempts %d; want %s, %d", id, task.State, task.Attempts, state, attempts)
			}
		}
	}
	claimed := func(id string, attempt int) func(t *testing.T, r *Result) {
		return func(t *testing.T, r *Result) {
			t.Helper()
			cr := r.Value.(*ClaimResult)
			if cr.ID != id || cr.Attempt != attempt {
				t.Fatalf("claimed %+v, want %s attempt %d", cr, id, attempt)
			}
		}
	}
	steps := []step{
		{"enqueue t1", newTask("t1", "k1", 0), "", func(t *testing.T, r *Result) {
			er := r.Value.(*EnqueueResult)
			if er.ID != "t1" || !er.Created || er.State != TaskQueued || er.Queued != 1 {
				t.Fatalf("enqueue = %+v", er)
			}
		}},
		{"same key and spec names t1", newTask("t1-repeat", "k1", time.Second), "", func(t *testing.T, r *Result) {
			if er := r.Value.(*EnqueueResult); er.ID != "t1" || er.Created {
				t.Fatalf("repeat = %+v", er)
			}
			if _, err := q.f.State().QueueTask("t1-repeat"); !errors.Is(err, ErrNotFound) {
				t.Fatal("a repeat created a task")
			}
		}},
		{"same key, other spec", otherSpec, CodeIdempotencyConflict, nil},
		{"interactive lease", interactive, CodeInvalid, nil},
		{"unknown lease", noLease, CodeLeaseNotFound, nil},
		{"module not replicated", noModule, CodeModuleNotFound, nil},
		{"body too large", bigBody, CodeInvalid, nil},
		{"unsorted headers", unsorted, CodeInvalid, nil},
		{"id taken", newTask("t1", "", 0), CodeInvalid, nil},
		{"enqueue t2", newTask("t2", "", time.Millisecond), "", nil},
		{"enqueue t3", newTask("t3", "", 2*time.Millisecond), "", nil},
		{"claim before anything is due", &ClaimTask{Tenant: "demo", Node: "n1", Now: at(-time.Second), Until: at(time.Second)}, "", claimed("", 0)},
		{"claim of another tenant", &ClaimTask{Tenant: "other", Node: "n1", Now: at(time.Second), Until: at(10 * time.Second)}, "", claimed("", 0)},
		{"claim window too long", &ClaimTask{Tenant: "demo", Node: "n1", Now: at(time.Second), Until: at(time.Hour)}, CodeInvalid, nil},
		{"claim t1", &ClaimTask{Tenant: "demo", Node: "n1", Now: at(time.Second), Until: at(10 * time.Second)}, "", claimed("t1", 1)},
		{"t1 running", &RenewClaims{Node: "n1", Now: at(2 * time.Second), Until: at(12 * time.Second), Tasks: []TaskAttempt{{ID: "t1", Attempt: 1}}}, "", func(t *testing.T, r *Result) {
			if rr := r.Value.(*RenewResult); len(rr.Lost)+len(rr.Cancelled) != 0 {
				t.Fatalf("renew = %+v", rr)
			}
			if task := q.task("t1"); task.State != TaskRunning || task.ClaimExpires != at(12*time.Second) || task.ClaimedBy != "n1" {
				t.Fatalf("t1 = %+v", task)
			}
		}},
		{"renew by another node", &RenewClaims{Node: "n2", Now: at(2 * time.Second), Until: at(12 * time.Second), Tasks: []TaskAttempt{{ID: "t1", Attempt: 1}, {ID: "nope", Attempt: 1}}}, "", func(t *testing.T, r *Result) {
			if rr := r.Value.(*RenewResult); len(rr.Lost) != 2 {
				t.Fatalf("renew = %+v", rr)
			}
		}},
		{"complete by another node", &CompleteTask{ID: "t1", Attempt: 1, Node: "n2", At: at(3 * time.Second), Outcome: "ok", Next: NextSucceeded}, CodeClaimLost, nil},
		{"complete another attempt", &CompleteTask{ID: "t1", Attempt: 2, Node: "n1", At: at(3 * time.Second), Outcome: "ok", Next: NextSucceeded}, CodeClaimLost, nil},
		{"ok must succeed", &CompleteTask{ID: "t1", Attempt: 1, Node: "n1", At: at(3 * time.Second), Outcome: "ok", Next: NextFailed}, CodeInvalid, nil},
		{"error cannot succeed", &CompleteTask{ID: "t1", Attempt: 1, Node: "n1", At: at(3 * time.Second), Outcome: "error", Next: NextSucceeded}, CodeInvalid, nil},
		{"dead before the last attempt", &CompleteTask{ID: "t1", Attempt: 1, Node: "n1", At: at(3 * time.Second), Outcome: "error", Next: NextDead}, CodeInvalid, nil},
		{"retry in the past", &CompleteTask{ID: "t1", Attempt: 1, Node: "n1", At: at(3 * time.Second), Outcome: "error", Next: NextRetry, RetryAt: at(2 * time.Second)}, CodeInvalid, nil},
		{"result too large", &CompleteTask{ID: "t1", Attempt: 1, Node: "n1", At: at(3 * time.Second), Outcome: "ok", Next: NextSucceeded, Result: make([]byte, MaxQueueResultBytes+1)}, CodeInvalid, nil},
		{"t1 fails and retries in 5s", &CompleteTask{ID: "t1", Attempt: 1, Node: "n1", At: at(3 * time.Second), Outcome: "error", Next: NextRetry, RetryAt: at(8 * time.Second), Result: []byte(`{"outcome":"error"}`)}, "", func(t *testing.T, r *Result) {
			task := q.task("t1")
			if task.State != TaskQueued || task.DueAt != at(8*time.Second) || task.ClaimedBy != "" || task.Outcome != "error" {
				t.Fatalf("t1 = %+v", task)
			}
			if h := task.History; len(h) != 1 || h[0].Outcome != "error" || h[0].EndedAt != at(3*time.Second) {
				t.Fatalf("history = %+v", h)
			}
		}},
		{"t2 is next while t1 waits", &ClaimTask{Tenant: "demo", Node: "n2", Now: at(4 * time.Second), Until: at(14 * time.Second)}, "", claimed("t2", 1)},
		{"t2 succeeds", &CompleteTask{ID: "t2", Attempt: 1, Node: "n2", At: at(5 * time.Second), Outcome: "ok", Next: NextSucceeded, Result: []byte(`{}`)}, "", wantState("t2", TaskSucceeded, 1)},
		{"complete twice", &CompleteTask{ID: "t2", Attempt: 1, Node: "n2", At: at(5 * time.Second), Outcome: "ok", Next: NextSucceeded}, CodeClaimLost, nil},
		{"t3", &ClaimTask{Tenant: "demo", Node: "n1", Now: at(6 * time.Second), Until: at(7 * time.Second)}, "", claimed("t3", 1)},
		{"nothing due until t1's retry", &ClaimTask{Tenant: "demo", Node: "n1", Now: at(7 * time.Second), Until: at(17 * time.Second)}, "", claimed("", 0)},
		{"t1 attempt 2", &ClaimTask{Tenant: "demo", Node: "n2", Now: at(8 * time.Second), Until: at(18 * time.Second)}, "", claimed("t1", 2)},
		{"cancel running t1", &CancelTask{ID: "t1", By: "admin", At: at(9 * time.Second)}, "", func(t *testing.T, r *Result) {
			if st := r.Value.(*TaskStatus); st.State != TaskRunning || !st.CancelRequested {
				t.Fatalf("cancel = %+v", st)
			}
		}},
		{"cancel again is a no-op", &CancelTask{ID: "t1", By: "admin", At: at(9 * time.Second)}, "", wantState("t1", TaskRunning, 2)},
		{"the renewal says cancelled", &RenewClaims{Node: "n2", Now: at(9 * time.Second), Until: at(19 * time.Second), Tasks: []TaskAttempt{{ID: "t1", Attempt: 2}}}, "", func(t *testing.T, r *Result) {
			if rr := r.Value.(*RenewResult); len(rr.Cancelled) != 1 || rr.Cancelled[0] != "t1" {
				t.Fatalf("renew = %+v", rr)
			}
		}},
		{"a cancel wins over a retry", &CompleteTask{ID: "t1", Attempt: 2, Node: "n2", At: at(10 * time.Second), Outcome: "terminated:cancelled", Next: NextRetry, RetryAt: at(11 * time.Second)}, "", wantState("t1", TaskCancelled, 2)},
		{"cancel a finished task", &CancelTask{ID: "t2", By: "admin", At: at(10 * time.Second)}, CodeTaskFinished, nil},
		{"cancel an unknown task", &CancelTask{ID: "nope", By: "admin", At: at(10 * time.Second)}, CodeTaskNotFound, nil},
		{"t3's claim has not expired", &ReclaimTasks{Now: at(6500 * time.Millisecond), Max: 100}, "", func(t *testing.T, r *Result) {
			if rr := r.Value.(*ReclaimResult); len(rr.Requeued)+len(rr.Dead)+len(rr.Cancelled) != 0 {
				t.Fatalf("reclaim = %+v", rr)
			}
		}},
		{"t3's claim expired", &ReclaimTasks{Now: at(11 * time.Second), Max: 100}, "", func(t *testing.T, r *Result) {
			if rr := r.Value.(*ReclaimResult); len(rr.Requeued) != 1 || rr.Requeued[0] != "t3" {
				t.Fatalf("reclaim = %+v", rr)
			}
			task := q.task("t3")
			if task.State != TaskQueued || task.DueAt != at(11*time.Second) || task.History[0].Outcome != OutcomeAbandoned || task.History[0].Reason != ReasonClaimExpired {
				t.Fatalf("t3 = %+v", task)
			}
		}},
		{"the old claim cannot complete", &CompleteTask{ID: "t3", Attempt: 1, Node: "n1", At: at(11 * time.Second), Outcome: "ok", Next: NextSucceeded}, CodeClaimLost, nil},
		{"t3 attempt 2 on n2", &ClaimTask{Tenant: "demo", Node: "n2", Now: at(12 * time.Second), Until: at(22 * time.Second)}, "", claimed("t3", 2)},
		{"n2 restarts", &ReclaimTasks{Now: at(13 * time.Second), Node: "n2", Max: 100}, "", func(t *testing.T, r *Result) {
			if rr := r.Value.(*ReclaimResult); len(rr.Requeued) != 1 {
				t.Fatalf("reclaim = %+v", rr)
			}
			if h := q.task("t3").History; h[1].Reason != ReasonNodeRestarted {
				t.Fatalf("history = %+v", h)
			}
		}},
		{"t3 attempt 3", &ClaimTask{Tenant: "demo", Node: "n1", Now: at(14 * time.Second), Until: at(15 * time.Second)}, "", claimed("t3", 3)},
		{"t3's last claim expires: dead", &ReclaimTasks{Now: at(16 * time.Second), Max: 100}, "", func(t *testing.T, r *Result) {
			if rr := r.Value.(*ReclaimResult); len(rr.Dead) != 1 {
				t.Fatalf("reclaim = %+v", rr)
			}
			if task := q.task("t3"); task.State != TaskDead || task.Reason != ReasonClaimExpired || task.Attempts != 3 {
				t.Fatalf("t3 = %+v", task)
			}
		}},
		{"enqueue t4", newTask("t4", "k4", 17*time.Second), "", nil},
		{"cancel queued t4", &CancelTask{ID: "t4", By: "admin", At: at(18 * time.Second)}, "", wantState("t4", TaskCancelled, 0)},
		{"t4 is not claimable", &ClaimTask{Tenant: "demo", Node: "n1", Now: at(19 * time.Second), Until: at(29 * time.Second)}, "", claimed("", 0)},
		{"enqueue t5, max 1 attempt", func() Command { c := newTask("t5", "", 20*time.Second); c.Task.MaxAttempts = 1; return c }(), "", nil},
		{"t5", &ClaimTask{Tenant: "demo", Node: "n1", Now: at(21 * time.Second), Until: at(31 * time.Second)}, "", claimed("t5", 1)},
		{"t5 cannot retry", &CompleteTask{ID: "t5", Attempt: 1, Node: "n1", At: at(22 * time.Second), Outcome: "error", Next: NextRetry, RetryAt: at(23 * time.Second)}, CodeInvalid, nil},
		{"t5 dead", &CompleteTask{ID: "t5", Attempt: 1, Node: "n1", At: at(22 * time.Second), Outcome: "error", Next: NextDead, Reason: ReasonMaxAttempts}, "", wantState("t5", TaskDead, 1)},
		{"purge what finished before 15s", &PurgeTasks{Before: at(15 * time.Second), Max: 100}, "", func(t *testing.T, r *Result) {
			if n := r.Value.(int); n != 2 { // t1 (10s), t2 (5s)
				t.Fatalf("purged %d", n)
			}
			for _, id := range []string{"t1", "t2"} {
				if _, err := q.f.State().QueueTask(id); !errors.Is(err, ErrNotFound) {
					t.Fatalf("%s not purged: %v", id, err)
				}
			}
		}},
		{"k1 is free again", newTask("t6", "k1", 30*time.Second), "", func(t *testing.T, r *Result) {
			if er := r.Value.(*EnqueueResult); er.ID != "t6" || !er.Created {
				t.Fatalf("enqueue = %+v", er)
			}
		}},
	}
	for _, s := range steps {
		r := q.do(s.cmd)
		if r.Code != s.code {
			t.Fatalf("%s: code %q (%s), want %q", s.name, r.Code, r.Message, s.code)
		}
		if s.check != nil {
			t.Run(s.name, func(t *testing.T) { s.check(t, r) })
		}
	}
	counts, err := q.f.State().QueueCounts()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{TaskQueued: 1, TaskRunning: 0, TaskSucceeded: 0, TaskFailed: 0, TaskCancelled: 1, TaskDead: 2}
	for st, n := range want {
		if counts[st] != n {
			t.Errorf("count %s = %d, want %d (%v)", st, counts[st], n, counts)
		}
	}
}

func TestQueuePurgeForgetsUnusedModules(t *testing.T) {
	q := newQueueFSM(t)
	st := q.f.State()
	q.do(newTask("a", "", 0))
	q.do(&ClaimTask{Tenant: "demo", Node: "n1", Now: at(time.Second), Until: at(2 * time.Second)})
	q.do(&CompleteTask{ID: "a", Attempt: 1, Node: "n1", At: at(time.Second), Outcome: "ok", Next: NextSucceeded})
	q.do(&PurgeTasks{Before: at(time.Hour), Max: 10})
	if st.HasQueueModule(qModDigest) {
		t.Fatal("a module no task refers to survived the purge")
	}
	// A module still referred to stays.
	q.do(&PutQueueModule{Digest: qModDigest, Kind: "wasi", Size: len(qModule), Code: qModule, At: at(2 * time.Hour)})
	q.do(newTask("b", "", 2*time.Hour))
	q.do(&PurgeTasks{Before: at(3 * time.Hour), Max: 10})
	if !st.HasQueueModule(qModDigest) {
		t.Fatal("a module a queued task refers to was purged")
	}
}

// TestQueueModuleChunks: a module arrives in ordered chunks (repeats are
// no-ops), is usable only once complete, and is dropped when its bytes
// do not hash to its digest.
func TestQueueModuleChunks(t *testing.T) {
	q := newQueueFSM(t)
	st := q.f.State()
	code := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16,000 bytes
	sum := sha256.Sum256(code)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	chunk := func(off, end int) *PutQueueModule {
		return &PutQueueModule{Digest: digest, Kind: "js", Size: len(code), Offset: off, Code: code[off:end], At: qt0}
	}
	task := newTask("t", "", 0)
	task.Task.Spec.ModuleDigest, task.Task.Spec.Kind = digest, "js"
	steps := []struct {
		name string
		cmd  Command
		code string
		want ModulePut
	}{
		{"not the first chunk first", chunk(6000, 12000), CodeInvalid, ModulePut{}},
		{"first", chunk(0, 6000), "", ModulePut{Have: 6000}},
		{"again: a no-op", chunk(0, 6000), "", ModulePut{Have: 6000}},
		{"a gap", chunk(12000, 16000), CodeInvalid, ModulePut{}},
		{"second", chunk(6000, 12000), "", ModulePut{Have: 12000}},
		{"another size", &PutQueueModule{Digest: digest, Kind: "js", Size: 5, Code: code[:5], At: qt0}, CodeInvalid, ModulePut{}},
		{"too large a chunk", &PutQueueModule{Digest: digest, Kind: "js", Size: MaxQueueModuleBytes, Code: make([]byte, MaxQueueModuleChunk+1), At: qt0}, CodeInvalid, ModulePut{}},
		{"enqueue before it is complete", task, CodeModuleNotFound, ModulePut{}},
		{"last", chunk(12000, 16000), "", ModulePut{Have: 16000, Complete: true}},
		{"complete: a no-op", chunk(0, 6000), "", ModulePut{Have: 16000, Complete: true}},
	}
	for _, s := range steps {
		r := q.do(s.cmd)
		if r.Code != s.code {
			t.Fatalf("%s: code %q (%s), want %q", s.name, r.Code, r.Message, s.code)
		}
		if mp, ok := r.Value.(*ModulePut); ok && r.Code == "" && *mp != s.want {
			t.Fatalf("%s: %+v, want %+v", s.name, *mp, s.want)
		}
	}
	kind, got, err := st.QueueModule(digest)
	if err != nil || kind != "js" || !bytes.Equal(got, code) {
		t.Fatalf("module: %s, %d bytes, %v", kind, len(got), err)
	}
	if r := q.do(task); r.Code != "" {
		t.Fatalf("enqueue: %s", r.Message)
	}

	// Bytes that do not hash to the digest are dropped at the last chunk.
	bad := &PutQueueModule{Digest: "sha256:" + strings.Repeat("0", 64), Kind: "wasi", Size: 10, Code: []byte("0123456789"), At: qt0}
	if r := q.do(bad); r.Code != "" || !r.Value.(*ModulePut).Reset {
		t.Fatalf("wrong digest: %+v", r)
	}
	if st.HasQueueModule(bad.Digest) {
		t.Fatal("a module with a wrong digest was kept")
	}
}

func TestQueueTenantBound(t *testing.T) {
	defer func(v int) { activePerTenantLimit = v }(activePerTenantLimit)
	activePerTenantLimit = 2
	q := newQueueFSM(t)
	for i, want := range []string{"", "", CodeQueueFull} {
		if r := q.do(newTask(fmt.Sprint("t", i), "", 0)); r.Code != want {
			t.Fatalf("enqueue %d: %q, want %q", i, r.Code, want)
		}
	}
	// A finished task makes room.
	q.do(&CancelTask{ID: "t0", By: "admin", At: at(time.Second)})
	if r := q.do(newTask("t3", "", 0)); r.Code != "" {
		t.Fatalf("enqueue after a cancel: %q", r.Code)
	}
}

func TestQueueReadsAndPagination(t *testing.T) {
	q := newQueueFSM(t)
	st := q.f.State()
	for i := range 25 {
		q.do(newTask(fmt.Sprintf("t%02d", i), "", time.Duration(i)*time.Millisecond))
	}
	// Claim and finish the first five.
	for i := range 5 {
		q.do(&ClaimTask{Tenant: "demo", Node: "n1", Now: at(time.Second), Until: at(time.Minute)})
		q.do(&CompleteTask{ID: fmt.Sprintf("t%02d", i), Attempt: 1, Node: "n1", At: at(time.Second), Outcome: "ok", Next: NextSucceeded})
	}
	q.do(&ClaimTask{Tenant: "demo", Node: "n2", Now: at(time.Second), Until: at(2 * time.Second)})

	list := func(f TaskFilter) []string {
		var ids []string
		for {
			page, next, err := st.ListTasks(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > f.Limit {
				t.Fatalf("page of %d, limit %d", len(page), f.Limit)
			}
			for _, task := range page {
				ids = append(ids, task.ID)
			}
			if next == 0 {
				return ids
			}
			f.After = next
		}
	}
	if ids := list(TaskFilter{Limit: 7}); len(ids) != 25 || ids[0] != "t00" || ids[24] != "t24" {
		t.Fatalf("all: %v", ids)
	}
	if ids := list(TaskFilter{State: TaskSucceeded, Limit: 2}); strings.Join(ids, ",") != "t00,t01,t02,t03,t04" {
		t.Fatalf("succeeded: %v", ids)
	}
	if ids := list(TaskFilter{Tenant: "demo", State: TaskRunning, Limit: 3, MaxScan: 4}); strings.Join(ids, ",") != "t05" {
		t.Fatalf("running: %v", ids)
	}
	if ids := list(TaskFilter{Tenant: "nobody", Limit: 3}); len(ids) != 0 {
		t.Fatalf("nobody: %v", ids)
	}
	if tenants, _ := st.ReadyTenants(at(time.Second), 10); len(tenants) != 1 || tenants[0] != "demo" {
		t.Fatalf("ready tenants: %v", tenants)
	}
	if tenants, _ := st.ReadyTenants(at(-time.Second), 10); len(tenants) != 0 {
		t.Fatalf("ready tenants before anything is due: %v", tenants)
	}
	if due, _ := st.NextDue(); due != at(6*time.Millisecond) {
		t.Fatalf("next due %d", due)
	}
	if exp, _ := st.ExpiredClaims(at(time.Second)); exp {
		t.Fatal("claims expired early")
	}
	if exp, _ := st.ExpiredClaims(at(3 * time.Second)); !exp {
		t.Fatal("n2's claim did not expire")
	}
	if claims, _ := st.ClaimsOf("n2"); len(claims) != 1 || claims[0].ID != "t05" {
		t.Fatalf("claims of n2: %v", claims)
	}
	if due, _ := st.PurgeDue(at(2 * time.Second)); !due {
		t.Fatal("nothing to purge")
	}
}

// queueScript is a history of queue commands with refusals in it.
func queueScript(t testing.TB) [][]byte {
	t.Helper()
	cmds := queueSetup(t)
	for i := range 6 {
		cmds = append(cmds, newTask(fmt.Sprint("t", i), fmt.Sprint("k", i%4), time.Duration(i)*time.Millisecond))
	}
	cmds = append(cmds,
		&ClaimTask{Tenant: "demo", Node: "n1", Now: at(time.Second), Until: at(5 * time.Second)},
		&ClaimTask{Tenant: "demo", Node: "n2", Now: at(time.Second), Until: at(3 * time.Second)},
		&RenewClaims{Node: "n1", Now: at(2 * time.Second), Until: at(8 * time.Second), Tasks: []TaskAttempt{{ID: "t0", Attempt: 1}}},
		&CompleteTask{ID: "t0", Attempt: 1, Node: "n1", At: at(2 * time.Second), Outcome: "error", Next: NextRetry, RetryAt: at(4 * time.Second), Result: []byte(`{"x":1}`)},
		&CompleteTask{ID: "t1", Attempt: 1, Node: "n1", At: at(2 * time.Second), Outcome: "ok", Next: NextSucceeded}, // refused: n2 holds it
		&CancelTask{ID: "t2", By: "admin", At: at(2 * time.Second)},
		&ReclaimTasks{Now: at(4 * time.Second), Max: 10},
		&ClaimTask{Tenant: "demo", Node: "n1", Now: at(5 * time.Second), Until: at(9 * time.Second)},
		&ReclaimTasks{Now: at(6 * time.Second), Node: "n1", Max: 10},
		&PurgeTasks{Before: at(3 * time.Second), Max: 10},
	)
	var out [][]byte
	for _, c := range cmds {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestQueueReplayIsDeterministic applies the queue script in two
// batchings, and from a snapshot plus the tail: the state is the same
// byte for byte.
func TestQueueReplayIsDeterministic(t *testing.T) {
	cmds := queueScript(t)
	a, b := newStateDB(t), newStateDB(t)
	res := applyAll(t, NewFSM(a, nil), cmds, 1)
	refused := 0
	for _, r := range res {
		if r.Code != "" {
			refused++
		}
	}
	if refused != 1 {
		t.Fatalf("%d refusals, want 1", refused)
	}
	fb := NewFSM(b, nil)
	var logs []*raft.Log
	for i, c := range cmds {
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: c})
	}
	fb.ApplyBatch(logs[:4])
	fb.ApplyBatch(logs[4:9])
	fb.ApplyBatch(logs[9:])
	if !bytes.Equal(stateBytes(t, a), stateBytes(t, b)) {
		t.Fatal("replaying the queue script gave different state")
	}

	src := NewFSM(newStateDB(t), nil)
	applyAll(t, src, cmds[:12], 1)
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	dstDB := newStateDB(t)
	dst := NewFSM(dstDB, nil)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	applyAll(t, dst, cmds[12:], 13)
	if !bytes.Equal(stateBytes(t, a), stateBytes(t, dstDB)) {
		t.Fatal("snapshot + tail differs from the full queue script")
	}
}

// TestQueueResultsForward: every queue result survives the trip a
// forwarded write takes.
func TestQueueResultsForward(t *testing.T) {
	for _, r := range []*Result{
		{Value: &EnqueueResult{ID: "t", Created: true, State: TaskQueued, Queued: 3}, Index: 7},
		{Value: &ClaimResult{ID: "t", Attempt: 2}},
		{Value: &RenewResult{Lost: []string{"a"}, Cancelled: []string{"b"}}},
		{Value: &TaskStatus{ID: "t", State: TaskRunning, Attempts: 1, CancelRequested: true}},
		{Value: &ReclaimResult{Dead: []string{"x"}}},
		{Value: 4},
		{Value: &ModulePut{Have: 3, Complete: true}},
	} {
		op := map[string]Op{"*consensus.EnqueueResult": OpEnqueueTask, "*consensus.ClaimResult": OpClaimTask, "*consensus.RenewResult": OpRenewClaims,
			"*consensus.TaskStatus": OpCompleteTask, "*consensus.ReclaimResult": OpReclaimTasks, "int": OpPurgeTasks, "*consensus.ModulePut": OpPutQueueModule}[fmt.Sprintf("%T", r.Value)]
		b, err := MarshalResult(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalResult(op, b)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%+v", got.Value) != fmt.Sprintf("%+v", r.Value) || got.Index != r.Index {
			t.Errorf("%s: %+v, want %+v", op, got.Value, r.Value)
		}
	}
}
