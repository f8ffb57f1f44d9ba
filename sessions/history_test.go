package sessions

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
)

// TestHistoryRecord: a history record keeps what says how a task went
// and leaves out the body and logs; an oversized one loses its headers,
// and one that still does not fit is not replicated.
func TestHistoryRecord(t *testing.T) {
	body := "the whole answer"
	task := func(hdr http.Header, errMsg string) *api.Task {
		return &api.Task{TaskID: "tsk_1", State: api.TaskSucceeded, Class: "interactive", Attempts: 1, Result: &api.TaskResult{
			TaskID: "tsk_1", Outcome: "ok", Error: errMsg, Node: "node-a", Tenant: "demo", Receipt: &api.ReceiptRef{Index: 7},
			Logs:     []api.LogLine{{Level: "info", Message: "secret"}},
			Response: &api.TaskResponse{Status: 201, Headers: hdr, Body: api.Body{Body: &body}},
		}}
	}
	exp := time.Unix(1_900_000_000, 0)
	for name, tc := range map[string]struct {
		t           *api.Task
		ok, headers bool
		errLen      int
	}{
		"small":       {task(http.Header{"X-A": {"1"}}, "boom"), true, true, 4},
		"long error":  {task(nil, strings.Repeat("e", 5000)), true, false, historyErrorBytes},
		"big headers": {task(http.Header{"X-Big": {strings.Repeat("h", consensus.MaxTaskRecordBytes)}}, ""), true, false, 0},
		"no response": {&api.Task{TaskID: "tsk_2", State: api.TaskFailed}, true, false, 0},
	} {
		t.Run(name, func(t *testing.T) {
			rec, ok := historyRecord(tc.t, "demo", exp)
			if ok != tc.ok {
				t.Fatalf("ok %v", ok)
			}
			if rec.Tenant != "demo" || rec.ExpiresAt != exp.UnixNano() || len(rec.Task) > consensus.MaxTaskRecordBytes {
				t.Fatalf("record %+v", rec)
			}
			var got api.Task
			if err := json.Unmarshal(rec.Task, &got); err != nil {
				t.Fatal(err)
			}
			if got.TaskID != tc.t.TaskID || got.State != tc.t.State {
				t.Fatalf("task %+v", got)
			}
			r := got.Result
			if r == nil {
				return
			}
			if b, _ := r.Response.Bytes(); len(b) != 0 || !r.ResponseElided || r.Response.Status != 201 || len(r.Logs) != 0 || r.Receipt.Index != 7 {
				t.Fatalf("result %+v", r)
			}
			if (r.Response.Headers != nil) != tc.headers || len(r.Error) != tc.errLen {
				t.Fatalf("headers %v error %d bytes", r.Response.Headers, len(r.Error))
			}
			if tc.t.Result.Logs[0].Message != "secret" || tc.t.Result.Response.Body.Body == nil {
				t.Fatal("historyRecord changed the task it was given")
			}
		})
	}
}
