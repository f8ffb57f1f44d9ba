package consensus

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

func discardLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// openTestDB opens the database in dir; the caller closes it.
func openTestDB(t testing.TB, dir string) *pebble.DB {
	t.Helper()
	db, err := OpenDB(dir, discardLogger())
	if err != nil {
		t.Fatalf("OpenDB(%q): %v", dir, err)
	}
	return db
}

func TestOpenDB(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "leash-data")
	db := openTestDB(t, dir)
	if err := db.Set([]byte(PrefixLocal+"k"), []byte("v"), pebble.Sync); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("stat data dir: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("data dir mode = %v, want 0700", perm)
	}

	db = openTestDB(t, dir)
	defer db.Close()
	val, closer, err := db.Get([]byte(PrefixLocal + "k"))
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	defer closer.Close()
	if string(val) != "v" {
		t.Errorf("Get after reopen = %q, want %q", val, "v")
	}
}

func TestOpenDBErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{
		"dir is a file":    file,
		"parent is a file": filepath.Join(file, "db"),
	}
	for name, dir := range tests {
		t.Run(name, func(t *testing.T) {
			db, err := OpenDB(dir, nil)
			if err == nil {
				db.Close()
				t.Fatalf("OpenDB(%q) succeeded, want error", dir)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not name the directory", err)
			}
		})
	}
}

func TestOpenDBLocked(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir)
	defer db.Close()
	if second, err := OpenDB(dir, nil); err == nil {
		second.Close()
		t.Fatal("second OpenDB on an open directory succeeded, want lock error")
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := map[string]struct {
		prefix, want []byte
	}{
		"raft log":      {[]byte(PrefixRaftLog), []byte("r/l0")},
		"raft stable":   {[]byte(PrefixRaftStable), []byte("r/s0")},
		"state":         {[]byte(PrefixState), []byte("s0")},
		"trailing 0xff": {[]byte("a\xff\xff"), []byte("b")},
		"all 0xff":      {[]byte("\xff\xff"), nil},
		"empty":         {nil, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := bytes.Clone(tc.prefix)
			got := PrefixEnd(in)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("PrefixEnd(%q) = %q, want %q", tc.prefix, got, tc.want)
			}
			if !bytes.Equal(in, tc.prefix) {
				t.Errorf("PrefixEnd modified its argument: %q", in)
			}
		})
	}
}

func TestPrefixesDisjoint(t *testing.T) {
	prefixes := []string{PrefixRaftLog, PrefixRaftStable, PrefixState, PrefixLocal}
	for _, a := range prefixes {
		for _, b := range prefixes {
			if a != b && strings.HasPrefix(a, b) {
				t.Errorf("prefix %q starts with prefix %q", a, b)
			}
		}
	}
}

func TestPebbleLogger(t *testing.T) {
	tests := map[string]struct {
		log       func(l slogPebbleLogger)
		wantLevel string
		wantPanic bool
	}{
		"info":  {log: func(l slogPebbleLogger) { l.Infof("flushed %d", 3) }, wantLevel: "INFO"},
		"error": {log: func(l slogPebbleLogger) { l.Errorf("flushed %d", 3) }, wantLevel: "ERROR"},
		"fatal": {log: func(l slogPebbleLogger) { l.Fatalf("flushed %d", 3) }, wantLevel: "ERROR", wantPanic: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slogPebbleLogger{logger: slog.New(slog.NewTextHandler(&buf, nil))}
			panicked := func() (p bool) {
				defer func() { p = recover() != nil }()
				tc.log(l)
				return false
			}()
			if panicked != tc.wantPanic {
				t.Errorf("panicked = %v, want %v", panicked, tc.wantPanic)
			}
			out := buf.String()
			if !strings.Contains(out, "level="+tc.wantLevel) || !strings.Contains(out, `msg="flushed 3"`) {
				t.Errorf("log line = %q, want level %s and message %q", out, tc.wantLevel, "flushed 3")
			}
		})
	}
}
