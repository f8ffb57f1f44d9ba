package deptest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/leash-dev/leash/internal/nodetest"
)

const module = "github.com/leash-dev/leash/"

// pkg is what go list says of one package.
type pkg struct {
	ImportPath                         string
	Name                               string
	Doc                                string
	Imports                            []string
	TestGoFiles, XTestGoFiles, GoFiles []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = nodetest.RepoRoot()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, errOut.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(&out)
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		p.ImportPath = strings.TrimPrefix(p.ImportPath, module)
		for i, imp := range p.Imports {
			p.Imports[i] = strings.TrimPrefix(imp, module)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// banned says which of the project's packages a package must not import
// (directly): the layering of docs/ARCHITECTURE.md. A key names a package
// or, ending in "/...", a tree; "*" is every package.
var banned = map[string][]string{
	"*":           {"node"}, // the composition root; only its callers import it
	"consensus":   {"api", "node", "sandbox", "egress", "scheduler"},
	"lease":       {"api", "consensus"},
	"ledger":      {"api", "consensus", "sandbox", "egress"},
	"record":      {"api", "consensus", "lease", "sandbox", "egress", "policy"},
	"digest":      {"api", "consensus", "lease", "sandbox", "egress", "policy"},
	"sandbox":     {"consensus", "egress", "lease", "ledger", "api"},
	"egress":      {"sandbox", "consensus", "lease"},
	"fetch":       {"api", "consensus", "sandbox", "egress", "policy"},
	"scheduler":   {"consensus", "sandbox", "egress", "api"},
	"policy":      {"api", "consensus", "sandbox", "egress"},
	"weburl":      {"api", "consensus", "sandbox", "egress", "policy"},
	"webencoding": {"api", "consensus", "sandbox", "egress", "policy"},
	"api":         {"consensus", "sandbox", "egress", "lease", "ledger"},
	"bulk":        {"httpapi", "egress", "lease", "ledger"},
	"httpapi":     {"consensus", "sandbox", "egress", "lease", "ledger", "scheduler"},
	// The areas' API packages see the node through the small interface
	// each declares, not the parts it composes, nor each other.
	"lifecycle": {"sandbox", "egress", "scheduler", "lease", "bulk", "usage", "sessions", "runbook"},
	"usage":     {"sandbox", "egress", "scheduler", "lease", "ledger", "bulk", "lifecycle", "sessions", "runbook"},
	"sessions":  {"egress", "lease", "ledger", "scheduler", "bulk"},
	"tenants":   {"sandbox", "egress", "lease", "ledger", "scheduler", "bulk", "sessions"},
	"runbook":   {"sandbox", "egress", "scheduler", "lease", "bulk", "usage", "lifecycle", "sessions", "tenants", "leases", "modules"},
	"leases":    {"sandbox", "egress", "ledger", "scheduler", "bulk", "tenants", "usage", "lifecycle", "runbook"},
	"modules":   {"egress", "lease", "ledger", "scheduler", "bulk", "tenants", "usage", "lifecycle", "runbook", "sessions", "leases"},
	"audit":     {"sandbox", "egress", "scheduler", "bulk", "tenants", "usage", "lifecycle", "runbook", "sessions", "leases", "modules"},
}

// mayImportNode are the packages above the composition root.
var mayImportNode = []string{"cli", "cmd/leash", "e2e", "bench"}

// pending are imports that break the rules and are being removed ("a ->
// b"); none today. The test fails when one of them is gone, so the list
// only shrinks.
var pending = []string{}

func TestImportRules(t *testing.T) {
	var found []string
	for _, p := range listPackages(t) {
		for _, imp := range p.Imports {
			rules := append(slices.Clone(banned["*"]), banned[p.ImportPath]...)
			if imp == "node" && slices.Contains(mayImportNode, p.ImportPath) {
				continue
			}
			if slices.Contains(rules, imp) {
				found = append(found, p.ImportPath+" -> "+imp)
			}
		}
	}
	for _, f := range found {
		if !slices.Contains(pending, f) {
			t.Errorf("banned import %s (see internal/deptest's rules)", f)
		}
	}
	for _, p := range pending {
		if !slices.Contains(found, p) {
			t.Errorf("%s is gone: take it off the pending list", p)
		}
	}
}

// TestEveryPackageHasADocComment: every package says what it is for, in a
// doc comment (go doc shows it).
func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}
