package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/internal/nodetest"
)

// TestEventsMetricsTraces: a task submitted with a client traceparent
// shows up in the event history, the live stream, the metrics and the
// OTLP traces of a real node, all carrying that trace.
func TestEventsMetricsTraces(t *testing.T) {
	var mu sync.Mutex
	var exports [][]byte
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		exports = append(exports, b)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer otlp.Close()
	n := nodetest.Start(t, nodetest.Options{Policy: policyPath(), Env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp.URL, "OTEL_BSP_SCHEDULE_DELAY=100"}})

	// Follow the live stream with the CLI while the task runs.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow := exec.CommandContext(ctx, nodetest.Binary(t), "events", "--follow", "--type", "execution_completed")
	follow.Env = append(os.Environ(), "LEASH_URL="+n.URL(), "LEASH_TOKEN="+n.Token)
	stdout, _ := follow.StdoutPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	streamed := make(chan events.Event, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e events.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				streamed <- e
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)

	l := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "small_task"})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	tp := "00-" + traceID + "-00f067aa0ba902b7-01"
	st, b := n.Do("POST", "/v1/tasks", l.Token, wasmTask(guestB64(t, "minimal")), "traceparent", tp)
	if st != 200 {
		t.Fatalf("task: %d %s", st, b)
	}
	var res api.TaskResult
	_ = json.Unmarshal(b, &res)
	if res.Traceparent != tp {
		t.Fatalf("task traceparent %q, want the client's", res.Traceparent)
	}

	t.Run("history", func(t *testing.T) {
		var page events.ListResponse
		for deadline := time.Now().Add(5 * time.Second); len(page.Events) == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			n.JSON("GET", "/v1/events?task="+res.TaskID, n.Token, nil, 200, &page)
		}
		var types []string
		for _, e := range page.Events {
			types = append(types, string(e.Type))
			if e.Task != res.TaskID || e.Lease != l.LeaseID || e.Tenant != "demo" || e.TraceID() != traceID {
				t.Errorf("event %s: task %q lease %q tenant %q trace %q", e.Type, e.Task, e.Lease, e.Tenant, e.TraceID())
			}
		}
		if len(types) != 1 || types[0] != "execution_completed" {
			t.Fatalf("events of the task: %v", types)
		}
		var issued events.ListResponse
		n.JSON("GET", "/v1/events?type=sandbox_issued&lease="+l.LeaseID, n.Token, nil, 200, &issued)
		if len(issued.Events) != 1 {
			t.Fatalf("sandbox_issued events: %d", len(issued.Events))
		}
		if st, _ := n.Do("GET", "/v1/events", "", nil); st != 401 {
			t.Fatalf("events without the admin token: %d", st)
		}
	})
	t.Run("stream", func(t *testing.T) {
		select {
		case e := <-streamed:
			if e.Task != res.TaskID {
				t.Fatalf("streamed event of task %q", e.Task)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("leash events --follow printed nothing")
		}
	})
	t.Run("metrics", func(t *testing.T) {
		st, m := n.Do("GET", "/metrics", n.Token, nil)
		if st != 200 {
			t.Fatalf("metrics: %d", st)
		}
		for _, want := range []string{
			`leash_tasks_total{outcome="ok",profile="small",tenant="demo"} 1`,
			`leash_leases_issued_total{class="interactive",profile="small"} 1`,
			`leash_sandbox_start_seconds_count{kind="wasi"} 1`,
			`leash_ledger_receipts 1`,
			`leash_slots_in_use{class="interactive"} 0`,
			`leash_slot_wait_seconds_count{class="interactive"} 1`,
		} {
			if !strings.Contains(string(m), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
	t.Run("traces", func(t *testing.T) {
		id, _ := hex.DecodeString(traceID)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			mu.Lock()
			all := bytes.Join(exports, nil)
			mu.Unlock()
			ok := bytes.Contains(all, id)
			for _, name := range []string{"leash.admission", "leash.execution", "leash.sandbox.start", "leash.raft.apply"} {
				ok = ok && bytes.Contains(all, []byte(name))
			}
			if ok {
				return
			}
		}
		t.Fatal("the OTLP receiver never got the task's spans in the client's trace")
	})
}
