package httpapi

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRouteTableIsDocumented: docs/api.md's endpoint table lists exactly
// the routes of the table, each with the roles the table declares.
func TestRouteTableIsDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Z]+) ([^`\\[?]+)[^`]*` \\| ([^|]+) \\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		documented[m[1]+" "+strings.TrimSuffix(m[2], "…")] = strings.TrimSpace(m[3])
	}
	declared := map[string]bool{}
	for _, rt := range Table {
		k := rt.Method + " " + rt.Path
		declared[k] = true
		got, ok := documented[k]
		if !ok {
			t.Errorf("%s is not in docs/api.md's endpoint table", k)
			continue
		}
		if got != rt.Roles.String() {
			t.Errorf("%s: docs say %q, the route table %q", k, got, rt.Roles)
		}
	}
	for k := range documented {
		if !declared[k] {
			t.Errorf("docs/api.md documents %s, which the route table does not serve", k)
		}
	}
}
