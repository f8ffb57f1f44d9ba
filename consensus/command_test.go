package consensus

import "testing"

// TestCommandTable: every row of the command table builds a body of its
// own op, names are unique, and every command round-trips through the
// log form.
func TestCommandTable(t *testing.T) {
	names := map[string]Op{}
	for op, s := range commands {
		c := s.new()
		if c.Op() != op {
			t.Errorf("%s: the row's body is a %s", op, c.Op())
		}
		if prev, ok := names[s.name]; ok {
			t.Errorf("ops %d and %d are both named %q", prev, op, s.name)
		}
		names[s.name] = op
		b, err := Encode(c)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		d, err := Decode(b)
		if err != nil || d.Op() != op {
			t.Errorf("%s: decoded %v, %v", op, d, err)
		}
	}
}
