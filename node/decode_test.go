package node

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/httpapi"
)

// FuzzDecodeTaskRequest feeds arbitrary bodies through the task request
// decoder and validation: they must end in a value or an *api.Error with
// a 4xx status, never a panic or a 5xx.
func FuzzDecodeTaskRequest(f *testing.F) {
	for _, s := range []string{
		`{"module":{"wasm":"AGFzbQEAAAA="},"request":{"method":"POST","url":"https://x.example/p?q=1","headers":{"X-A":"b"},"body":"hi"},"env":{"A":"b"}}`,
		`{"module":{"digest":"sha256:00"},"request":{"body_base64":"AAEC"}}`,
		`{"module":{"js":"export default {}"}}`,
		`{"request":{"url":"http://[::1]:99999/"}}`,
		`{}`, `[]`, `null`, `{"module":{"wasm":1}}`,
	} {
		f.Add([]byte(s))
	}
	n := &Node{cfg: DefaultConfig()}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/v1/tasks", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		var req api.TaskRequest
		check := func(err error) bool {
			if err == nil {
				return true
			}
			e, ok := api.AsError(err)
			if !ok || e.Status < 400 || e.Status >= 500 || e.Code == "" {
				t.Fatalf("error %v is not a 4xx API error", err)
			}
			return false
		}
		if !check(httpapi.DecodeJSON(w, r, 1<<20, &req)) {
			return
		}
		if !check(validateEnv(req.Env)) {
			return
		}
		if sreq, err := n.taskRequest(&req.Request); check(err) && sreq.URL == "" {
			t.Fatal("accepted request without a URL")
		}
	})
}
