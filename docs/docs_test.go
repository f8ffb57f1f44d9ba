package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// codeRef is a file the docs name in backticks, with an optional function
// or type after a colon: `node/tasks.go:submitTask`.
var codeRef = regexp.MustCompile("`((?:[a-z0-9_]+/)+[a-z0-9_]+\\.go)(?::([A-Za-z_][A-Za-z0-9_]*))?`")

// TestArchitectureNamesRealCode: every file ARCHITECTURE.md names exists,
// and every function or type it names after a colon is declared in that
// file, so the walks through the code cannot go stale unnoticed.
func TestArchitectureNamesRealCode(t *testing.T) {
	for _, page := range []string{"ARCHITECTURE.md", "RATIONALE.md"} {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		refs := codeRef.FindAllStringSubmatch(string(b), -1)
		if page == "ARCHITECTURE.md" && len(refs) < 20 {
			t.Fatalf("%s names only %d code references; the pattern is broken", page, len(refs))
		}
		for _, m := range refs {
			file, name := m[1], m[2]
			src, err := os.ReadFile(filepath.Join("..", file))
			if err != nil {
				t.Errorf("%s names %s, which does not exist", page, file)
				continue
			}
			if name == "" {
				continue
			}
			decl := regexp.MustCompile(`(?m)^(func (\([^)]*\) )?` + name + `[\[(]|(type|var|const) ` + name + `\b|\t` + name + `\s)`)
			if !decl.Match(src) {
				t.Errorf("%s names %s:%s, which %s does not declare", page, file, name, file)
			}
		}
		if strings.Contains(string(b), "TODO") {
			t.Errorf("%s has a TODO", page)
		}
	}
}
