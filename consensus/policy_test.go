package consensus

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/policy"
)

// bundleVariant is the built-in bundle with docs-reader's cpu_ms set to
// cpu: a distinct, valid bundle per value.
func bundleVariant(t testing.TB, cpu int) *policy.Bundle {
	t.Helper()
	src := strings.Replace(string(policy.DefaultYAML()), "cpu_ms: 500", fmt.Sprintf("cpu_ms: %d", cpu), 1)
	b, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ver(v uint64) *uint64 { return &v }

// policyStep is one command of a lifecycle script and what it must do.
type policyStep struct {
	name string
	cmd  Command
	code string // the refusal, or "" for success
	// after the step: the digests prod's stable, stage and dev point at
	// ("" skips the check), and the canary's digest ("-": none).
	prod, stage, dev, canary string
}

// lifecycle is a script through every lifecycle command with the
// refusals the issue lists: an invalid bundle, an unknown digest, a
// skipped gate, a percentage out of range, a stale version.
func lifecycle(t testing.TB) (steps []policyStep, a, b, c string) {
	t.Helper()
	ba, bb, bc := policy.Default(), bundleVariant(t, 400), bundleVariant(t, 300)
	a, b, c = ba.Digest(), bb.Digest(), bc.Digest()
	at := func(s int) int64 { return at(time.Duration(s) * time.Second) }
	push := func(bundle *policy.Bundle, env string) *PushPolicy {
		return &PushPolicy{Canonical: bundle.Canonical(), Source: []byte("# yaml"), Env: env, By: "admin", At: at(1)}
	}
	return []policyStep{
		{name: "seed prod", cmd: &PutPolicy{Canonical: ba.Canonical(), Env: "prod", By: "n1", At: at(0)}, prod: a, canary: "-"},
		{name: "push b to dev", cmd: push(bb, "dev"), dev: b},
		{name: "invalid bundle", cmd: &PushPolicy{Canonical: []byte(`{"version":2}`), Env: "dev", By: "admin", At: at(2)}, code: CodeInvalidPolicy, dev: b},
		{name: "unknown env", cmd: push(bb, "qa"), code: CodeUnknownEnv},
		{name: "push to prod without override", cmd: push(bc, "prod"), code: CodeGateNotPassed, prod: a},
		{name: "override without reason", cmd: &PushPolicy{Canonical: bc.Canonical(), Env: "prod", Override: true, By: "admin", At: at(2)}, code: CodeReasonRequired, prod: a},
		{name: "promote b to prod skips stage", cmd: &PromotePolicy{To: "prod", Digest: b, By: "op", At: at(3)}, code: CodeGateNotPassed, prod: a},
		{name: "promote unknown digest", cmd: &PromotePolicy{To: "stage", Digest: "sha256:" + strings.Repeat("0", 64), By: "op", At: at(3)}, code: CodeUnknownPolicy},
		{name: "promote to dev", cmd: &PromotePolicy{To: "dev", By: "op", At: at(3)}, code: CodeInvalid},
		{name: "promote dev to stage", cmd: &PromotePolicy{To: "stage", By: "op", At: at(4), IfVersion: ver(0)}, stage: b},
		{name: "promote again is no change", cmd: &PromotePolicy{To: "stage", By: "op", At: at(4)}, code: CodeUnchanged, stage: b},
		{name: "stale version", cmd: &PromotePolicy{To: "prod", By: "op", At: at(5), IfVersion: ver(0)}, code: CodePolicyConflict, prod: a},
		{name: "canary above 100", cmd: &SetCanary{Percent: 101, By: "op", At: at(5)}, code: CodeInvalidPercent, canary: "-"},
		{name: "canary below 0", cmd: &SetCanary{Percent: -1, By: "op", At: at(5)}, code: CodeInvalidPercent, canary: "-"},
		{name: "canary of the stable digest", cmd: &SetCanary{Digest: a, Percent: 10, By: "op", At: at(5)}, code: CodeCanaryIsStable, canary: "-"},
		{name: "canary of a digest never in stage", cmd: &SetCanary{Digest: c, Percent: 10, By: "op", At: at(5)}, code: CodeUnknownPolicy, canary: "-"},
		{name: "abort with no canary", cmd: &EndCanary{By: "op", At: at(5)}, code: CodeNoCanary},
		{name: "canary 10% of stage's digest", cmd: &SetCanary{Percent: 10, By: "op", At: at(6)}, prod: a, canary: b},
		{name: "canary to 50%", cmd: &SetCanary{Percent: 50, By: "op", At: at(7)}, prod: a, canary: b},
		{name: "abort a canary that is not the running one", cmd: &EndCanary{IfDigest: c, By: "auto", At: at(8)}, code: CodePolicyConflict, canary: b},
		{name: "abort", cmd: &EndCanary{Reason: "errors", By: "op", At: at(8)}, prod: a, canary: "-"},
		{name: "canary again", cmd: &SetCanary{Percent: 10, By: "op", At: at(9)}, canary: b},
		{name: "canary promote", cmd: &EndCanary{Promote: true, By: "op", At: at(10)}, prod: b, canary: "-"},
		{name: "rollback prod", cmd: &RollbackPolicy{Env: "prod", Reason: "regression", By: "op", At: at(11)}, prod: a},
		{name: "rollback prod again: nothing left", cmd: &RollbackPolicy{Env: "prod", By: "op", At: at(12)}, code: CodeNothingToRollBk, prod: a},
		{name: "admin override to prod", cmd: &PushPolicy{Canonical: bc.Canonical(), Env: "prod", Override: true, Reason: "hotfix", By: "admin", At: at(13)}, prod: c},
		{name: "a stage digest promoted to prod ends nothing it should not", cmd: &PromotePolicy{To: "prod", By: "op", At: at(14)}, prod: b, stage: b},
		{name: "rollback twice walks back", cmd: &RollbackPolicy{Env: "prod", By: "op", At: at(15)}, prod: c},
		{name: "and back again", cmd: &RollbackPolicy{Env: "prod", By: "op", At: at(16)}, prod: a},
		{name: "canary of a stored digest never in stage", cmd: &SetCanary{Digest: c, Percent: 5, By: "op", At: at(17)}, code: CodeGateNotPassed, canary: "-"},
		{name: "canary override", cmd: &SetCanary{Digest: c, Percent: 5, Override: true, Reason: "patch", By: "admin", At: at(18)}, prod: a, canary: c},
		{name: "the overridden canary's percentage changes without a new override", cmd: &SetCanary{Percent: 20, By: "op", At: at(19)}, prod: a, canary: c},
	}, a, b, c
}

func runSteps(t *testing.T, f *FSM, steps []policyStep, from uint64) {
	t.Helper()
	st := f.State()
	for i, s := range steps {
		b, err := Encode(s.cmd)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := st.Digest()
		r := applyAll(t, f, [][]byte{b}, from+uint64(i))[0]
		if r.Code != s.code {
			t.Fatalf("%s: code %q (%s), want %q", s.name, r.Code, r.Message, s.code)
		}
		if s.code != "" {
			if after, _ := st.Digest(); after != before {
				t.Fatalf("%s: refused, but state changed", s.name)
			}
		}
		for env, want := range map[string]string{"prod": s.prod, "stage": s.stage, "dev": s.dev} {
			if want == "" {
				continue
			}
			if got, _ := st.EnvDigest(env); got != want {
				t.Fatalf("%s: %s points at %s, want %s", s.name, env, got, want)
			}
		}
		switch c, err := st.Canary(); {
		case s.canary == "":
		case s.canary == "-" && !errors.Is(err, ErrNotFound):
			t.Fatalf("%s: canary %+v, %v; want none", s.name, c, err)
		case s.canary != "-" && (err != nil || c.Digest != s.canary):
			t.Fatalf("%s: canary %+v, %v; want %s", s.name, c, err, s.canary)
		}
	}
}

func TestPolicyLifecycle(t *testing.T) {
	f := NewFSM(newStateDB(t), nil)
	steps, a, b, c := lifecycle(t)
	runSteps(t, f, steps, 1)
	st := f.State()

	// History: every change, newest first, never rewritten.
	h, err := st.History("prod", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range h {
		actions = append(actions, e.Action)
	}
	want := "canary_set canary_set rollback rollback promote push rollback canary_promote canary_set canary_abort canary_set canary_set put"
	if got := strings.Join(actions, " "); got != want {
		t.Fatalf("prod history %q, want %q", got, want)
	}
	if h[0].Seq != uint64(len(h)) || h[len(h)-1].Seq != 1 {
		t.Errorf("sequence numbers %d … %d", h[0].Seq, h[len(h)-1].Seq)
	}
	if e := h[5]; !e.Override || e.Reason != "hotfix" || e.Digest != c || e.Previous != a {
		t.Errorf("override entry %+v", e)
	}
	if e := h[6]; e.Digest != a || e.Previous != b || e.Reason != "regression" {
		t.Errorf("rollback entry %+v", e)
	}
	if e := h[8]; e.CanaryDigest != b || e.CanaryPercent != 10 {
		t.Errorf("canary entry %+v", e)
	}
	// Paging: before a sequence number.
	page, _ := st.History("prod", h[1].Seq, 2)
	if len(page) != 2 || page[0].Seq != h[2].Seq {
		t.Errorf("page before %d: %+v", h[1].Seq, page)
	}
	if ok, _ := st.Seen("stage", b); !ok {
		t.Error("b is not marked seen in stage")
	}
	if ok, _ := st.Seen("stage", c); ok {
		t.Error("c is marked seen in stage")
	}
	es, _ := st.EnvState("prod")
	if es.Version != uint64(len(h)) || len(es.Previous) != 0 {
		t.Errorf("prod env state %+v", es)
	}
}

// TestPolicyHistorySurvivesSnapshot: history, the canary and the
// rollback stack come back from a snapshot; the log's tail applies on
// top to the same state as the whole log.
func TestPolicyHistorySurvivesSnapshot(t *testing.T) {
	steps, a, _, _ := lifecycle(t)
	cut := 19 // mid-canary
	full := NewFSM(newStateDB(t), nil)
	runSteps(t, full, steps, 1)

	src := NewFSM(newStateDB(t), nil)
	runSteps(t, src, steps[:cut], 1)
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	dst := NewFSM(newStateDB(t), nil)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	hs, _ := src.State().History("prod", 0, 100)
	hd, _ := dst.State().History("prod", 0, 100)
	if fmt.Sprint(hs) != fmt.Sprint(hd) || len(hd) == 0 {
		t.Fatalf("history after restore:\n%v\nwant\n%v", hd, hs)
	}
	if c, err := dst.State().Canary(); err != nil || c.Percent != 50 {
		t.Fatalf("canary after restore %+v, %v", c, err)
	}
	runSteps(t, dst, steps[cut:], uint64(cut+1))
	if d, _ := dst.State().EnvDigest("prod"); d != a {
		t.Fatalf("prod %s after the tail", d)
	}
	x, _ := full.State().Digest()
	y, _ := dst.State().Digest()
	if x != y {
		t.Fatalf("state digests differ: %s vs %s", x, y)
	}
}

// TestCanaryPicksSplit: over 10,000 lease ids a 10% canary takes within
// ±2% of them, every percentage is monotone (a lease in a 10% canary is
// in the 50% one), and the choice is a function of the id alone.
func TestCanaryPicksSplit(t *testing.T) {
	const n = 10000
	// Lease ids as node makes them: "lse_" and 16 random bytes in
	// lower-case unpadded base32 (from a fixed seed, so the test is
	// deterministic).
	rng := rand.New(rand.NewPCG(15, 15))
	enc := base32.StdEncoding.WithPadding(base32.NoPadding)
	ids := make([]string, n)
	for i := range ids {
		b := make([]byte, 16)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		ids[i] = "lse_" + strings.ToLower(enc.EncodeToString(b))
	}
	for _, pct := range []int{0, 1, 10, 50, 90, 100} {
		k := 0
		for i := range n {
			id := ids[i]
			p := CanaryPicks(id, pct)
			if p {
				k++
			}
			if p != CanaryPicks(id, pct) {
				t.Fatalf("%s: two answers", id)
			}
			if p && pct < 100 && !CanaryPicks(id, pct+1) {
				t.Fatalf("%s: in the %d%% canary, not in the %d%% one", id, pct, pct+1)
			}
		}
		got := float64(k) / n * 100
		t.Logf("%d%% canary: %d of %d lease ids (%.2f%%)", pct, k, n, got)
		if got < float64(pct)-2 || got > float64(pct)+2 {
			t.Errorf("%d%% canary took %.2f%% of %d ids", pct, got, n)
		}
		if (pct == 0 && k != 0) || (pct == 100 && k != n) {
			t.Errorf("%d%% canary took %d of %d", pct, k, n)
		}
	}
}

func TestLeaseDigest(t *testing.T) {
	f := NewFSM(newStateDB(t), nil)
	steps, a, b, _ := lifecycle(t)
	runSteps(t, f, steps[:18], 1) // through "canary 10%"
	st := f.State()
	canary := 0
	for i := range 2000 {
		id := fmt.Sprintf("lse_%d", i)
		d, isCanary, err := st.LeaseDigest("prod", id)
		if err != nil {
			t.Fatal(err)
		}
		if isCanary != CanaryPicks(id, 10) || (isCanary && d != b) || (!isCanary && d != a) {
			t.Fatalf("%s: %s canary=%v", id, d, isCanary)
		}
		if isCanary {
			canary++
		}
	}
	if canary < 160 || canary > 240 {
		t.Errorf("%d of 2000 leases in a 10%% canary", canary)
	}
	if d, isCanary, _ := st.LeaseDigest("stage", "lse_1"); d != b || isCanary {
		t.Errorf("stage lease digest %s %v", d, isCanary)
	}
}

// TestLeaseEnvironment: a lease names its environment; a tenant issues
// leases only in the environments its bundle lets it (prod when it
// names none).
func TestLeaseEnvironment(t *testing.T) {
	src := strings.Replace(string(policy.DefaultYAML()), "    profiles: [docs-reader, content-transformer, api-caller]\n",
		"    profiles: [docs-reader, content-transformer, api-caller]\n    environments: [dev, prod]\n", 1)
	src = strings.Replace(src, "\ndeny:", "  other:\n    profiles: [docs-reader]\n\ndeny:", 1)
	bundle, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	f := NewFSM(newStateDB(t), nil)
	var log [][]byte
	for _, c := range []Command{
		&PutNodeKey{Key: NodeKey{KID: "k", NodeID: "n1", Use: KeyUseLease, Algorithm: "EdDSA", PublicKey: make([]byte, 32)}},
		&PutPolicy{Canonical: bundle.Canonical(), Env: "prod", By: "n1", At: at(0)},
		&PushPolicy{Canonical: bundle.Canonical(), Env: "dev", By: "n1", At: at(0)},
	} {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, b)
	}
	for _, r := range applyAll(t, f, log, 1) {
		if r.Code != "" {
			t.Fatalf("setup: %s %s", r.Code, r.Message)
		}
	}
	idx := uint64(len(log))
	for _, tc := range []struct {
		tenant, env, code string
	}{
		{"demo", "", ""},
		{"demo", "prod", ""},
		{"demo", "dev", ""},
		{"demo", "stage", CodeEnvNotAllowed},
		{"demo", "qa", CodeUnknownEnv},
		{"other", "", ""},
		{"other", "prod", ""},
		{"other", "dev", CodeEnvNotAllowed},
	} {
		idx++
		id := fmt.Sprintf("l%d", idx)
		l := Lease{ID: id, Tenant: tc.tenant, Profile: "docs-reader", PolicyDigest: bundle.Digest(), Env: tc.env,
			Class: ClassInteractive, IssuedAt: at(0), NotBefore: at(0), ExpiresAt: at(time.Minute), KID: "k"}
		b, err := Encode(&IssueLease{Lease: l})
		if err != nil {
			t.Fatal(err)
		}
		r := applyAll(t, f, [][]byte{b}, idx)[0]
		if r.Code != tc.code {
			t.Errorf("%s in %q: code %q (%s), want %q", tc.tenant, tc.env, r.Code, r.Message, tc.code)
			continue
		}
		if tc.code == "" {
			got, err := f.State().Lease(id)
			if err != nil || got.Env != tc.env {
				t.Errorf("%s: stored %+v, %v", id, got, err)
			}
		}
	}
}

// TestPolicyStateFormat pins the bytes the lifecycle script leaves under
// the policy prefix: history and environment records are a replicated
// format (see TestQueueStateFormat).
func TestPolicyStateFormat(t *testing.T) {
	f := NewFSM(newStateDB(t), nil)
	steps, _, _, _ := lifecycle(t)
	runSteps(t, f, steps, 1)
	h := sha256.New()
	keys := 0
	if err := scan(f.db, PrefixState+"policy/", func(k, v []byte) error {
		h.Write(k)
		h.Write([]byte{0})
		h.Write(v)
		h.Write([]byte{0})
		keys++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	const want = "13af1de906576c34092e5c48b111d7542123fc5c149d486331d2f0b11a0c43fb"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("policy state: %d keys, sha256 %s, want %s", keys, got, want)
	}
}

// FuzzPolicyCommands applies arbitrary lifecycle commands to the state
// the lifecycle script leaves (each on a batch that is thrown away, so
// every input sees the same state): none panics, and one that applies
// leaves every environment pointing at a stored bundle.
func FuzzPolicyCommands(f *testing.F) {
	steps, _, _, _ := lifecycle(f)
	db := newStateDB(f)
	fsm := NewFSM(db, nil)
	for i, s := range steps {
		b, err := Encode(s.cmd)
		if err != nil {
			f.Fatal(err)
		}
		applyAll(f, fsm, [][]byte{b}, uint64(i+1))
		f.Add(b)
	}
	policyOps := map[Op]bool{OpPutPolicy: true, OpPushPolicy: true, OpPromotePolicy: true, OpRollbackPolicy: true, OpSetCanary: true, OpEndCanary: true}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil || !policyOps[c.Op()] {
			return
		}
		batch := db.NewIndexedBatch()
		defer batch.Close()
		tx := &Tx{r: batch, pending: map[string][]byte{}}
		if _, err := apply(tx, c); err != nil {
			return
		}
		for _, env := range policy.Environments {
			d, err := getString(tx, prefixEnv+env)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			var rec PolicyRecord
			if err != nil || getRecord(tx, prefixBundle+d, &rec) != nil {
				t.Fatalf("%s applied, and %s points at %q, which is not stored (%v)", c.Op(), env, d, err)
			}
		}
	})
}
