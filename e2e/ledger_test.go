package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// TestLedgerAudit: every task's result carries its receipt's ledger
// index; an auditor fetches keys, checkpoint, a receipt and an export
// with the CLI and verifies them offline; tampering is caught.
func TestLedgerAudit(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Policy: policyPath()})
	l := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "small_task"})
	var last int64 = -1
	for _, g := range []string{"minimal", "loop", "trap", "minimal"} {
		res := runTask(t, n, l.Token, wasmTask(guestB64(t, g)))
		if res.Receipt == nil || res.ReceiptError != "" {
			t.Fatalf("%s: no receipt (%s)", g, res.ReceiptError)
		}
		if res.Receipt.Index <= last {
			t.Fatalf("receipt index %d after %d", res.Receipt.Index, last)
		}
		last = res.Receipt.Index
	}
	dir := t.TempDir()
	cli := func(wantCode int, args ...string) string {
		t.Helper()
		cmd := exec.Command(nodetest.Binary(t), args...)
		cmd.Env = append(os.Environ(), "LEASH_URL="+n.URL(), "LEASH_TOKEN="+n.Token)
		cmd.Dir = dir
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantCode {
			t.Fatalf("leash %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out.String(), errb.String())
		}
		return out.String()
	}
	save := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Wait for the node to co-sign a checkpoint that covers the tasks.
	var cp string
	for deadline := time.Now().Add(10 * time.Second); ; {
		cp = cli(0, "ledger", "checkpoint")
		if strings.Contains(cp, "\n4\n") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	keys := save("keys.json", cli(0, "ledger", "keys"))
	cpFile := save("cp.txt", cp)
	receipt := save("r.json", cli(0, "ledger", "receipt", "2"))
	export := cli(0, "ledger", "export")
	exportFile := save("export.jsonl", export)

	if out := cli(0, "ledger", "verify", "receipt", "--keys", keys, "--receipt", receipt); !strings.Contains(out, "ok: receipt 2") || !strings.Contains(out, "outcome error") {
		t.Fatalf("verify receipt: %s", out)
	}
	if out := cli(0, "ledger", "verify", "export", "--keys", keys, "--checkpoint", cpFile, "--export", exportFile); !strings.Contains(out, "ok: 4 records") {
		t.Fatalf("verify export: %s", out)
	}
	// Tampering: flip one byte inside a receipt payload of the export.
	lines := strings.Split(strings.TrimSpace(export), "\n")
	i := strings.Index(lines[1], `"payload":"`) + len(`"payload":"`) + 10
	b := []byte(lines[1])
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	lines[1] = string(b)
	tampered := save("tampered.jsonl", strings.Join(lines, "\n")+"\n")
	if out := cli(1, "ledger", "verify", "export", "--keys", keys, "--checkpoint", cpFile, "--export", tampered); !strings.Contains(out, "record 1") {
		t.Fatalf("tampered export: %s", out)
	}
	// A deleted record.
	deleted := save("deleted.jsonl", strings.Join(append([]string{lines[0]}, lines[2:]...), "\n")+"\n")
	if out := cli(1, "ledger", "verify", "export", "--keys", keys, "--checkpoint", cpFile, "--export", deleted); !strings.Contains(out, "missing") {
		t.Fatalf("deleted record: %s", out)
	}
	// Two signatures required, one node: refused.
	if out := cli(1, "ledger", "verify", "receipt", "--keys", keys, "--receipt", receipt, "--min-sigs", "2"); !strings.Contains(out, "need 2") {
		t.Fatalf("min-sigs: %s", out)
	}
}

// TestLedgerSurvivesCrash: tasks run under load while the node is killed
// with SIGKILL; after a restart every acknowledged task's receipt is in
// the ledger at the index its result named, and the ledger verifies.
func TestLedgerSurvivesCrash(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Policy: policyPath()})
	l := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "roomy_task"})
	wasm := guestB64(t, "minimal")
	type ack struct {
		task  string
		index int64
	}
	acks := make(chan ack, 10000)
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for w := 0; w < 4; w++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var res api.TaskResult
				if err := n.TryJSON("POST", "/v1/tasks", l.Token, wasmTask(wasm), 200, &res); err != nil {
					return // the node died under us
				}
				if res.Receipt != nil {
					acks <- ack{res.TaskID, res.Receipt.Index}
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	n.Kill()
	close(stop)
	workers.Wait()
	close(acks)
	n.Restart()

	st, exp := n.Do("GET", "/v1/ledger/export", n.Token, nil)
	if st != 200 {
		t.Fatalf("export: %d %s", st, exp)
	}
	byIndex := map[int64]string{}
	for i, line := range strings.Split(strings.TrimSpace(string(exp)), "\n") {
		var rec struct {
			Index    int64 `json:"index"`
			Envelope struct {
				Payload []byte `json:"payload"`
			} `json:"envelope"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Index != int64(i) {
			t.Fatalf("export line %d: %v", i, err)
		}
		var r struct {
			TaskID string `json:"task_id"`
		}
		_ = json.Unmarshal(rec.Envelope.Payload, &r)
		byIndex[rec.Index] = r.TaskID
	}
	count := 0
	for a := range acks {
		count++
		if byIndex[a.index] != a.task {
			t.Errorf("acknowledged task %s had receipt %d; the ledger has %q there", a.task, a.index, byIndex[a.index])
		}
	}
	if count == 0 {
		t.Fatal("no task was acknowledged before the kill")
	}
	t.Logf("%d acknowledged tasks, %d receipts in the ledger after the crash", count, len(byIndex))
}
