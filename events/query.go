package events

import (
	"encoding/base64"
	"encoding/binary"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/leash-dev/leash/api"
)

// Query bounds.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	// maxParamLen bounds tenant, lease and task values.
	maxParamLen = 256
)

// Filter selects events. Empty fields match everything. Since is
// inclusive, Until exclusive. Types match any of the listed types. Trace
// is a trace id (32 lower-case hex digits): it matches events whose
// traceparent carries it. Limit and Cursor page through Query results;
// Desc returns newest first.
type Filter struct {
	Tenant string
	Types  []Type
	Since  time.Time
	Until  time.Time
	Lease  string
	Task   string
	Trace  string
	Limit  int
	Cursor string
	Desc   bool
}

// Match reports whether e passes every condition of f (not Limit and
// Cursor).
func (f *Filter) Match(e Event) bool {
	if f.Tenant != "" && e.Tenant != f.Tenant {
		return false
	}
	if f.Lease != "" && e.Lease != f.Lease {
		return false
	}
	if f.Task != "" && e.Task != f.Task {
		return false
	}
	if f.Trace != "" && e.TraceID() != f.Trace {
		return false
	}
	if len(f.Types) > 0 && !slices.Contains(f.Types, e.Type) {
		return false
	}
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !e.Time.Before(f.Until) {
		return false
	}
	return true
}

// queryParams are the parameters of GET /v1/events and its stream.
var queryParams = []string{"tenant", "type", "since", "until", "lease", "task", "trace", "limit", "cursor", "order"}

// ParseFilter reads a Filter from the query parameters of
// GET /v1/events: tenant, type (comma-separated), since and until
// (RFC 3339, or a Go duration meaning that long ago), lease, task, trace
// (a trace id or a whole traceparent), limit (1..1000, default 100),
// cursor, order (asc or desc). Unknown or repeated parameters and bad
// values are errors: an *api.Error with status 400 and code bad_request.
func ParseFilter(q url.Values) (Filter, error) {
	return parseFilter(q, time.Now())
}

func parseFilter(q url.Values, now time.Time) (Filter, error) {
	var f Filter
	for k, v := range q {
		if !slices.Contains(queryParams, k) {
			return f, badParam("unknown parameter %q (known: %s)", k, strings.Join(queryParams, ", "))
		}
		if len(v) > 1 {
			return f, badParam("parameter %q is repeated", k)
		}
	}
	var err error
	if f.Tenant, err = idParam(q, "tenant"); err != nil {
		return f, err
	}
	if f.Lease, err = idParam(q, "lease"); err != nil {
		return f, err
	}
	if f.Task, err = idParam(q, "task"); err != nil {
		return f, err
	}
	if s := q.Get("type"); s != "" {
		for _, t := range strings.Split(s, ",") {
			tt := Type(strings.TrimSpace(t))
			if !tt.Known() {
				return f, badParam("unknown event type %q", clip(t))
			}
			if !slices.Contains(f.Types, tt) {
				f.Types = append(f.Types, tt)
			}
		}
		slices.Sort(f.Types)
	}
	if f.Since, err = timeParam(q, "since", now); err != nil {
		return f, err
	}
	if f.Until, err = timeParam(q, "until", now); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, badParam("until must be after since")
	}
	if s := q.Get("trace"); s != "" {
		s = strings.ToLower(s)
		switch {
		case isTraceID(s):
			f.Trace = s
		case traceIDOf(s) != "":
			f.Trace = traceIDOf(s)
		default:
			return f, badParam("trace must be a trace id (32 hex digits, not all zero) or a traceparent")
		}
	}
	if s, ok := q["limit"]; ok {
		n, err := strconv.Atoi(s[0])
		if err != nil || n < 1 || n > MaxLimit {
			return f, badParam("limit must be an integer from 1 to %d", MaxLimit)
		}
		f.Limit = n
	}
	switch q.Get("order") {
	case "", "asc":
	case "desc":
		f.Desc = true
	default:
		return f, badParam("order must be asc or desc")
	}
	if s := q.Get("cursor"); s != "" {
		c, err := decodeCursor(s)
		if err != nil {
			return f, err
		}
		if c.desc != f.Desc || c.fp != f.fingerprint() {
			return f, badParam("cursor belongs to another query: repeat the query's parameters with it")
		}
		f.Cursor = s
	}
	return f, nil
}

func badParam(format string, args ...any) error {
	return api.BadRequest(api.CodeBadRequest, format, args...)
}

// clip shortens user input quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func idParam(q url.Values, name string) (string, error) {
	s := q.Get(name)
	if len(s) > maxParamLen {
		return "", badParam("%s is longer than %d bytes", name, maxParamLen)
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return "", badParam("%s must be UTF-8 text without control characters", name)
	}
	return s, nil
}

func timeParam(q url.Values, name string, now time.Time) (time.Time, error) {
	s := q.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.Year() < 1970 || t.Year() > 2200 {
			return time.Time{}, badParam("%s is out of range", name)
		}
		return t.UTC(), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 && d < 100*365*24*time.Hour {
		return now.Add(-d).UTC(), nil
	}
	return time.Time{}, badParam("%s must be an RFC 3339 time (2006-01-02T15:04:05Z) or a duration ago (15m, 24h)", name)
}

// Values encodes f as query parameters that ParseFilter reads back.
func (f *Filter) Values() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("tenant", f.Tenant)
	set("lease", f.Lease)
	set("task", f.Task)
	set("trace", f.Trace)
	if len(f.Types) > 0 {
		ts := make([]string, len(f.Types))
		for i, t := range f.Types {
			ts[i] = string(t)
		}
		q.Set("type", strings.Join(ts, ","))
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Desc {
		q.Set("order", "desc")
	}
	set("cursor", f.Cursor)
	return q
}

// fingerprint hashes what f selects (not its time bounds, which may be
// relative and move between pages, nor Limit and Cursor), so a cursor is
// refused with another query than the one that made it.
func (f *Filter) fingerprint() uint64 {
	var b strings.Builder
	for _, s := range []string{f.Tenant, f.Lease, f.Task, f.Trace} {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	types := slices.Clone(f.Types)
	slices.Sort(types)
	for _, t := range types {
		b.WriteString(string(t))
		b.WriteByte(',')
	}
	if f.Desc {
		b.WriteByte('d')
	}
	return fnv64(b.String())
}

// cursor is a decoded page cursor: the key of the last event returned,
// the direction, and the fingerprint of the query.
type cursor struct {
	key  eventKey
	desc bool
	fp   uint64
}

const cursorVersion = 1

// cursorLen is version, flags, key, fingerprint.
const cursorLen = 1 + 1 + 16 + 8

var cursorEncoding = base64.RawURLEncoding.Strict()

func (c cursor) encode() string {
	var b [cursorLen]byte
	b[0] = cursorVersion
	if c.desc {
		b[1] = 1
	}
	copy(b[2:18], c.key[:])
	binary.BigEndian.PutUint64(b[18:], c.fp)
	return cursorEncoding.EncodeToString(b[:])
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	bad := badParam("cursor is not one this server made")
	if len(s) != cursorEncoding.EncodedLen(cursorLen) {
		return c, bad
	}
	b, err := cursorEncoding.DecodeString(s)
	if err != nil || len(b) != cursorLen || b[0] != cursorVersion || b[1] > 1 {
		return c, bad
	}
	c.desc = b[1] == 1
	copy(c.key[:], b[2:18])
	c.fp = binary.BigEndian.Uint64(b[18:])
	return c, nil
}
