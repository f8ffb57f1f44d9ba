package events

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// docExample returns the fenced block after <!-- example: name --> in
// docs/events.md.
func docExample(t *testing.T, doc, name string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "<!-- example: "+name+" -->\n")
	if !ok {
		t.Fatalf("docs/events.md has no example %q", name)
	}
	_, rest, ok = strings.Cut(rest, "\n") // the opening fence
	if !ok {
		t.Fatalf("example %q: no fence", name)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("example %q: unterminated", name)
	}
	return block
}

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// docEvents emits the documented example event (and a second match, so
// the list example has a next page) into a store, with the doc's clock.
func docEvents(t *testing.T) (*Bus, *Store, *memSink) {
	t.Helper()
	clock := newFakeClock(time.Date(2026, 11, 25, 9, 30, 0, 125_000_000, time.UTC))
	b, st := storeBus(t, openMemDB(t), clock.Now, StoreConfig{})
	sink := &memSink{}
	b.AddSink("mem", sink, SinkOptions{})
	ctx := WithScope(context.Background(), Scope{
		Tenant: "demo", Lease: "lease-7q2m", Task: "task-9f3a",
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	})
	b.Emit(ctx, New(ToolCallBlocked{
		Tool: "fetch", Destination: "169.254.169.254:80", Method: "GET", Clause: "address.private",
		Profile: "api-caller", AddressRange: "169.254.0.0/16",
		Message: "169.254.169.254 is link-local, not globally reachable",
	}))
	clock.Add(2 * time.Second)
	b.Emit(ctx, New(ToolCallBlocked{Tool: "fetch", Destination: "10.0.0.1:80", Clause: "address.private"}))
	flush(t, b)
	return b, st, sink
}

func jsonEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: got: %v", what, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: doc: %v", what, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s differs from docs/events.md:\ngot  %s\ndoc  %s", what, got, want)
	}
}

func TestDocsExampleEvent(t *testing.T) {
	doc := readDoc(t)
	_, _, sink := docEvents(t)
	jsonEqual(t, "event", sink.recs[0].JSON, []byte(docExample(t, doc, "event")))
}

func TestDocsExampleList(t *testing.T) {
	doc := readDoc(t)
	b, st, _ := docEvents(t)
	srv := httptest.NewServer(NewHandler(st, b, HandlerConfig{}))
	defer srv.Close()
	line := strings.TrimSpace(docExample(t, doc, "list-request"))
	path, ok := strings.CutPrefix(line, "GET ")
	if !ok {
		t.Fatalf("request %q", line)
	}
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	jsonEqual(t, "list response", body, []byte(docExample(t, doc, "list-response")))

	// The error example is what limit=5000 gets, byte for byte.
	resp, err = http.Get(srv.URL + "/v1/events?limit=5000")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || strings.TrimSpace(string(body)) != strings.TrimSpace(docExample(t, doc, "error")) {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
}

func TestDocsExampleStream(t *testing.T) {
	doc := readDoc(t)
	b, st, _ := docEvents(t)
	srv := httptest.NewServer(NewHandler(st, b, HandlerConfig{}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/events/stream?since=2026-11-25T09:00:00Z&limit=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	all, _ := io.ReadAll(bufio.NewReader(resp.Body))
	want := docExample(t, doc, "stream")
	if !strings.HasPrefix(string(all), ": leash events\nretry: 2000\n\n") || !strings.HasSuffix(string(all), want) {
		t.Errorf("stream:\n%s\ndoc:\n%s", all, want)
	}
}

// TestDocsListEveryType: each type has a section, and each section names
// every field of the type's data.
func TestDocsListEveryType(t *testing.T) {
	doc := readDoc(t)
	sections := strings.Split(doc, "\n### ")
	for _, ty := range Types {
		var sec string
		for _, s := range sections {
			head, _, _ := strings.Cut(s, "\n")
			if strings.Contains(head, "`"+string(ty)+"`") {
				sec = s
			}
		}
		if sec == "" {
			t.Errorf("docs/events.md has no section for %s", ty)
			continue
		}
		rt := reflect.TypeOf(dataFor(ty)).Elem()
		for i := 0; i < rt.NumField(); i++ {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			if !strings.Contains(sec, "`"+name+"`") {
				t.Errorf("docs/events.md, section %s: field %s is not documented", ty, name)
			}
		}
	}
	for _, a := range []string{"specversion", "id", "source", "type", "time", "datacontenttype", "data",
		AttrTraceparent, AttrTenant, AttrLease, AttrTask, AttrNode} {
		if !strings.Contains(doc, "| `"+a+"` |") {
			t.Errorf("envelope attribute %s is not in the table", a)
		}
	}
	for _, p := range queryParams {
		if !strings.Contains(doc, "`"+p+"`") {
			t.Errorf("query parameter %s is not documented", p)
		}
	}
}
