package digest

import (
	"crypto/sha256"
	"testing"
)

func TestDigest(t *testing.T) {
	const empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if got := Of(nil); got != empty {
		t.Fatalf("Of(nil) = %s", got)
	}
	h := sha256.New()
	if got := Sum(h); got != empty {
		t.Fatalf("Sum = %s", got)
	}
	for d, want := range map[string]bool{
		empty:                       true,
		"sha256:" + empty[7:70]:     false, // short
		"sha256:" + empty[7:] + "0": false,
		"SHA256:" + empty[7:]:       false,
		"sha256:E3" + empty[9:]:     false, // upper-case hex
		"sha256:../" + empty[10:]:   false,
		"":                          false,
	} {
		if Valid(d) != want {
			t.Errorf("Valid(%q) = %v", d, !want)
		}
	}
}
