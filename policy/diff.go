package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Change is one difference between two bundles, located by field path
// in the canonical form: profiles.docs-reader.limits.cpu_ms, or
// profiles.api-caller.egress.allow[api.example.com].rate (allow rules
// are matched by host, not by position).
type Change struct {
	// Section groups changes: profiles, limits, egress, kv, retry,
	// intents, tenants, budgets, deny, version.
	Section string          `json:"section"`
	Path    string          `json:"path"`
	Op      string          `json:"op"` // added, removed, changed
	Old     json.RawMessage `json:"old,omitempty"`
	New     json.RawMessage `json:"new,omitempty"`
}

// Diff ops.
const (
	DiffAdded   = "added"
	DiffRemoved = "removed"
	DiffChanged = "changed"
)

// Diff is the semantic difference from bundle a to bundle b: what a
// change of policy from a to b would change, field by field, in the
// order of the paths. Two bundles with the same digest have none.
func Diff(a, b *Bundle) []Change {
	ta, tb := tree(a), tree(b)
	var out []Change
	diffValue("", ta, tb, &out)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// tree is the canonical form as generic JSON (numbers kept as written).
func tree(b *Bundle) any {
	dec := json.NewDecoder(bytes.NewReader(b.Canonical()))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		panic(fmt.Sprintf("policy: canonical form does not decode: %v", err))
	}
	return v
}

func diffValue(path string, a, b any, out *[]Change) {
	switch {
	case a == nil && b == nil:
		return
	case a == nil:
		*out = append(*out, change(path, DiffAdded, nil, b))
		return
	case b == nil:
		*out = append(*out, change(path, DiffRemoved, a, nil))
		return
	}
	ma, aok := a.(map[string]any)
	mb, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range ma {
			keys[k] = true
		}
		for k := range mb {
			keys[k] = true
		}
		for k := range keys {
			diffValue(joinPath(path, k), ma[k], mb[k], out)
		}
		return
	}
	if ka, ok := byHost(a); ok {
		if kb, ok := byHost(b); ok {
			keys := map[string]bool{}
			for k := range ka {
				keys[k] = true
			}
			for k := range kb {
				keys[k] = true
			}
			for k := range keys {
				diffValue(path+"["+k+"]", ka[k], kb[k], out)
			}
			return
		}
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		*out = append(*out, change(path, DiffChanged, a, b))
	}
}

// byHost keys a list of allow rules by host.
func byHost(v any) (map[string]any, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	m := make(map[string]any, len(list))
	for _, e := range list {
		r, ok := e.(map[string]any)
		if !ok {
			return nil, false
		}
		h, ok := r["host"].(string)
		if !ok {
			return nil, false
		}
		if _, dup := m[h]; dup {
			return nil, false
		}
		m[h] = r
	}
	return m, true
}

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func change(path, op string, a, b any) Change {
	c := Change{Section: section(path), Path: path, Op: op}
	if a != nil {
		c.Old, _ = json.Marshal(a)
	}
	if b != nil {
		c.New, _ = json.Marshal(b)
	}
	return c
}

// section names the part of a bundle a path is in.
func section(path string) string {
	parts := strings.SplitN(path, ".", 4)
	switch {
	case parts[0] == "profiles" && len(parts) >= 3:
		sub := parts[2]
		if i := strings.IndexByte(sub, '['); i >= 0 {
			sub = sub[:i]
		}
		switch sub {
		case "limits", "egress", "kv", "retry":
			return sub
		}
		return "profiles"
	case parts[0] == "tenants" && len(parts) >= 3 && parts[2] == "budget":
		return "budgets"
	}
	if i := strings.IndexByte(parts[0], '['); i >= 0 {
		return parts[0][:i]
	}
	return parts[0]
}

// FormatDiff writes changes one a line: "~ path: old → new", "+ path:
// new", "- path: old".
func FormatDiff(changes []Change) string {
	var b strings.Builder
	for _, c := range changes {
		switch c.Op {
		case DiffAdded:
			fmt.Fprintf(&b, "+ %s: %s\n", c.Path, c.New)
		case DiffRemoved:
			fmt.Fprintf(&b, "- %s: %s\n", c.Path, c.Old)
		default:
			fmt.Fprintf(&b, "~ %s: %s → %s\n", c.Path, c.Old, c.New)
		}
	}
	return b.String()
}
