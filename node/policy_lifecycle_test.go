package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/policy"
)

// raw sends body with a content type and returns the status and the
// answer.
func (tn *testNode) raw(t *testing.T, method, path, token, ct string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, tn.url+path, bytes.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func errCode(b []byte) string {
	var eb struct {
		Error api.Error `json:"error"`
	}
	_ = json.Unmarshal(b, &eb)
	return eb.Error.Code
}

func variantYAML(cpu int) []byte {
	return []byte(strings.Replace(string(policy.DefaultYAML()), "cpu_ms: 500", fmt.Sprintf("cpu_ms: %d", cpu), 1))
}

// TestPolicyLifecycleAPI drives the lifecycle through the API of a real
// node, with every refusal the issue lists answered with its status and
// code and nothing changed.
func TestPolicyLifecycleAPI(t *testing.T) {
	tn := startTestNode(t, Config{})
	var op api.APIKey
	tn.call(t, "POST", "/v1/apikeys", tn.token, api.APIKeyRequest{Role: "operator", Name: "lifecycle"}, &op, 201)
	var aud api.APIKey
	tn.call(t, "POST", "/v1/apikeys", tn.token, api.APIKeyRequest{Role: "auditor", Name: "lifecycle"}, &aud, 201)

	envs := func() map[string]api.PolicyEnv {
		var l api.PolicyEnvs
		tn.call(t, "GET", "/v1/policy/envs", aud.Key, nil, &l, 200)
		out := map[string]api.PolicyEnv{}
		for _, e := range l.Envs {
			out[e.Env] = e
		}
		return out
	}
	start := envs()
	stable := start["prod"].Digest
	if stable != policy.Default().Digest() || start["dev"].Digest != "" || start["prod"].Version != 1 {
		t.Fatalf("start: %+v", start)
	}

	// An invalid bundle: every error, nothing changed.
	st, b := tn.raw(t, "PUT", "/v1/policy/envs/dev", op.Key, "application/yaml", []byte("version: 1\nprofiles:\n  p:\n    limits: {cpu_ms: 0}\n"))
	var pe api.PolicyErrors
	_ = json.Unmarshal(b, &pe)
	if st != 400 || pe.Error == nil || pe.Error.Code != api.CodeInvalidPolicy || len(pe.Fields) < 2 || pe.Fields[1].Line == 0 {
		t.Fatalf("invalid bundle: %d %s", st, b)
	}
	patched := variantYAML(400)
	patchedDigest := policy.DigestOf(mustParse(t, patched).Canonical())
	for _, tc := range []struct {
		name, method, path, token, ct string
		body                          []byte
		status                        int
		code                          string
	}{
		{"push to stage directly", "PUT", "/v1/policy/envs/stage", op.Key, "application/yaml", patched, 409, consensus.CodeGateNotPassed},
		{"override by an operator", "PUT", "/v1/policy/envs/prod?override=true&reason=x", op.Key, "application/yaml", patched, 403, api.CodeForbidden},
		{"override without reason", "PUT", "/v1/policy/envs/prod?override=true", tn.token, "application/yaml", patched, 400, consensus.CodeReasonRequired},
		{"unknown environment", "PUT", "/v1/policy/envs/qa", op.Key, "application/yaml", patched, 400, consensus.CodeUnknownEnv},
		{"bad if_version", "PUT", "/v1/policy/envs/dev?if_version=-1", op.Key, "application/yaml", patched, 400, api.CodeBadRequest},
		{"auditor may not push", "PUT", "/v1/policy/envs/dev", aud.Key, "application/yaml", patched, 403, api.CodeForbidden},
		{"promote an unknown digest", "POST", "/v1/policy/envs/stage/promote", op.Key, "application/json",
			[]byte(`{"digest":"sha256:` + strings.Repeat("0", 64) + `"}`), 404, consensus.CodeUnknownPolicy},
		{"promote a malformed digest", "POST", "/v1/policy/envs/stage/promote", op.Key, "application/json", []byte(`{"digest":"nope"}`), 400, api.CodeBadRequest},
		{"canary above 100", "PUT", "/v1/policy/canary", op.Key, "application/json", []byte(`{"percent":150}`), 400, consensus.CodeInvalidPercent},
		{"canary below 0", "PUT", "/v1/policy/canary", op.Key, "application/json", []byte(`{"percent":-1}`), 400, consensus.CodeInvalidPercent},
		{"abort no canary", "POST", "/v1/policy/canary/abort", op.Key, "", nil, 409, consensus.CodeNoCanary},
		{"nothing to roll back", "POST", "/v1/policy/envs/prod/rollback", op.Key, "", nil, 409, consensus.CodeNothingToRollBk},
		{"unknown field", "POST", "/v1/policy/envs/stage/promote", op.Key, "application/json", []byte(`{"force":true}`), 400, api.CodeMalformedJSON},
		{"bundle of an unknown digest", "GET", "/v1/policy/bundles/sha256:" + strings.Repeat("1", 64), aud.Key, "", nil, 404, consensus.CodeUnknownPolicy},
		{"history limit", "GET", "/v1/policy/envs/prod/history?limit=0", aud.Key, "", nil, 400, api.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, b := tn.raw(t, tc.method, tc.path, tc.token, tc.ct, tc.body)
			if st != tc.status || errCode(b) != tc.code {
				t.Fatalf("%d %s, want %d %s", st, b, tc.status, tc.code)
			}
		})
	}
	if got := envs(); fmt.Sprint(got) != fmt.Sprint(start) {
		t.Fatalf("refusals changed state: %+v, was %+v", got, start)
	}

	// Push, promote to stage, a lease issued now, the canary.
	var pc api.PolicyChange
	if st, b := tn.raw(t, "PUT", "/v1/policy/envs/dev?reason=patch", op.Key, "application/yaml", patched); st != 200 {
		t.Fatalf("push: %d %s", st, b)
	} else if _ = json.Unmarshal(b, &pc); pc.Digest != patchedDigest || pc.Action != "push" || pc.By != "key:"+op.KeyID || pc.Reason != "patch" {
		t.Fatalf("push answered %+v", pc)
	}
	tn.call(t, "POST", "/v1/policy/envs/prod/promote", op.Key, api.PromoteRequest{From: "dev"}, nil, 409) // gate: never in stage
	tn.call(t, "POST", "/v1/policy/envs/stage/promote", op.Key, api.PromoteRequest{}, &pc, 200)
	if pc.From != "dev" || pc.Digest != patchedDigest {
		t.Fatalf("promote answered %+v", pc)
	}
	var before api.Lease
	tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "demo", Intent: "read_docs"}, &before, 201)
	if before.PolicyDigest != stable || before.Env != "prod" {
		t.Fatalf("lease before the canary: %+v", before)
	}
	tn.call(t, "PUT", "/v1/policy/canary", op.Key, api.CanaryRequest{Percent: 30, Reason: "try it"}, &pc, 200)
	if pc.CanaryDigest != patchedDigest || pc.CanaryPercent != 30 || pc.Digest != stable {
		t.Fatalf("canary answered %+v", pc)
	}
	// Leases split by their ids, as CanaryPicks says.
	canary := 0
	for range 40 {
		var l api.Lease
		tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "demo", Intent: "read_docs"}, &l, 201)
		want := stable
		if consensus.CanaryPicks(l.LeaseID, 30) {
			want = patchedDigest
			canary++
		}
		if l.PolicyDigest != want {
			t.Fatalf("lease %s got %s, want %s", l.LeaseID, l.PolicyDigest, want)
		}
	}
	if canary == 0 || canary == 40 {
		t.Errorf("%d of 40 leases in a 30%% canary", canary)
	}

	// Two promotions from the same version: one wins, one is refused.
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, req := range []string{`{"reason":"a"}`, `{"reason":"b"}`} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _ := tn.raw(t, "POST", "/v1/policy/canary/promote", op.Key, "application/json", []byte(strings.Replace(req, "}", `,"if_version":2}`, 1)))
			codes[i] = st
		}()
	}
	wg.Wait()
	if !(codes[0] == 200 && codes[1] == 409 || codes[0] == 409 && codes[1] == 200) {
		t.Fatalf("concurrent canary promotions: %v, want one 200 and one 409", codes)
	}
	if got := envs()["prod"]; got.Digest != patchedDigest || got.Canary != nil {
		t.Fatalf("after canary promote: %+v", got)
	}
	// The lease issued before keeps its bundle.
	var again api.Lease
	tn.call(t, "GET", "/v1/leases/"+before.LeaseID, tn.token, nil, &again, 200)
	if again.PolicyDigest != stable {
		t.Fatalf("old lease now names %s", again.PolicyDigest)
	}
	// Rollback: the exact previous digest.
	tn.call(t, "POST", "/v1/policy/envs/prod/rollback", op.Key, api.RollbackRequest{Reason: "back out"}, &pc, 200)
	if pc.Digest != stable || pc.Previous != patchedDigest || pc.Action != "rollback" {
		t.Fatalf("rollback answered %+v", pc)
	}
	// History, newest first, and the events.
	var h api.PolicyHistory
	tn.call(t, "GET", "/v1/policy/envs/prod/history", aud.Key, nil, &h, 200)
	var actions []string
	for _, c := range h.Changes {
		actions = append(actions, c.Action)
	}
	if got := strings.Join(actions, " "); got != "rollback canary_promote canary_set put" {
		t.Fatalf("history %q", got)
	}
	// The events reach the store asynchronously: wait for them.
	want := []string{"dev push", "stage promote", "prod canary_set", "prod canary_promote", "prod rollback"}
	seen := map[string]bool{}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var evs struct {
			Events []struct {
				Data policyEvent `json:"data"`
			} `json:"events"`
		}
		tn.call(t, "GET", "/v1/events?type=policy_promoted&limit=50", tn.token, nil, &evs, 200)
		clear(seen)
		for _, e := range evs.Events {
			seen[e.Data.Env+" "+e.Data.Action] = true
		}
		missing := false
		for _, w := range want {
			missing = missing || !seen[w]
		}
		if !missing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy_promoted events %v, want %v", seen, want)
		}
	}
	// The stored bundle by digest, for diff and lint.
	var pb api.PolicyBundle
	tn.call(t, "GET", "/v1/policy/bundles/"+patchedDigest, aud.Key, nil, &pb, 200)
	if pb.Digest != patchedDigest || !strings.Contains(pb.Source, "cpu_ms: 400") {
		t.Fatalf("bundle %+v", pb)
	}
	// A lease in an environment the tenant may not use.
	st, b = tn.raw(t, "POST", "/v1/leases", tn.token, "application/json", []byte(`{"tenant":"demo","intent":"read_docs","env":"dev"}`))
	if st != 403 || errCode(b) != consensus.CodeEnvNotAllowed {
		t.Fatalf("lease in dev: %d %s", st, b)
	}
}

type policyEvent struct {
	Env    string `json:"env"`
	Action string `json:"action"`
}

func mustParse(t *testing.T, src []byte) *policy.Bundle {
	t.Helper()
	b, err := policy.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCanaryAutoAbort: a canary whose tasks fail more than the stable
// ones by its threshold is aborted by the leader, by "auto", with the
// measurement as the reason, from the replicated receipts.
func TestCanaryAutoAbort(t *testing.T) {
	policyFile := filepath.Join("..", "e2e", "testdata", "policy.yaml")
	tn := startTestNode(t, Config{PolicyFile: policyFile})
	src, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	// The canary lets profile small write 1 byte: the minimal guest's
	// answer is longer (terminated:output).
	bad := []byte(strings.Replace(string(src), "memory_mb: 16, output_bytes: 65536, log_bytes: 4096, subrequests: 0}\n    max_lease_ttl: 10m\n  roomy",
		"memory_mb: 16, output_bytes: 1, log_bytes: 4096, subrequests: 0}\n    max_lease_ttl: 10m\n  roomy", 1))
	if string(bad) == string(src) {
		t.Fatal("the variant did not change the bundle")
	}
	if st, b := tn.raw(t, "PUT", "/v1/policy/envs/dev", tn.token, "application/yaml", bad); st != 200 {
		t.Fatalf("push: %d %s", st, b)
	}
	tn.call(t, "POST", "/v1/policy/envs/stage/promote", tn.token, api.PromoteRequest{}, nil, 200)
	tn.call(t, "PUT", "/v1/policy/canary", tn.token, api.CanaryRequest{Percent: 50, AbortAbove: 20, MinTasks: 4}, nil, 200)
	var env api.PolicyEnv
	tn.call(t, "GET", "/v1/policy/envs/prod", tn.token, nil, &env, 200)
	canaryDigest := env.Canary.Digest

	wasm := guestWasm(t, "minimal")
	task := api.TaskRequest{Module: api.Module{WASM: &wasm}}
	var stable, canary int
	for stable < 4 || canary < 4 {
		var l api.Lease
		tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, &l, 201)
		var res api.TaskResult
		tn.call(t, "POST", "/v1/tasks", l.Token, task, &res, 200)
		if l.PolicyDigest == canaryDigest {
			canary++
			if res.Outcome == "ok" {
				t.Fatalf("a canary task succeeded with 1 output byte: %+v", res)
			}
		} else {
			stable++
			if res.Outcome != "ok" {
				t.Fatalf("a stable task failed: %+v", res)
			}
		}
	}
	var h api.PolicyHistory
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		tn.call(t, "GET", "/v1/policy/envs/prod/history?limit=1", tn.token, nil, &h, 200)
		if len(h.Changes) == 1 && h.Changes[0].Action == consensus.ActionCanaryAbort {
			break
		}
		if time.Now().After(deadline) {
			var cs api.CanaryStatus
			tn.call(t, "GET", "/v1/policy/canary", tn.token, nil, &cs, 200)
			t.Fatalf("no automatic abort; last change %+v, status %+v", h.Changes, cs)
		}
	}
	if c := h.Changes[0]; c.By != "auto" || !strings.Contains(c.Reason, "automatic abort: canary bad outcomes 100.0%") {
		t.Fatalf("abort %+v", c)
	}
}

// TestPolicyFileDoesNotUndoTheLifecycle: a node restarted with its
// --policy file re-applies the file only while prod has seen nothing but
// puts; after a promotion, the promotion stays.
func TestPolicyFileDoesNotUndoTheLifecycle(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bundle.yaml")
	if err := os.WriteFile(file, variantYAML(450), 0o644); err != nil {
		t.Fatal(err)
	}
	fileDigest := mustParse(t, variantYAML(450)).Digest()
	start := func() (*testNode, func()) {
		cfg := Config{DataDir: filepath.Join(dir, "data"), Addr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", PolicyFile: file,
			AdminToken: "node-test-admin-token-0123456789", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		ready := make(chan string, 1)
		cfg.Ready = func(addr string) { ready <- addr }
		ctx, cancel := context.WithCancel(context.Background())
		tn := &testNode{token: cfg.AdminToken, cancel: cancel, done: make(chan error, 1)}
		go func() { tn.done <- Run(ctx, cfg) }()
		select {
		case addr := <-ready:
			tn.url = "http://" + addr
		case err := <-tn.done:
			t.Fatalf("node exited: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("node not ready")
		}
		return tn, func() {
			cancel()
			if err := <-tn.done; err != nil {
				t.Errorf("node: %v", err)
			}
		}
	}
	prod := func(tn *testNode) string {
		var e api.PolicyEnv
		tn.call(t, "GET", "/v1/policy/envs/prod", tn.token, nil, &e, 200)
		return e.Digest
	}
	tn, stop := start()
	if d := prod(tn); d != fileDigest {
		t.Fatalf("prod %s, want the file's %s", d, fileDigest)
	}
	// A put (PUT /v1/policy) is still undone by the file at restart.
	if st, b := tn.raw(t, "PUT", "/v1/policy", tn.token, "application/yaml", variantYAML(440)); st != 200 {
		t.Fatalf("put: %d %s", st, b)
	}
	stop()
	tn, stop = start()
	if d := prod(tn); d != fileDigest {
		t.Fatalf("after a put and a restart prod is %s, want the file's %s", d, fileDigest)
	}
	// A promotion is not.
	promoted := mustParse(t, variantYAML(430)).Digest()
	if st, b := tn.raw(t, "PUT", "/v1/policy/envs/dev", tn.token, "application/yaml", variantYAML(430)); st != 200 {
		t.Fatalf("push: %d %s", st, b)
	}
	tn.call(t, "POST", "/v1/policy/envs/stage/promote", tn.token, api.PromoteRequest{}, nil, 200)
	tn.call(t, "POST", "/v1/policy/envs/prod/promote", tn.token, api.PromoteRequest{}, nil, 200)
	stop()
	tn, stop = start()
	defer stop()
	if d := prod(tn); d != promoted {
		t.Fatalf("after a promotion and a restart prod is %s, want the promoted %s", d, promoted)
	}
}
