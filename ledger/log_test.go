package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

func TestTreeBuilderMatchesTlog(t *testing.T) {
	var stored []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	var b treeBuilder
	for n := int64(0); n <= 300; n++ {
		want, err := tlog.TreeHash(n, hr)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.root(); got != want {
			t.Fatalf("size %d: builder root %s, tlog %s", n, got, want)
		}
		data := []byte(fmt.Sprintf("record %d", n))
		hs, err := tlog.StoredHashes(n, data, hr)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
		b.add(tlog.RecordHash(data))
	}
}

func storeContents(s *MemStore) map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := map[string]string{}
	for k, v := range s.m {
		m[k] = string(v)
	}
	return m
}

func TestAppendDeterministicAcrossBatching(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	envs := c.envelopes(t, 0, 200, "a", "b", "c")
	var ref map[string]string
	var refRoot tlog.Hash
	for _, batch := range []int{1, 7, 64, 200} {
		l, s := newLog(t, envs, batch)
		cp, err := l.Checkpoint(s)
		if err != nil {
			t.Fatal(err)
		}
		got := storeContents(s)
		if ref == nil {
			ref, refRoot = got, cp.Root
			continue
		}
		if cp.Root != refRoot || !maps.Equal(got, ref) {
			t.Fatalf("batch size %d gives another state (root %s, want %s)", batch, cp.Root, refRoot)
		}
	}
}

func TestAppendResults(t *testing.T) {
	c := newCluster(t, "a")
	envs := c.envelopes(t, 0, 10, "a")
	l, s := newLog(t, nil, 1)
	first, size, root, err := l.Append(s, envs[:4])
	if err != nil || first != 0 || size != 4 {
		t.Fatalf("Append = %d, %d, %v", first, size, err)
	}
	if h, _ := l.TreeHash(s, 4); h != root {
		t.Fatalf("returned root %s, TreeHash %s", root, h)
	}
	first, size, _, err = l.Append(s, envs[4:])
	if err != nil || first != 4 || size != 10 {
		t.Fatalf("second Append = %d, %d, %v", first, size, err)
	}
	first, size, _, err = l.Append(s, nil)
	if err != nil || first != 10 || size != 10 {
		t.Fatalf("empty Append = %d, %d, %v", first, size, err)
	}
	for i, e := range envs {
		got, err := l.Record(s, int64(i))
		if err != nil || !bytes.Equal(got, e) {
			t.Fatalf("Record(%d) = %v, %v", i, got, err)
		}
		h, err := l.RecordHash(s, int64(i))
		if err != nil || h != tlog.RecordHash(e) {
			t.Fatalf("RecordHash(%d) = %v, %v", i, h, err)
		}
	}
	if _, err := l.Record(s, 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Record beyond the end: %v", err)
	}
	if _, err := l.Record(s, -1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Record(-1): %v", err)
	}
}

func TestAppendRejectsWithoutWriting(t *testing.T) {
	c := newCluster(t, "a")
	good := c.signed(t, 1, "a")
	pretty := bytes.ReplaceAll(good, []byte(`","`), []byte(`", "`))
	tests := map[string]struct {
		envs     [][]byte
		sentinel error
		text     string
	}{
		"not json":      {[][]byte{good, []byte("nope")}, ErrMalformed, "append: envelope 1 of the batch"},
		"not canonical": {[][]byte{good, pretty}, ErrMalformed, "not in canonical form"},
		"too large":     {[][]byte{make([]byte, MaxEnvelopeBytes+1)}, ErrTooLarge, "envelope 0"},
		"too many":      {make([][]byte, MaxBatchRecords+1), ErrTooLarge, "more than"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l, s := newLog(t, [][]byte{good}, 1)
			before := storeContents(s)
			_, _, _, err := l.Append(s, tc.envs)
			wantErr(t, err, tc.sentinel, tc.text)
			if !maps.Equal(before, storeContents(s)) {
				t.Fatal("a rejected Append wrote to the store")
			}
		})
	}
}

func TestProofs(t *testing.T) {
	c := newCluster(t, "a")
	envs := c.envelopes(t, 0, 40, "a")
	l, s := newLog(t, envs, 5)
	roots := make([]tlog.Hash, 41)
	for n := int64(0); n <= 40; n++ {
		var err error
		if roots[n], err = l.TreeHash(s, n); err != nil {
			t.Fatal(err)
		}
	}
	for n := int64(1); n <= 40; n++ {
		for i := int64(0); i < n; i++ {
			p, err := l.ProveRecord(s, i, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckRecord(p, n, roots[n], i, tlog.RecordHash(envs[i])); err != nil {
				t.Fatalf("record %d in tree %d: %v", i, n, err)
			}
		}
		for old := int64(1); old <= n; old++ {
			p, err := l.ConsistencyProof(s, old, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckTree(p.Proof, n, roots[n], old, roots[old]); err != nil {
				t.Fatalf("tree %d in tree %d: %v", old, n, err)
			}
		}
	}
	if _, err := l.ProveRecord(s, 3, 41); !errors.Is(err, ErrNotFound) {
		t.Fatalf("proof beyond the log: %v", err)
	}
	if _, err := l.ProveTree(s, 10, 5); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("reversed consistency proof: %v", err)
	}
}

func TestExportRoundTrip(t *testing.T) {
	c := newCluster(t, "a")
	envs := c.envelopes(t, 0, 12, "a")
	l, s := newLog(t, envs, 12)
	out := export(t, l, s, 3, 9)
	x := NewExportReader(bytes.NewReader(out))
	var got []int64
	for {
		rec, err := x.Next()
		if err != nil {
			break
		}
		if !bytes.Equal(rec.Envelope, envs[rec.Index]) || rec.Hash != tlog.RecordHash(envs[rec.Index]) {
			t.Fatalf("record %d differs", rec.Index)
		}
		got = append(got, rec.Index)
	}
	if !slices.Equal(got, []int64{3, 4, 5, 6, 7, 8}) {
		t.Fatalf("indexes %v", got)
	}
	if err := l.Export(s, &bytes.Buffer{}, 5, 13); !errors.Is(err, ErrNotFound) {
		t.Fatalf("export beyond the end: %v", err)
	}
}

func TestExportReaderErrors(t *testing.T) {
	tests := map[string]struct {
		in   string
		text string
	}{
		"not json":      {"{\"index\":0,\"hash\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\",\"envelope\":{}}\nxx\n", "export: line 2: not an export record"},
		"no index":      {`{"hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","envelope":{}}`, "field index: is missing"},
		"no hash":       {`{"index":4,"envelope":{}}`, "export: line 1: record 4: field hash: is missing"},
		"no envelope":   {`{"index":4,"hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`, "field envelope: is missing"},
		"bad hash":      {`{"index":4,"hash":"AAAA","envelope":{}}`, "cannot decode hash"},
		"extra field":   {`{"index":4,"hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","envelope":{},"x":1}`, "unknown field"},
		"negative":      {`{"index":-4,"hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","envelope":{}}`, "negative"},
		"line too long": {`{"index":1,"envelope":"` + string(bytes.Repeat([]byte("a"), maxExportLine)) + `"}`, "longer than"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			x := NewExportReader(bytes.NewReader([]byte(tc.in)))
			var err error
			for err == nil {
				_, err = x.Next()
			}
			wantErr(t, err, nil, tc.text)
		})
	}
}

func TestMemStoreNotFound(t *testing.T) {
	s := NewMemStore()
	if _, err := s.Get([]byte("x")); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	_ = s.Set([]byte("x"), []byte("y"))
	if v, err := s.Get([]byte("x")); err != nil || string(v) != "y" || s.Len() != 1 {
		t.Fatal(v, err)
	}
	s.Delete([]byte("x"))
	if s.Len() != 0 {
		t.Fatal("delete")
	}
}
