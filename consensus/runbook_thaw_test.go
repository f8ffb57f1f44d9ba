package consensus

import (
	"bytes"
	"testing"
	"time"

	"github.com/leash-dev/leash/policy"
)

// TestThawCanary: a restore's partial thaw. While docs-reader is frozen,
// a thaw needs prod to run a canary of the digest named; once thawed, a
// lease of the profile issued under the canary's digest passes and one
// under the stable digest is still refused; the incident's restore step
// is done by the thaw; after the canary is promoted every new lease
// carries the thawed digest and passes; a full thaw removes the record.
// Refusals write nothing.
func TestThawCanary(t *testing.T) {
	db := newStateDB(t)
	f := NewFSM(db, nil)
	st := f.State()
	stable, patched := policy.Default(), bundleVariant(t, 400)
	idx := uint64(0)
	apply := func(c Command) *Result {
		t.Helper()
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		idx++
		return applyAll(t, f, [][]byte{b}, idx)[0]
	}
	must := func(c Command) *Result {
		t.Helper()
		r := apply(c)
		if r.Code != "" {
			t.Fatalf("%T: %s (%s)", c, r.Code, r.Message)
		}
		return r
	}
	refused := func(c Command, code string) {
		t.Helper()
		before := rbStateBytes(t, db)
		if r := apply(c); r.Code != code {
			t.Fatalf("%T: code %q (%s), want %q", c, r.Code, r.Message, code)
		}
		if !bytes.Equal(before, rbStateBytes(t, db)) {
			t.Fatal("a refused command changed state")
		}
	}
	lease := func(id, digest string) *IssueLease {
		return &IssueLease{Lease: Lease{ID: id, Tenant: "demo", Profile: "docs-reader", PolicyDigest: digest, Class: ClassInteractive,
			IssuedAt: qt0, NotBefore: qt0, ExpiresAt: qt0 + int64(10*time.Minute), IssuedBy: "n1", KID: "n1-lease"}}
	}
	for _, c := range queueSetup(t) {
		must(c)
	}
	must(newIncident("inc-1", time.Second))
	must(&FreezeProfile{Profile: "docs-reader", Frozen: true, Action: act("key:op", 2*time.Second, "inc-1")})
	thaw := &ThawCanary{Profile: "docs-reader", Digest: patched.Digest(), Action: act("key:op", 5*time.Second, "inc-1")}
	refused(thaw, CodeNoCanary)
	refused(&ThawCanary{Profile: "api-caller", Digest: patched.Digest(), Action: act("key:op", 5*time.Second, "")}, CodeNotFrozen)
	refused(&ThawCanary{Profile: "docs-reader", Digest: patched.Digest()}, CodeInvalid)

	must(&PushPolicy{Canonical: patched.Canonical(), Source: []byte("# yaml"), Env: "dev", By: "key:op", At: at(3 * time.Second)})
	must(&PromotePolicy{To: "stage", Digest: patched.Digest(), By: "key:op", At: at(3 * time.Second)})
	must(&SetCanary{Percent: 10, By: "key:op", At: at(4 * time.Second)})
	refused(&ThawCanary{Profile: "docs-reader", Digest: stable.Digest(), Action: act("key:op", 5*time.Second, "inc-1")}, CodeNotCanary)

	refused(lease("c0", patched.Digest()), CodeProfileFrozen)
	r := must(thaw)
	if fr := r.Value.(*Frozen); fr.ThawDigest != patched.Digest() || fr.Thawed == nil || fr.Thawed.By != "key:op" || fr.Action.At != at(2*time.Second) {
		t.Fatalf("thawed record %+v", fr)
	}
	must(lease("c1", patched.Digest()))
	refused(lease("s1", stable.Digest()), CodeProfileFrozen)
	inc, err := st.Incident("inc-1")
	if err != nil {
		t.Fatal(err)
	}
	if last := inc.Timeline[len(inc.Timeline)-1]; last.Kind != "restore" || !bytes.Contains([]byte(last.Detail), []byte("at 10%")) {
		t.Fatalf("timeline's last entry %+v", last)
	}
	for _, s := range inc.Steps {
		if s.Name == StepRestore && s.DoneAt != at(5*time.Second) {
			t.Fatalf("restore step %+v", s)
		}
	}
	// Promoted: the patched digest is prod's stable one, so every new
	// lease carries it and passes the freeze.
	must(&EndCanary{Promote: true, By: "key:op", At: at(6 * time.Second)})
	if d, _, err := st.LeaseDigest(policy.EnvProd, "any-id"); err != nil || d != patched.Digest() {
		t.Fatalf("prod's digest %s %v", d, err)
	}
	must(lease("p1", patched.Digest()))
	// A freeze again forgets the thaw.
	must(&FreezeProfile{Profile: "docs-reader", Frozen: true, Action: act("key:op", 7*time.Second, "")})
	refused(lease("p2", patched.Digest()), CodeProfileFrozen)
	must(&FreezeProfile{Profile: "docs-reader", Frozen: false, Action: act("key:op", 8*time.Second, "")})
	must(lease("p3", patched.Digest()))
}
