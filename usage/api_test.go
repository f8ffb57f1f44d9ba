package usage

import (
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/httpapi"
)

// TestParseQuery: a usage query is scoped to a tenant caller's own
// tenant, its days default to the 30 ending today and are bounded, and
// its groups are named once each; every refusal has its code.
func TestParseQuery(t *testing.T) {
	now := time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC)
	s := NewService(ServiceConfig{Now: func() time.Time { return now }})
	admin := &httpapi.Caller{Role: httpapi.Admin}
	tenant := &httpapi.Caller{Role: httpapi.Tenant, Tenant: "acme"}
	parse := func(c *httpapi.Caller, query string) (*usageQuery, error) {
		r := httptest.NewRequest("GET", "/v1/usage?"+query, nil)
		return s.parseQuery(r.WithContext(httpapi.WithCaller(r.Context(), c)))
	}

	q, err := parse(tenant, "")
	if err != nil {
		t.Fatal(err)
	}
	if q.tenant != "acme" || q.from != "2026-11-03" || q.to != "2026-12-02" || !slices.Equal(q.groupBy, usageGroups) {
		t.Fatalf("defaults %+v", q)
	}
	if q, err = parse(admin, "from=2026-09-01&to=2026-12-01&group_by=day,tenant"); err != nil {
		t.Fatal(err)
	}
	if q.tenant != "" || !slices.Equal(q.groupBy, []string{"day", "tenant"}) {
		t.Fatalf("staff query %+v", q)
	}

	for _, tc := range []struct {
		caller *httpapi.Caller
		query  string
		status int
		code   string
	}{
		{tenant, "tenant=other", 403, api.CodeForbidden},
		{admin, "to=2026-13-01", 400, CodeInvalidDate},
		{admin, "from=2026-12-02&to=2026-12-01", 400, CodeInvalidDate},
		{admin, "from=2026-08-30&to=2026-11-30", 400, CodeRangeTooLong}, // 93 days; 92 is the most
		{admin, "group_by=day,day", 400, CodeInvalidGroup},
		{admin, "group_by=lease", 400, CodeInvalidGroup},
	} {
		_, err := parse(tc.caller, tc.query)
		ae, ok := api.AsError(err)
		if !ok || ae.Status != tc.status || ae.Code != tc.code {
			t.Errorf("%q: %v, want %d %s", tc.query, err, tc.status, tc.code)
		}
	}
	if _, err := parse(admin, "from=2026-09-01&to=2026-12-01"); err != nil {
		t.Errorf("92 days refused: %v", err)
	}
}
