package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/leash-dev/leash/api"
)

func get(t *testing.T, h func(http.ResponseWriter, *http.Request) error, target, asset string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("GET", target, nil)
	if asset != "" {
		r.SetPathValue("asset", asset)
	}
	w := httptest.NewRecorder()
	if err := h(w, r); err != nil {
		var ae *api.Error
		if !errors.As(err, &ae) {
			t.Fatalf("%s: %v", target, err)
		}
		w.Code = ae.Status
		w.Body.WriteString(ae.Code)
	}
	return w
}

// TestAssets: every file is served with its type and the strict headers;
// an unknown name is a 404 not_found.
func TestAssets(t *testing.T) {
	cases := map[string]struct {
		asset, ctype string
		status       int
	}{
		"index":   {"", "text/html; charset=utf-8", 200},
		"script":  {"app.js", "text/javascript; charset=utf-8", 200},
		"style":   {"app.css", "text/css; charset=utf-8", 200},
		"chart":   {"chart.umd.min.js", "text/javascript; charset=utf-8", 200},
		"license": {"chart.js-LICENSE.md", "text/markdown; charset=utf-8", 200},
		"unknown": {"secrets.txt", "", 404},
		"dotdot":  {"../ui.go", "", 404},
		"source":  {"ui.go", "", 404},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h, target := Asset, "/ui/"+tc.asset
			if tc.asset == "" {
				h, target = Index, "/ui"
			}
			w := get(t, h, target, tc.asset)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if tc.status != 200 {
				if w.Body.String() != api.CodeNotFound {
					t.Fatalf("code %q", w.Body.String())
				}
				return
			}
			if got := w.Header().Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			for k, v := range map[string]string{"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"} {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s %q, want %q", k, got, v)
				}
			}
			if w.Body.Len() == 0 {
				t.Error("empty body")
			}
		})
	}
}

// TestNothingFromElsewhere: the page loads only its own files (no other
// origin in any src or href, no inline script or style the CSP would
// refuse), and every file it names is served.
func TestNothingFromElsewhere(t *testing.T) {
	page, _ := static.ReadFile("static/index.html")
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(page), -1)
	if len(refs) < 3 {
		t.Fatalf("page names %d files", len(refs))
	}
	for _, m := range refs {
		if m[1] == "data:," { // the empty favicon: no request at all
			continue
		}
		name, ok := strings.CutPrefix(m[1], "/ui/")
		if !ok || assets[name] == "" {
			t.Errorf("page loads %q, not one of its own files", m[1])
		}
	}
	if regexp.MustCompile(`<script>|<style|style="|\son[a-z]+="`).Match(page) {
		t.Error("the page has inline script or style")
	}
	app, _ := static.ReadFile("static/app.js")
	// The SVG namespace is a name, never fetched: the one URL allowed.
	app = bytes.ReplaceAll(app, []byte(`"http://www.w3.org/2000/svg"`), nil)
	if regexp.MustCompile(`https?://|innerHTML|eval\(`).Match(app) {
		t.Error("app.js names another origin or parses HTML")
	}
	// Every embedded file is served, and nothing else is embedded.
	_ = fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if !d.IsDir() && assets[strings.TrimPrefix(p, "static/")] == "" {
			t.Errorf("%s is embedded but not served", p)
		}
		return nil
	})
}

// TestVendoredChartJS: the chart.js the binary carries is the version
// package-lock.json pins (make ui refreshes it from npm).
func TestVendoredChartJS(t *testing.T) {
	var lock struct {
		Packages map[string]struct{ Version string } `json:"packages"`
	}
	b, err := os.ReadFile("package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		t.Fatal(err)
	}
	v := lock.Packages["node_modules/chart.js"].Version
	js, _ := static.ReadFile("static/chart.umd.min.js")
	if v == "" || !strings.Contains(string(js[:min(len(js), 200)]), "Chart.js v"+v+"\n") {
		t.Fatalf("vendored chart.js is not v%q: %q", v, js[:min(len(js), 60)])
	}
}
