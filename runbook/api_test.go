package runbook

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/ledger"
	"github.com/leash-dev/leash/policy"
)

// fsmNode is a one-replica "cluster": the real state machine on Pebble,
// each proposal applied in order. While down is set, every proposal
// fails as with no leader (nothing applied).
type fsmNode struct {
	t   *testing.T
	fsm *consensus.FSM
	mu  sync.Mutex
	idx uint64

	down       bool
	refused    int      // proposals refused while down
	governance []string // ids of the governance entries handed to the node
}

func newFSMNode(t *testing.T) (*fsmNode, ed25519.PrivateKey) {
	db, err := consensus.OpenDB(filepath.Join(t.TempDir(), "pebble"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	n := &fsmNode{t: t, fsm: consensus.NewFSM(db, nil)}
	pub, priv, _ := ed25519.GenerateKey(nil)
	for _, c := range []consensus.Command{
		&consensus.PutNodeKey{Key: consensus.NodeKey{KID: ledger.KeyID(pub), NodeID: "n1", Use: consensus.KeyUseReceipt, Algorithm: "EdDSA", PublicKey: pub}},
		&consensus.LedgerInit{Origin: "leash/test"},
		&consensus.PutPolicy{Canonical: policy.Default().Canonical(), Env: "prod", By: "test", At: time.Now().UnixNano()},
	} {
		if _, err := n.Propose(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	return n, priv
}

func (n *fsmNode) Propose(_ context.Context, c consensus.Command) (*consensus.Result, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down {
		n.refused++
		return nil, consensus.ErrNoLeader
	}
	b, err := consensus.Encode(c)
	if err != nil {
		return nil, err
	}
	n.idx++
	r := n.fsm.Apply(&raft.Log{Index: n.idx, Term: 1, Type: raft.LogCommand, Data: b}).(*consensus.Result)
	return r, r.Err()
}

func (n *fsmNode) setDown(v bool) {
	n.mu.Lock()
	n.down = v
	n.mu.Unlock()
}

func (n *fsmNode) Fence(context.Context, uint64) {}
func (n *fsmNode) ProposeError(err error) error  { return err }
func (n *fsmNode) IsLeader() bool                { return true }

// AppendGovernance appends at once (the node's spool is the node's; see
// e2e/runbook_test.go:TestGovernanceSurvivesKill).
func (n *fsmNode) AppendGovernance(ctx context.Context, id string, env []byte) (int64, error) {
	n.mu.Lock()
	n.governance = append(n.governance, id)
	n.mu.Unlock()
	res, err := n.Propose(ctx, &consensus.AppendReceipts{Envelopes: [][]byte{env}, MayRepeat: true})
	if err != nil {
		return -1, err
	}
	return res.Value.(*consensus.AppendResult).Indexes[0], nil
}

// governanceIDs are the ids of the governance entries in the ledger.
func governanceIDs(t *testing.T, st *consensus.State) []string {
	t.Helper()
	l, err := st.Ledger()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	size, err := l.Log.Size(l.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := int64(0); i < size; i++ {
		b, err := l.Log.Record(l.Reader, i)
		if err != nil {
			t.Fatal(err)
		}
		env, err := ledger.DecodeEnvelope(b)
		if err != nil {
			t.Fatal(err)
		}
		if env.PayloadType != ledger.GovernancePayloadType {
			continue
		}
		var g ledger.Governance
		if err := json.Unmarshal(env.Payload, &g); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, g.Action+" "+g.ID)
	}
	return ids
}

// call serves one request through the service's handler for op, as an
// operator key.
func call(t *testing.T, s *Service, op, method, target string, body any) *httptest.ResponseRecorder {
	t.Helper()
	var buf bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&buf).Encode(body)
	}
	r := httptest.NewRequest(method, target, &buf)
	if i := strings.Index(target, "/frozen/"); i >= 0 {
		r.SetPathValue("profile", strings.SplitN(target[i+len("/frozen/"):], "?", 2)[0])
	}
	r = r.WithContext(httpapi.WithCaller(r.Context(), &httpapi.Caller{Role: httpapi.Operator, KeyID: "op"}))
	w := httptest.NewRecorder()
	if err := s.Handlers()[op](w, r); err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return w
}

// TestGovernanceNotAppended: a governance append that fails (no leader)
// does not fail the action. The freeze is in force and answered with
// ledger_index -1; the signed entry was handed to the node once (which
// keeps it in its spool and appends it later: that is the node's, tested
// on a real node killed with SIGKILL in
// e2e/runbook_test.go:TestGovernanceSurvivesKill).
func TestGovernanceNotAppended(t *testing.T) {
	n, key := newFSMNode(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	s := NewService(Config{State: n.fsm.State(), Node: n, NodeID: "n1", ReceiptKey: key,
		Log: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))})
	// The freeze itself applies; then the ledger becomes unreachable
	// for the governance append: down from the next proposal on.
	var res api.RunbookResult
	s.cfg.Node = &downAfter{fsmNode: n}
	w := call(t, s, "freezeProfile", "PUT", "/v1/runbook/frozen/docs-reader", api.FreezeRequest{RunbookAction: api.RunbookAction{Reason: "drill"}})
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || w.Code != 200 {
		t.Fatalf("freeze: %d %s", w.Code, w.Body)
	}
	want := "raft:" + w.Header().Get(indexHeader)
	if res.LedgerIndex != -1 || len(n.governance) != 1 || n.governance[0] != want {
		t.Fatalf("answer %+v, entries handed to the node %v: want ledger_index -1 and [%s]", res, n.governance, want)
	}
	if fr, err := n.fsm.State().FrozenProfiles(); err != nil || len(fr) != 1 {
		t.Fatalf("the freeze is not in force: %+v %v", fr, err)
	}
	if got := governanceIDs(t, n.fsm.State()); len(got) != 0 {
		t.Fatalf("entries in the ledger while it was unreachable: %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "waits in the node's spool") {
		t.Fatalf("no log line for the entry left to the spool:\n%s", logs.String())
	}
}

// downAfter lets the first proposal through, then takes the node down.
type downAfter struct {
	*fsmNode
	once sync.Once
}

func (d *downAfter) Propose(ctx context.Context, c consensus.Command) (*consensus.Result, error) {
	r, err := d.fsmNode.Propose(ctx, c)
	d.once.Do(func() { d.setDown(true) })
	return r, err
}

// TestOverdueStepRaisesEvent: an incident's step past its time box raises
// incident_step_overdue once, on the leader; a step done in time, or an
// incident closed, raises nothing.
func TestOverdueStepRaisesEvent(t *testing.T) {
	n, key := newFSMNode(t)
	var mu sync.Mutex
	var got []events.IncidentStepOverdue
	now := time.Now()
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	s := NewService(Config{State: n.fsm.State(), Node: n, NodeID: "n1", ReceiptKey: key, Now: clock,
		Events: events.EmitterFunc(func(_ context.Context, e events.Event) {
			var d events.IncidentStepOverdue
			if e.Type == events.TypeIncidentStepOverdue && e.DecodeData(&d) == nil {
				mu.Lock()
				got = append(got, d)
				mu.Unlock()
			}
		})})
	for _, id := range []string{"inc-a", "inc-b"} {
		if w := call(t, s, "openIncident", "POST", "/v1/incidents", api.IncidentRequest{ID: id, Title: "drill", Owner: "alice",
			Owners: map[string]string{"revoke": "bob"}}); w.Code != 201 {
			t.Fatalf("open: %d %s", w.Code, w.Body)
		}
	}
	// The freeze is done in time; inc-b is closed.
	call(t, s, "freezeProfile", "PUT", "/v1/runbook/frozen/docs-reader", api.FreezeRequest{RunbookAction: api.RunbookAction{Incident: "inc-a"}})
	r := httptest.NewRequest("POST", "/v1/incidents/inc-b/close", strings.NewReader("{}"))
	r.SetPathValue("id", "inc-b")
	r = r.WithContext(httpapi.WithCaller(r.Context(), &httpapi.Caller{Role: httpapi.Operator, KeyID: "op"}))
	if err := s.Handlers()["closeIncident"](httptest.NewRecorder(), r); err != nil {
		t.Fatal(err)
	}
	warned := map[string]bool{}
	s.checkOverdue(context.Background(), warned)
	if len(got) != 0 {
		t.Fatalf("events before any time box ran out: %+v", got)
	}
	// 20 minutes on: freeze (done) and revoke (15 min) are past their
	// boxes; block (30 min) is not.
	mu.Lock()
	now = now.Add(20 * time.Minute)
	mu.Unlock()
	s.checkOverdue(context.Background(), warned)
	s.checkOverdue(context.Background(), warned)
	if len(got) != 1 || got[0].Incident != "inc-a" || got[0].Step != consensus.StepRevoke || got[0].Owner != "bob" {
		t.Fatalf("overdue events %+v, want one for inc-a's revoke step, owner bob", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestThawCanaryRefusals: a canary thaw of a profile that is not frozen
// answers 404 profile_not_frozen (as docs/api.md says), and one naming a
// digest that is not prod's canary 409 no_canary / not_the_canary.
func TestThawCanaryRefusals(t *testing.T) {
	n, key := newFSMNode(t)
	s := NewService(Config{State: n.fsm.State(), Node: n, NodeID: "n1", ReceiptKey: key})
	thaw := func(target string) *api.Error {
		t.Helper()
		r := httptest.NewRequest("DELETE", target, nil)
		r.SetPathValue("profile", "docs-reader")
		r = r.WithContext(httpapi.WithCaller(r.Context(), &httpapi.Caller{Role: httpapi.Operator, KeyID: "op"}))
		err := s.Handlers()["unfreezeProfile"](httptest.NewRecorder(), r)
		ae, ok := api.AsError(err)
		if !ok {
			t.Fatalf("%s: %v, want an API error", target, err)
		}
		return ae
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	if ae := thaw("/v1/runbook/frozen/docs-reader?canary=" + digest + "&reason=restore"); ae.Status != 404 || ae.Code != consensus.CodeNotFrozen {
		t.Fatalf("thaw of a profile not frozen: %d %s", ae.Status, ae.Code)
	}
	call(t, s, "freezeProfile", "PUT", "/v1/runbook/frozen/docs-reader", api.FreezeRequest{RunbookAction: api.RunbookAction{Reason: "drill"}})
	if ae := thaw("/v1/runbook/frozen/docs-reader?canary=" + digest + "&reason=restore"); ae.Status != 409 || ae.Code != consensus.CodeNoCanary {
		t.Fatalf("thaw without a canary: %d %s", ae.Status, ae.Code)
	}
	if ae := thaw("/v1/runbook/frozen/docs-reader?canary=sha256:zz&reason=restore"); ae.Status != 400 {
		t.Fatalf("thaw with a malformed digest: %d %s", ae.Status, ae.Code)
	}
}
