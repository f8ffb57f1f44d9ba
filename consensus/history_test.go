package consensus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

func histRecord(id, tenant string, exp time.Duration) TaskRecord {
	return TaskRecord{ID: id, Tenant: tenant, ExpiresAt: kvAt(exp), Task: []byte(`{"task_id":"` + id + `","state":"succeeded"}`)}
}

func histScript(t testing.TB) [][]byte {
	var out [][]byte
	for _, c := range []Command{
		&PutTaskRecords{Records: []TaskRecord{histRecord("tsk_a", "acme", time.Hour), histRecord("tsk_b", "acme", 2*time.Hour)}},
		&PutTaskRecords{Records: []TaskRecord{histRecord("tsk_b", "other", time.Hour)}}, // another tenant's id: refused
		&PutTaskRecords{Records: []TaskRecord{histRecord("tsk_c", "other", 3*time.Hour)}},
		&PutTaskRecords{Records: []TaskRecord{histRecord("tsk_a", "acme", 4*time.Hour)}}, // replaced, re-indexed
		&PurgeTaskRecords{Before: kvAt(2*time.Hour) + 1},
	} {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func histStateBytes(t testing.TB, db iterable) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, prefix := range []string{prefixHist, prefixHistExp} {
		if err := scan(db, prefix, func(k, v []byte) error {
			buf.Write(k)
			buf.WriteByte(0)
			buf.Write(v)
			buf.WriteByte(0)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestTaskHistory: records are kept per task id for their tenant,
// replaced by a later record, refused when malformed or another
// tenant's, and purged through the expiry index.
func TestTaskHistory(t *testing.T) {
	db := newStateDB(t)
	f := NewFSM(db, nil)
	res := applyAll(t, f, histScript(t), 1)
	for i, want := range []string{"", CodeInvalid, "", "", ""} {
		if res[i].Code != want {
			t.Fatalf("command %d: %q (%s), want %q", i, res[i].Code, res[i].Message, want)
		}
	}
	if res[4].Value != 1 {
		t.Fatalf("purge removed %v, want 1 (tsk_b)", res[4].Value)
	}
	s := f.State()
	if r, err := s.TaskRecord("tsk_a"); err != nil || r.ExpiresAt != kvAt(4*time.Hour) {
		t.Fatalf("tsk_a: %+v %v", r, err)
	}
	if _, err := s.TaskRecord("tsk_b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tsk_b after its retention: %v", err)
	}
	if r, err := s.TaskRecord("tsk_c"); err != nil || r.Tenant != "other" {
		t.Fatalf("tsk_c: %+v %v", r, err)
	}
	index := 0
	_ = scan(db, prefixHistExp, func(_, _ []byte) error { index++; return nil })
	if index != 2 {
		t.Fatalf("%d expiry index entries, want 2", index)
	}
	next := uint64(100)
	for name, c := range map[string]*PutTaskRecords{
		"empty":     {},
		"no tenant": {Records: []TaskRecord{histRecord("tsk_x", "", time.Hour)}},
		"no expiry": {Records: []TaskRecord{{ID: "tsk_x", Tenant: "acme", Task: []byte(`{}`)}}},
		"not json":  {Records: []TaskRecord{{ID: "tsk_x", Tenant: "acme", ExpiresAt: 1, Task: []byte(`{`)}}},
		"too large": {Records: []TaskRecord{{ID: "tsk_x", Tenant: "acme", ExpiresAt: 1, Task: []byte(`"` + strings.Repeat("x", MaxTaskRecordBytes) + `"`)}}},
		"bad id":    {Records: []TaskRecord{histRecord("a/b", "acme", time.Hour)}},
	} {
		before := histStateBytes(t, db)
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		next++
		if r := applyAll(t, f, [][]byte{b}, next)[0]; r.Code != CodeInvalid {
			t.Errorf("%s: %q", name, r.Code)
		}
		if !bytes.Equal(before, histStateBytes(t, db)) {
			t.Errorf("%s: a refused batch changed state", name)
		}
	}
}

// TestHistoryStateFormat pins the history script's bytes, as
// TestKVStateFormat does for the KV.
func TestHistoryStateFormat(t *testing.T) {
	db := newStateDB(t)
	f := NewFSM(db, nil)
	h := sha256.New()
	for i, c := range histScript(t) {
		applyAll(t, f, [][]byte{c}, uint64(i+1))
		h.Write(histStateBytes(t, db))
		h.Write([]byte{1})
	}
	const want = "13e188e2bd6147b7ae4798c3dc79848e7e3b854b3894bf436acadf2db685ed06"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("history state along the script: sha256 %s, want %s", got, want)
	}
}

// FuzzDecodeHistoryCommand: a history command that decodes applies or is
// refused, and a refusal writes nothing.
func FuzzDecodeHistoryCommand(f *testing.F) {
	for _, c := range histScript(f) {
		f.Add(c)
	}
	db := newStateDB(f)
	fsm := NewFSM(db, nil)
	var idx uint64
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		switch c.(type) {
		case *PutTaskRecords, *PurgeTaskRecords:
		default:
			return
		}
		before := histStateBytes(t, db)
		idx++
		r := applyAll(t, fsm, [][]byte{b}, idx)[0]
		if r.Code != "" && !bytes.Equal(before, histStateBytes(t, db)) {
			t.Fatalf("refused %s (%s) changed state", c.Op(), r.Code)
		}
	})
}
