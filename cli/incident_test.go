package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
)

// TestIncidentReport: the report names detection, each action with who
// and when, the time to containment, the leases affected and each step
// with its owner, done or overdue.
func TestIncidentReport(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	contained, ttc, done := t0.Add(90*time.Second), int64(90000), t0.Add(2*time.Minute)
	inc := &api.Incident{ID: "inc-7", Title: "exfiltration", Owner: "alice", DetectedAt: t0, OpenedAt: t0.Add(time.Minute), OpenedBy: "key:op",
		Open: true, ContainedAt: &contained, TimeToContainmentMs: &ttc,
		Steps: []api.IncidentStep{
			{Name: "freeze", Owner: "alice", Due: t0.Add(15 * time.Minute), DoneAt: &done, DoneBy: "key:op"},
			{Name: "restore", Owner: "bob", Due: t0.Add(time.Hour), Overdue: true},
		},
		Timeline: []api.TimelineEntry{
			{Kind: "open", Detail: "exfiltration", By: "key:op", At: t0.Add(time.Minute)},
			{Kind: "freeze", Detail: "profile fetcher frozen, 3 live leases revoked", Count: 3, By: "key:op", At: contained, Reason: "stop it"},
			{Kind: "revoke", Detail: "2 leases revoked (tenant=victim)", Count: 2, By: "key:op2", At: done},
		},
	}
	var b bytes.Buffer
	if err := writeReport(&b, inc); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"incident inc-7: exfiltration (open)", "detected   2026-12-02T01:00:00Z", "(90000 ms after detection)",
		"freeze  key:op   profile fetcher frozen, 3 live leases revoked  stop it", "key:op2", "affected: 5 leases revoked",
		"restore  bob", "OVERDUE",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
