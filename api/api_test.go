package api

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestCodesAreDocumented: every error code constant appears in
// docs/api.md's error table.
func TestCodesAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), "api.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		vs, ok := node.(*ast.ValueSpec)
		if !ok || !strings.HasPrefix(vs.Names[0].Name, "Code") {
			return true
		}
		lit := vs.Values[0].(*ast.BasicLit)
		code, _ := strconv.Unquote(lit.Value)
		n++
		if !strings.Contains(string(doc), "| `"+code+"` |") {
			t.Errorf("error code %s (%s) is not in docs/api.md", code, vs.Names[0].Name)
		}
		return true
	})
	if n < 30 {
		t.Fatalf("found only %d codes", n)
	}
}

func TestEnvVars(t *testing.T) {
	var e Env
	if err := json.Unmarshal([]byte(`{"S":"x","N": 42 ,"O":{"a": [1, 2]},"B":true,"Z":null}`), &e); err != nil {
		t.Fatal(err)
	}
	if e["S"].Text != "x" || e["S"].JSON != nil {
		t.Errorf("S: %+v", e["S"])
	}
	for k, want := range map[string]string{"N": "42", "O": `{"a":[1,2]}`, "B": "true", "Z": "null"} {
		if string(e[k].JSON) != want {
			t.Errorf("%s: %q, want %q", k, e[k].JSON, want)
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"B":true,"N":42,"O":{"a":[1,2]},"S":"x","Z":null}` {
		t.Errorf("round trip: %s", b)
	}
	if err := json.Unmarshal([]byte(`{"X":[1,}`), &e); err == nil {
		t.Error("malformed value accepted")
	}
}
