package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/events"
)

// runEvents queries the event history (one node, or every member with
// --cluster), or follows the live stream with --follow. Events are
// printed as JSON lines.
func runEvents(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "events", "events [--tenant T] [--type T1,T2] [--since 15m|RFC3339] [--until …] [--lease L] [--task T] [--trace ID] [--limit N] [--follow] [--cluster]")
	q := url.Values{}
	for _, name := range []string{"tenant", "type", "since", "until", "lease", "task", "trace"} {
		fs.Func(name, "filter by "+name, func(s string) error { q.Set(name, s); return nil })
	}
	limit := fs.Int("limit", 100, "events to print (all pages)")
	follow := fs.Bool("follow", false, "stream new events as they happen (server-sent events)")
	all := fs.Bool("cluster", false, "query every member and merge by time")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if _, err := events.ParseFilter(q); err != nil {
		return &exitError{code: 2, msg: err.Error()}
	}
	c := newClient(env)
	if err := c.needAdmin(); err != nil {
		return err
	}
	out := json.NewEncoder(env.Stdout)
	if *follow {
		return c.followEvents(ctx, q, out)
	}
	bases := []string{c.base}
	if *all {
		var cl api.Cluster
		if err := c.json(ctx, http.MethodGet, "/v1/cluster", c.token, nil, &cl); err != nil {
			return err
		}
		bases = bases[:0]
		for _, m := range cl.Members {
			if m.API != "" {
				bases = append(bases, "http://"+m.API)
			}
		}
	}
	var evs []events.Event
	for _, base := range bases {
		got, err := c.listEvents(ctx, base, q, *limit)
		if err != nil {
			return fmt.Errorf("%s: %w", base, err)
		}
		evs = append(evs, got...)
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	if len(evs) > *limit {
		evs = evs[len(evs)-*limit:]
	}
	for _, e := range evs {
		if err := out.Encode(e); err != nil {
			return err
		}
	}
	return nil
}

// listEvents pages through one node's history.
func (c *client) listEvents(ctx context.Context, base string, q url.Values, limit int) ([]events.Event, error) {
	var out []events.Event
	q = cloneValues(q)
	for len(out) < limit {
		q.Set("limit", fmt.Sprint(min(limit-len(out), 1000)))
		var page events.ListResponse
		other := &client{base: base, token: c.token, http: c.http}
		if err := other.json(ctx, http.MethodGet, "/v1/events?"+q.Encode(), c.token, nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Events...)
		if page.NextCursor == "" || len(page.Events) == 0 {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	return out, nil
}

// followEvents reads the server-sent event stream until ctx ends.
func (c *client) followEvents(ctx context.Context, q url.Values, out *json.Encoder) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/events/stream?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "text/event-stream")
	hc := *c.http
	hc.Timeout = 0 // a stream has no end
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("events stream: HTTP %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data:") {
			continue
		}
		var e events.Event
		if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, "data:"))), &e); err != nil {
			continue
		}
		if err := out.Encode(e); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
