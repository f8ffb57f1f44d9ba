package image

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"testing"
)

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	path, err := Install(dir)
	if Engine() == nil {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Install without a carried engine: %v, want fs.ErrNotExist", err)
		}
		t.Skip("this test binary carries no engine (make build copies it into data/)")
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, Engine()) {
		t.Fatalf("installed engine differs from the carried one (err %v)", err)
	}
	// A second install keeps the file; a damaged one is replaced.
	if err := os.WriteFile(path, []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := Install(dir)
	if err != nil || again != path {
		t.Fatalf("reinstall: %q, %v", again, err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, Engine()) {
		t.Fatal("a damaged installed engine was kept")
	}
}
