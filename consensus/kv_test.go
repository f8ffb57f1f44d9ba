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

const kvT0 = int64(1_800_000_000) * int64(time.Second)

func kvAt(d time.Duration) int64 { return kvT0 + int64(d) }

func kvPut(tenant, session, key, value string, ttl time.Duration, quota int64) *PutKV {
	return &PutKV{Entry: KVEntry{Tenant: tenant, Session: session, Key: key, Value: []byte(value),
		UpdatedAt: kvAt(0), ExpiresAt: kvAt(ttl)}, QuotaBytes: quota}
}

func applyKV(t *testing.T, f *FSM, idx *uint64, c Command) *Result {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	*idx++
	return applyAll(t, f, [][]byte{b}, *idx)[0]
}

// TestKVCommands: every command's refusals leave state untouched, and
// what it accepts changes state, the expiry index and the session's
// counters together.
func TestKVCommands(t *testing.T) {
	long := strings.Repeat("k", MaxKVKeyBytes+1)
	cases := map[string]struct {
		c    Command
		code string
	}{
		"put":                {kvPut("acme", "s1", "a", "1", time.Minute, 100), ""},
		"put with slash key": {kvPut("acme", "s1", "a/b", "1", time.Minute, 100), ""},
		"empty key":          {kvPut("acme", "s1", "", "1", time.Minute, 100), CodeKVInvalidKey},
		"long key":           {kvPut("acme", "s1", long, "1", time.Minute, 1<<20), CodeKVInvalidKey},
		"not utf-8":          {kvPut("acme", "s1", "\xff", "1", time.Minute, 100), CodeKVInvalidKey},
		"nul in key":         {kvPut("acme", "s1", "a\x00", "1", time.Minute, 100), CodeKVInvalidKey},
		"value too large":    {kvPut("acme", "s1", "a", strings.Repeat("v", MaxKVValueBytes+1), time.Minute, 1<<30), CodeKVTooLarge},
		"no ttl":             {kvPut("acme", "s1", "a", "1", 0, 100), CodeKVInvalidTTL},
		"over quota":         {kvPut("acme", "s1", "a", strings.Repeat("v", 100), time.Minute, 100), CodeKVQuota},
		"no quota":           {kvPut("acme", "s1", "a", "1", time.Minute, 0), CodeKVQuota},
		"slash in session":   {kvPut("acme", "s/1", "a", "1", time.Minute, 100), CodeInvalid},
		"no tenant":          {kvPut("", "s1", "a", "1", time.Minute, 100), CodeInvalid},
		"metadata too large": {&PutKV{Entry: KVEntry{Tenant: "acme", Session: "s1", Key: "a", Metadata: bytes.Repeat([]byte("m"), MaxKVMetadataBytes+1), UpdatedAt: kvAt(0), ExpiresAt: kvAt(time.Minute)}, QuotaBytes: 1 << 20}, CodeKVTooLarge},
		"delete missing":     {&DeleteKV{Tenant: "acme", Session: "s1", Key: "a"}, ""},
		"delete bad key":     {&DeleteKV{Tenant: "acme", Session: "s1", Key: ""}, CodeKVInvalidKey},
		"end bad session":    {&EndSession{Tenant: "acme", Session: ""}, CodeInvalid},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			db := newStateDB(t)
			f := NewFSM(db, nil)
			var idx uint64
			before := kvStateBytes(t, db)
			r := applyKV(t, f, &idx, tc.c)
			if r.Code != tc.code {
				t.Fatalf("code %q (%s), want %q", r.Code, r.Message, tc.code)
			}
			if tc.code != "" && !bytes.Equal(before, kvStateBytes(t, db)) {
				t.Fatal("a refused command changed state")
			}
		})
	}
}

func TestKVQuotaAndUsage(t *testing.T) {
	db := newStateDB(t)
	f := NewFSM(db, nil)
	s := f.State()
	var idx uint64
	mustKV := func(c Command, code string) *Result {
		t.Helper()
		r := applyKV(t, f, &idx, c)
		if r.Code != code {
			t.Fatalf("%s: code %q (%s), want %q", c.Op(), r.Code, r.Message, code)
		}
		return r
	}
	usage := func(tenant, session string, wantB, wantN int64) {
		t.Helper()
		b, n, err := s.KVUsage(tenant, session)
		if err != nil || b != wantB || n != wantN {
			t.Fatalf("usage of %s/%s: %d bytes, %d entries, %v; want %d, %d", tenant, session, b, n, err, wantB, wantN)
		}
	}
	// key (1) + value (9) = 10 bytes each.
	mustKV(kvPut("acme", "s1", "a", "123456789", time.Minute, 30), "")
	mustKV(kvPut("acme", "s1", "b", "123456789", time.Minute, 30), "")
	usage("acme", "s1", 20, 2)
	// Replacing counts the difference, not the sum.
	r := mustKV(kvPut("acme", "s1", "b", "1234", time.Minute, 30), "")
	if v := r.Value.(*KVPutResult); v.Bytes != 15 || v.Entries != 2 {
		t.Fatalf("put result %+v", v)
	}
	mustKV(kvPut("acme", "s1", "c", strings.Repeat("x", 15), time.Minute, 30), CodeKVQuota)
	usage("acme", "s1", 15, 2)
	// Another session and another tenant have quotas of their own.
	mustKV(kvPut("acme", "s2", "a", strings.Repeat("x", 29), time.Minute, 30), "")
	mustKV(kvPut("other", "s1", "a", strings.Repeat("x", 29), time.Minute, 30), "")
	usage("acme", "s2", 30, 1)
	// Isolation of reads: the same key in three scopes, three values.
	for _, sc := range [][3]string{{"acme", "s1", "123456789"}, {"acme", "s2", strings.Repeat("x", 29)}, {"other", "s1", strings.Repeat("x", 29)}} {
		e, err := s.KVGet(sc[0], sc[1], "a", kvAt(0))
		if err != nil || string(e.Value) != sc[2] {
			t.Fatalf("%s/%s a: %v %v", sc[0], sc[1], e, err)
		}
	}
	if _, err := s.KVGet("acme", "s3", "a", kvAt(0)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another session: %v", err)
	}
	// Delete frees its bytes.
	r = mustKV(&DeleteKV{Tenant: "acme", Session: "s1", Key: "a"}, "")
	if r.Value != true {
		t.Fatalf("delete of a present key returned %v", r.Value)
	}
	usage("acme", "s1", 5, 1)
	// An entry past its TTL never counts against a put: the put drops it.
	short := kvPut("acme", "s1", "old", strings.Repeat("x", 20), time.Second, 30)
	mustKV(short, "")
	usage("acme", "s1", 28, 2)
	later := kvPut("acme", "s1", "new", strings.Repeat("y", 20), time.Minute, 30)
	later.Entry.UpdatedAt, later.Entry.ExpiresAt = kvAt(2*time.Second), kvAt(time.Minute)
	mustKV(later, "")
	usage("acme", "s1", 28, 2)
	if _, err := s.KVGet("acme", "s1", "old", kvAt(0)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired entry kept: %v", err)
	}
	// Ending a session drops its entries and counters, no one else's.
	r = mustKV(&EndSession{Tenant: "acme", Session: "s1"}, "")
	if r.Value != 2 {
		t.Fatalf("end session removed %v", r.Value)
	}
	usage("acme", "s1", 0, 0)
	usage("acme", "s2", 30, 1)
	usage("other", "s1", 30, 1)
}

// TestKVExpiry: reads hide entries past their TTL at the reader's time;
// ExpireKV forgets them through the index, at most a bounded number per
// command.
func TestKVExpiry(t *testing.T) {
	db := newStateDB(t)
	f := NewFSM(db, nil)
	s := f.State()
	var idx uint64
	for i, ttl := range []time.Duration{time.Second, 2 * time.Second, time.Hour} {
		if r := applyKV(t, f, &idx, kvPut("acme", "s", string(rune('a'+i)), "v", ttl, 100)); r.Code != "" {
			t.Fatal(r.Message)
		}
	}
	if _, err := s.KVGet("acme", "s", "a", kvAt(time.Second)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read at expiry: %v", err)
	}
	if _, err := s.KVGet("acme", "s", "a", kvAt(time.Second-1)); err != nil {
		t.Fatalf("read before expiry: %v", err)
	}
	list, more, err := s.KVList("acme", "s", "", "", 10, kvAt(1500*time.Millisecond))
	if err != nil || more || len(list) != 2 || list[0].Key != "b" {
		t.Fatalf("list: %+v %v %v", list, more, err)
	}
	r := applyKV(t, f, &idx, &ExpireKV{Before: kvAt(2*time.Second) + 1})
	if r.Code != "" || r.Value != 2 {
		t.Fatalf("expire: %+v", r)
	}
	if b, n, _ := s.KVUsage("acme", "s"); b != 2 || n != 1 {
		t.Fatalf("after expiry: %d bytes, %d entries", b, n)
	}
	var index int
	_ = scan(db, prefixKVExp, func(_, _ []byte) error { index++; return nil })
	if index != 1 {
		t.Fatalf("%d expiry index entries, want 1", index)
	}
}

func TestKVList(t *testing.T) {
	db := newStateDB(t)
	f := NewFSM(db, nil)
	s := f.State()
	var idx uint64
	keys := []string{"a", "b/1", "b/2", "b/3", "c"}
	for _, k := range keys {
		if r := applyKV(t, f, &idx, kvPut("acme", "s", k, "v", time.Hour, 1000)); r.Code != "" {
			t.Fatal(r.Message)
		}
	}
	if r := applyKV(t, f, &idx, kvPut("acme", "s2", "b/9", "v", time.Hour, 1000)); r.Code != "" {
		t.Fatal(r.Message)
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		list, more, err := s.KVList("acme", "s", "b/", cursor, 2, kvAt(0))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range list {
			if e.Value != nil {
				t.Fatal("list returned a value")
			}
			got = append(got, e.Key)
		}
		if !more {
			break
		}
		cursor = list[len(list)-1].Key
		if pages > 5 {
			t.Fatal("list does not end")
		}
	}
	if strings.Join(got, ",") != "b/1,b/2,b/3" {
		t.Fatalf("listed %v", got)
	}
}

// kvScript is a fixed sequence of KV commands, refusals included.
func kvScript(t testing.TB) [][]byte {
	var out [][]byte
	later := kvPut("acme", "s1", "d", "dddd", time.Minute, 20)
	later.Entry.UpdatedAt, later.Entry.ExpiresAt = kvAt(3*time.Second), kvAt(time.Hour)
	later.Entry.Metadata = []byte(`{"m":1}`)
	for _, c := range []Command{
		kvPut("acme", "s1", "a", "aaaa", time.Second, 20),
		kvPut("acme", "s1", "b", "bbbb", time.Minute, 20),
		kvPut("acme", "s1", "c", strings.Repeat("c", 20), time.Minute, 20), // over quota
		kvPut("acme", "s2", "a", "x", time.Minute, 20),
		later, // drops a (expired) to fit
		&DeleteKV{Tenant: "acme", Session: "s1", Key: "b"},
		&ExpireKV{Before: kvAt(2 * time.Minute)},
		&EndSession{Tenant: "acme", Session: "s1"},
	} {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestKVStateFormat pins the bytes the KV script leaves under the KV
// prefixes after every command, as TestQueueStateFormat does for the
// queue: a deliberate format change updates the hash with a migration.
func TestKVStateFormat(t *testing.T) {
	db := newStateDB(t)
	f := NewFSM(db, nil)
	h := sha256.New()
	refused, keys := 0, 0
	for i, c := range kvScript(t) {
		for _, r := range applyAll(t, f, [][]byte{c}, uint64(i+1)) {
			if r.Code != "" {
				refused++
			}
		}
		for _, prefix := range []string{prefixKV, prefixKVExp, prefixKVBytes, prefixKVCount} {
			if err := scan(db, prefix, func(k, v []byte) error {
				h.Write(k)
				h.Write([]byte{0})
				h.Write(v)
				h.Write([]byte{0})
				keys++
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		h.Write([]byte{1})
	}
	if refused != 1 {
		t.Fatalf("%d refusals, want 1", refused)
	}
	const want = "a9e8461fe0288374a0aa61d89887c7ea8ca48c29e932308d9f6d7f40ee50f30a"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("kv state along the script: %d keys in all, sha256 %s, want %s", keys, got, want)
	}
}

// FuzzDecodeKVCommand: any bytes decode to a command or an error; a KV
// command that decodes applies or is refused without panicking, and a
// refusal leaves state as it was (nothing partly written).
func FuzzDecodeKVCommand(f *testing.F) {
	for _, c := range kvScript(f) {
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
		case *PutKV, *DeleteKV, *ExpireKV, *EndSession:
		default:
			return
		}
		before := kvStateBytes(t, db)
		idx++
		r := applyAll(t, fsm, [][]byte{b}, idx)[0]
		if r.Code != "" && !bytes.Equal(before, kvStateBytes(t, db)) {
			t.Fatalf("refused %s (%s) changed state", c.Op(), r.Code)
		}
	})
}

func kvStateBytes(t testing.TB, db iterable) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, prefix := range []string{prefixKV, prefixKVExp, prefixKVBytes, prefixKVCount} {
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
