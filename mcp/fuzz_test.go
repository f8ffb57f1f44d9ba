package mcp

import (
	"bytes"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzBlockedFromProof: any receipt proof bytes decode to at most
// maxBlocked calls of the named task, or an error; never a panic.
func FuzzBlockedFromProof(f *testing.F) {
	payload := base64.StdEncoding.EncodeToString([]byte(`{"task_id":"tsk_a","blocked_attempts":[{"tool":"fetch","destination":"x.example:443","clause":"profile.default_deny","count":2}]}`))
	f.Add([]byte(`{"index":3,"envelope":{"payloadType":"application/vnd.leash.receipt+json","payload":"`+payload+`","signatures":[]}}`), "tsk_a")
	f.Add([]byte(`{"envelope":{"payload":"bm90IGpzb24="}}`), "tsk_a")
	f.Add([]byte(`{"envelope":{"payload":"!!"}}`), "")
	f.Add([]byte(`null`), "")
	f.Fuzz(func(t *testing.T, raw []byte, task string) {
		got, err := blockedFromProof(raw, task)
		if err != nil && got != nil {
			t.Fatalf("an error with calls: %v %v", err, got)
		}
		if len(got) > maxBlocked {
			t.Fatalf("%d calls, more than %d", len(got), maxBlocked)
		}
	})
}

// FuzzHandler: whatever a client POSTs to the Streamable HTTP endpoint,
// the answer is not a 5xx, and the server does not panic or hang. The API
// behind it is a real handler that refuses every call, so tool calls
// exercise the refusal path without a node.
func FuzzHandler(f *testing.F) {
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":{"code":"forbidden","message":"no"}}`)
	})
	srv, err := New(Options{API: InProcess(refuse), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"f","version":"1"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"run_javascript","arguments":{"code":"x","intent":"compute"}}}`,
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_task","arguments":{"task_id":"../../x"}}}`,
		`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"session_put","arguments":{"session":"s","key":"k","value":"v"}}}`,
		`[{"jsonrpc":"2.0","id":6,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`,
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"list_capabilities","arguments":{"tenant":"a"}}}`,
		`{"jsonrpc":"2.0",`, `"x"`, ``,
	} {
		f.Add([]byte(s), "2025-11-25")
	}
	f.Fuzz(func(t *testing.T, body []byte, version string) {
		req := httptest.NewRequest("POST", "http://127.0.0.1/mcp", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer lsk_fuzz")
		if version != "" && !strings.ContainsAny(version, "\r\n\x00") {
			req.Header.Set("Mcp-Protocol-Version", version)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%d for %q: %s", w.Code, body, w.Body.String())
		}
	})
}
