// Package ui is the self-serve usage dashboard every node serves at /ui
// (docs/budgets.md, "The dashboard"). It is static: an HTML page, its
// script and style, and chart.js (installed with npm by make ui, pinned by
// package-lock.json, vendored here), all embedded in the binary. The page
// holds the caller's key in sessionStorage and reads its figures from the
// authenticated API (GET /v1/budgets, /v1/usage, /v1/events,
// /v1/ledger/receipts); the routes that serve the assets are public and
// carry no data.
package ui

import (
	"bytes"
	"embed"
	"net/http"
	"path"
	"time"

	"github.com/leash-dev/leash/api"
)

//go:embed static
var static embed.FS

// assets are the files served under /ui/, by name, with their type.
var assets = map[string]string{
	"app.js":              "text/javascript; charset=utf-8",
	"app.css":             "text/css; charset=utf-8",
	"chart.umd.min.js":    "text/javascript; charset=utf-8",
	"chart.js-LICENSE.md": "text/markdown; charset=utf-8",
	"index.html":          "text/html; charset=utf-8",
}

// CSP allows nothing but this origin: no inline script or style, no
// frames, no form posts, no other hosts (the page talks to its own node).
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// modTime is fixed: the assets change only with the binary.
var modTime = time.Unix(0, 0)

// Index answers GET /ui: the page.
func Index(w http.ResponseWriter, r *http.Request) error {
	return serve(w, r, "index.html")
}

// Asset answers GET /ui/{asset}: one of the page's files; any other name
// is a 404.
func Asset(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("asset")
	if name == "" {
		return serve(w, r, "index.html")
	}
	return serve(w, r, name)
}

func serve(w http.ResponseWriter, r *http.Request, name string) error {
	ct, ok := assets[name]
	if !ok {
		return api.Errorf(http.StatusNotFound, api.CodeNotFound, "no such dashboard file: %q", clip(name))
	}
	b, err := static.ReadFile(path.Join("static", name))
	if err != nil {
		return api.Errorf(http.StatusNotFound, api.CodeNotFound, "no such dashboard file: %q", clip(name))
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, modTime, bytes.NewReader(b))
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
