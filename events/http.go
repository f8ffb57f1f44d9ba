package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leash-dev/leash/api"
)

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	// KeepAlive is the interval of the stream's keep-alive comments
	// (default 15s).
	KeepAlive time.Duration
	// MaxStreams bounds concurrent streams (default 64); beyond it a
	// stream is refused with 503 unavailable.
	MaxStreams int
	// StoreSink is the name the Store was added to the Bus under
	// (default "pebble"): a stream that replays flushes it first.
	StoreSink string
	Logger    *slog.Logger
	Now       func() time.Time
}

// Handler serves GET /v1/events (List) and GET /v1/events/stream
// (Stream). List and Stream have the node's handler shape: they return
// an *api.Error for the caller to write; ServeHTTP writes it itself.
type Handler struct {
	store   *Store
	bus     *Bus
	cfg     HandlerConfig
	log     *slog.Logger
	streams atomic.Int64
	done    chan struct{} // closed by Close
	once    sync.Once
}

// NewHandler serves the events of store (queries) and bus (streams).
func NewHandler(store *Store, bus *Bus, cfg HandlerConfig) *Handler {
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 64
	}
	if cfg.StoreSink == "" {
		cfg.StoreSink = "pebble"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{store: store, bus: bus, cfg: cfg, log: cfg.Logger.With("component", "events.http"), done: make(chan struct{})}
}

// Close ends every open stream and refuses new ones (503
// shutting_down). Register it with http.Server.RegisterOnShutdown:
// Shutdown waits for active connections, and a stream never goes idle.
func (h *Handler) Close() {
	h.once.Do(func() { close(h.done) })
}

// ListResponse is the body of GET /v1/events.
type ListResponse struct {
	Events     []Event `json:"events"`
	NextCursor string  `json:"next_cursor"`
}

// ServeHTTP routes /v1/events and /v1/events/stream (GET or HEAD) and
// writes errors as {"error":{"code","message"}}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var err error
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		w.Header().Set("Allow", "GET, HEAD")
		err = api.Errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "%s is not allowed on %s; use GET", r.Method, r.URL.Path)
	case r.URL.Path == "/v1/events":
		err = h.List(w, r)
	case r.URL.Path == "/v1/events/stream":
		err = h.Stream(w, r)
	default:
		err = api.Errorf(http.StatusNotFound, api.CodeNotFound, "no such endpoint: %s", r.URL.Path)
	}
	if err != nil {
		WriteError(w, err)
	}
}

// WriteError writes err as the API's JSON error: an *api.Error in its
// chain gives the status and code, anything else is a 500 internal.
func WriteError(w http.ResponseWriter, err error) {
	e, ok := api.AsError(err)
	if !ok {
		e = api.Errorf(http.StatusInternalServerError, api.CodeInternal, "internal error")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: e})
}

// List answers GET /v1/events?tenant=&type=&since=&until=&lease=&task=
// &trace=&limit=&cursor=&order= with {"events":[...],"next_cursor":"..."}.
func (h *Handler) List(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilter(r.URL.Query(), h.cfg.Now())
	if err != nil {
		return err
	}
	if err := scopeFilter(r.Context(), &f); err != nil {
		return err
	}
	evs, next, err := h.store.Query(r.Context(), f)
	if err != nil {
		if _, ok := api.AsError(err); ok {
			return err
		}
		return &api.Error{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: "query failed", Err: err}
	}
	if evs == nil {
		evs = []Event{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(ListResponse{Events: evs, NextCursor: next})
}

// Stream answers GET /v1/events/stream with server-sent events: one
// "event: <type>" message per event, its id the event id and its data
// the event's JSON, and a ": keep-alive" comment when idle. With since,
// cursor or a Last-Event-ID header it first replays the stored events
// from there, then follows live ones. until and limit end the stream. A
// client that cannot keep up gets an "event: lagged" message and the
// stream ends; it may reconnect with Last-Event-ID to resume.
func (h *Handler) Stream(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	lastID := r.Header.Get("Last-Event-ID")
	if lastID != "" {
		if _, ok := parseEventKey(lastID); !ok {
			return badParam("Last-Event-ID is not an event id")
		}
	}
	f, err := parseFilter(q, h.cfg.Now())
	if err != nil {
		return err
	}
	if err := scopeFilter(r.Context(), &f); err != nil {
		return err
	}
	if f.Desc {
		return badParam("order=desc is not supported on the stream")
	}
	select {
	case <-h.done:
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeShuttingDown, Message: "the node is shutting down", RetryAfter: 1}
	default:
	}
	if n := h.streams.Add(1); n > int64(h.cfg.MaxStreams) {
		h.streams.Add(-1)
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: "too many event streams; retry later", RetryAfter: 5}
	}
	defer h.streams.Add(-1)

	ctx := r.Context()
	// Subscribe before replaying, so nothing falls between the two.
	lf := f
	lf.Limit, lf.Cursor = 0, ""
	sub := h.bus.subscribe(ctx, lf)
	subStart := h.cfg.Now()

	rc := http.NewResponseController(w)
	flushW := func() error {
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	sent := 0
	done := func() bool { return f.Limit > 0 && sent >= f.Limit }
	send := func(e Event) error {
		raw, err := json.Marshal(e)
		if err != nil {
			return nil
		}
		if _, err := fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", e.ID, e.Type, raw); err != nil {
			return err
		}
		sent++
		return nil
	}
	if _, err := fmt.Fprintf(w, ": leash events\nretry: 2000\n\n"); err != nil {
		return nil
	}
	_ = flushW()

	// Replay. Events replayed from around the subscription's start are
	// remembered so their live copy is not sent twice.
	seen := map[string]bool{}
	if lastID != "" || f.Cursor != "" || !f.Since.IsZero() {
		rf := f
		rf.Limit = MaxLimit
		if lastID != "" {
			k, _ := parseEventKey(lastID)
			rf.Cursor = cursor{key: k, fp: rf.fingerprint()}.encode()
		}
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = h.bus.Flush(fctx, h.cfg.StoreSink)
		cancel()
		for !done() {
			select {
			case <-h.done:
				return nil
			default:
			}
			evs, next, err := h.store.Query(ctx, rf)
			if err != nil {
				if ctx.Err() == nil {
					h.log.Warn("event stream replay failed", "err", err)
				}
				return nil
			}
			for _, e := range evs {
				if done() {
					break
				}
				if !e.Time.Before(subStart.Add(-2*time.Second)) && len(seen) < 100_000 {
					seen[e.ID] = true
				}
				if err := send(e); err != nil {
					return nil
				}
			}
			_ = flushW()
			if next == "" {
				break
			}
			rf.Cursor = next
		}
	}

	if !f.Until.IsZero() && !h.cfg.Now().Before(f.Until) {
		return nil // nothing live can fall before until
	}
	// live sends one live event; stop ends the stream.
	live := func(e Event) (stop bool) {
		if seen[e.ID] {
			return false
		}
		if !f.Until.IsZero() && !e.Time.Before(f.Until) {
			return true
		}
		return send(e) != nil || done()
	}
	tick := time.NewTicker(h.cfg.KeepAlive)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return nil
		case <-h.done:
			return nil
		case e, ok := <-sub.ch:
			if !ok {
				if sub.Lagged() {
					fmt.Fprintf(w, "event: lagged\ndata: {\"message\":\"the client fell behind; reconnect with Last-Event-ID to resume\"}\n\n")
					_ = flushW()
				}
				return nil
			}
			if live(e) {
				_ = flushW()
				return nil
			}
			// Send what else is ready, then flush once.
		drain:
			for {
				select {
				case e, ok := <-sub.ch:
					if !ok {
						break drain // the next receive reports why
					}
					if live(e) {
						_ = flushW()
						return nil
					}
				default:
					break drain
				}
			}
			if err := flushW(); err != nil {
				return nil
			}
		case <-tick.C:
			if _, err := fmt.Fprintf(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			if err := flushW(); err != nil {
				return nil
			}
		}
	}
	return nil
}

// QueryURL is the path and query of GET /v1/events for f (for clients).
func QueryURL(base string, f Filter) string {
	return strings.TrimSuffix(base, "/") + "/v1/events?" + f.Values().Encode()
}

type tenantScopeKey struct{}

// ForTenant makes List and Stream answer only tenant's events: the API
// puts it in the context of a request made with a tenant's credential.
func ForTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantScopeKey{}, tenant)
}

// scopeFilter narrows f to the request's tenant, if it has one; naming
// another tenant is refused.
func scopeFilter(ctx context.Context, f *Filter) error {
	t, ok := ctx.Value(tenantScopeKey{}).(string)
	if !ok {
		return nil
	}
	if f.Tenant != "" && f.Tenant != t {
		return api.Errorf(http.StatusForbidden, api.CodeForbidden, "a tenant's credential reads its own tenant's events only")
	}
	f.Tenant = t
	return nil
}
