package consensus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

var (
	// ErrKeyNotFound is returned by [LogStore.Get] and [LogStore.GetUint64]
	// for a key that was never set. Its message is exactly "not found"
	// because raft recognises a missing key by comparing err.Error() with
	// that string (raft v1.8.0, NewRaft, HasExistingState, RecoverCluster,
	// requestVote). It is returned unwrapped for the same reason; other
	// callers should test it with errors.Is.
	ErrKeyNotFound = errors.New("not found")

	// ErrCorruptLogRecord is wrapped by every error that reports a raft log
	// record that cannot be decoded.
	ErrCorruptLogRecord = errors.New("corrupt raft log record")
)

// logRecordVersion is the version of the encoding of raft log entries.
//
// Version 1 is a msgpack array of 7 elements:
//
//	[1, Index uint, Term uint, Type uint (0..255), Data bin|nil,
//	 Extensions bin|nil, AppendedAt timestamp ext (-1)|nil]
//
// A nil AppendedAt is the zero time. Decoders read the version first and
// refuse versions they do not know.
const logRecordVersion = 1

const (
	logRecordFields = 7
	logKeyLen       = len(PrefixRaftLog) + 8
)

// LogStore is raft's log store and stable store on the node's shared Pebble
// database, under [PrefixRaftLog] and [PrefixRaftStable]. Every write is
// synced before it returns. It does not own the database: closing the
// database is the caller's job, after raft has shut down.
//
// LogStore tolerates gaps between indexes, so it does not implement
// raft.MonotonicLogStore. It keeps no cache: FirstIndex and LastIndex read
// the database through bounded iterators, which raft calls rarely (it keeps
// its own copy of the last index).
type LogStore struct {
	db *pebble.DB
}

var (
	_ raft.LogStore    = (*LogStore)(nil)
	_ raft.StableStore = (*LogStore)(nil)
)

// NewLogStore returns a LogStore on db. It checks that the log keys already in
// db are well formed, so a database written by something else fails here
// rather than inside raft.
func NewLogStore(db *pebble.DB) (*LogStore, error) {
	if db == nil {
		return nil, errors.New("new log store: nil database")
	}
	s := &LogStore{db: db}
	if _, err := s.FirstIndex(); err != nil {
		return nil, fmt.Errorf("new log store: %w", err)
	}
	if _, err := s.LastIndex(); err != nil {
		return nil, fmt.Errorf("new log store: %w", err)
	}
	return s, nil
}

// FirstIndex returns the lowest index in the log, or 0 when it is empty.
func (s *LogStore) FirstIndex() (uint64, error) {
	return s.edgeIndex((*pebble.Iterator).First)
}

// LastIndex returns the highest index in the log, or 0 when it is empty.
func (s *LogStore) LastIndex() (uint64, error) {
	return s.edgeIndex((*pebble.Iterator).Last)
}

// edgeIndex positions an iterator bounded to the log prefix with seek and
// returns the index under it.
func (s *LogStore) edgeIndex(seek func(*pebble.Iterator) bool) (idx uint64, err error) {
	iter, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(PrefixRaftLog),
		UpperBound: PrefixEnd([]byte(PrefixRaftLog)),
	})
	if err != nil {
		return 0, fmt.Errorf("open raft log iterator: %w", err)
	}
	defer func() {
		if cerr := iter.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close raft log iterator: %w", cerr)
		}
	}()
	if !seek(iter) {
		if err := iter.Error(); err != nil {
			return 0, fmt.Errorf("scan raft log: %w", err)
		}
		return 0, nil
	}
	return parseLogKey(iter.Key())
}

// GetLog reads the entry at index into log. It returns raft.ErrLogNotFound
// when there is none.
func (s *LogStore) GetLog(index uint64, log *raft.Log) error {
	val, closer, err := s.db.Get(logKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("read raft log %d: %w", index, err)
	}
	defer closer.Close()
	// decodeLog copies what it keeps, so val may be released afterwards.
	if err := decodeLog(val, log); err != nil {
		return fmt.Errorf("read raft log %d: %w", index, err)
	}
	if log.Index != index {
		return fmt.Errorf("read raft log %d: record holds index %d: %w", index, log.Index, ErrCorruptLogRecord)
	}
	return nil
}

// StoreLog stores one entry, durably.
func (s *LogStore) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one atomic batch and syncs it before
// returning. Entries replace any entry at the same index.
func (s *LogStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	key := make([]byte, logKeyLen)
	for _, l := range logs {
		buf.Reset()
		if err := encodeLog(enc, l); err != nil {
			return fmt.Errorf("encode raft log %d: %w", l.Index, err)
		}
		putLogKey(key, l.Index)
		// Set copies key and value into the batch.
		if err := b.Set(key, buf.Bytes(), nil); err != nil {
			return fmt.Errorf("batch raft log %d: %w", l.Index, err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store %d raft logs from %d: %w", len(logs), logs[0].Index, err)
	}
	return nil
}

// DeleteRange deletes the entries from min to max, both included, with one
// synced range tombstone. Raft deletes from the front after a snapshot and
// from the back when a follower's log conflicts with the leader's.
func (s *LogStore) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	end := PrefixEnd([]byte(PrefixRaftLog))
	if max < math.MaxUint64 {
		end = logKey(max + 1)
	}
	if err := s.db.DeleteRange(logKey(min), end, pebble.Sync); err != nil {
		return fmt.Errorf("delete raft logs %d..%d: %w", min, max, err)
	}
	return nil
}

// Set stores val under key in the stable store, durably.
func (s *LogStore) Set(key, val []byte) error {
	if err := s.db.Set(stableKey(key), val, pebble.Sync); err != nil {
		return fmt.Errorf("set stable key %q: %w", key, err)
	}
	return nil
}

// Get returns a copy of the value under key, or ErrKeyNotFound (unwrapped,
// as raft expects) when the key was never set.
func (s *LogStore) Get(key []byte) ([]byte, error) {
	val, closer, err := s.db.Get(stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get stable key %q: %w", key, err)
	}
	defer closer.Close()
	// Never nil, even for an empty value: raft treats a nil vote
	// candidate as "no vote".
	return append([]byte{}, val...), nil
}

// SetUint64 stores val under key as 8 big-endian bytes, durably.
func (s *LogStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value under key, or 0 and ErrKeyNotFound when the key
// was never set.
func (s *LogStore) GetUint64(key []byte) (uint64, error) {
	val, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(val) != 8 {
		return 0, fmt.Errorf("get stable key %q: uint64 value has %d bytes, want 8", key, len(val))
	}
	return binary.BigEndian.Uint64(val), nil
}

func logKey(index uint64) []byte {
	k := make([]byte, logKeyLen)
	putLogKey(k, index)
	return k
}

func putLogKey(k []byte, index uint64) {
	copy(k, PrefixRaftLog)
	binary.BigEndian.PutUint64(k[len(PrefixRaftLog):], index)
}

func parseLogKey(k []byte) (uint64, error) {
	if len(k) != logKeyLen || !bytes.HasPrefix(k, []byte(PrefixRaftLog)) {
		return 0, fmt.Errorf("malformed raft log key %q", k)
	}
	return binary.BigEndian.Uint64(k[len(PrefixRaftLog):]), nil
}

func stableKey(key []byte) []byte {
	return append([]byte(PrefixRaftStable), key...)
}

// encodeLog writes l to enc as a version 1 record.
func encodeLog(enc *msgpack.Encoder, l *raft.Log) error {
	if err := enc.EncodeArrayLen(logRecordFields); err != nil {
		return err
	}
	for _, u := range []uint64{logRecordVersion, l.Index, l.Term, uint64(l.Type)} {
		if err := enc.EncodeUint(u); err != nil {
			return err
		}
	}
	if err := enc.EncodeBytes(l.Data); err != nil {
		return err
	}
	if err := enc.EncodeBytes(l.Extensions); err != nil {
		return err
	}
	if l.AppendedAt.IsZero() {
		return enc.EncodeNil()
	}
	return enc.EncodeTime(l.AppendedAt)
}

// marshalLog returns l encoded as a log record.
func marshalLog(l *raft.Log) ([]byte, error) {
	var buf bytes.Buffer
	if err := encodeLog(msgpack.NewEncoder(&buf), l); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeLog decodes a log record from b into l. It refuses anything but one
// complete record of a known version, with an error wrapping
// ErrCorruptLogRecord, and never allocates more than len(b) for byte fields.
// l does not alias b.
func decodeLog(b []byte, l *raft.Log) error {
	out, err := decodeLogRecord(b)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorruptLogRecord, err)
	}
	*l = out
	return nil
}

func decodeLogRecord(b []byte) (raft.Log, error) {
	var l raft.Log
	r := bytes.NewReader(b)
	// A *bytes.Reader is an io.ByteScanner, so the decoder reads straight
	// from r without buffering and r.Len() is exactly what is left.
	d := msgpack.GetDecoder()
	defer msgpack.PutDecoder(d)
	d.Reset(r)
	n, err := d.DecodeArrayLen()
	if err != nil {
		return l, fmt.Errorf("record header: %w", err)
	}
	if n < 1 {
		return l, fmt.Errorf("record has %d fields", n)
	}
	version, err := decodeUint(d)
	if err != nil {
		return l, fmt.Errorf("version: %w", err)
	}
	if version != logRecordVersion {
		return l, fmt.Errorf("unknown record version %d", version)
	}
	if n != logRecordFields {
		return l, fmt.Errorf("version %d record has %d fields, want %d", version, n, logRecordFields)
	}
	if l.Index, err = decodeUint(d); err != nil {
		return l, fmt.Errorf("index: %w", err)
	}
	if l.Term, err = decodeUint(d); err != nil {
		return l, fmt.Errorf("term: %w", err)
	}
	typ, err := decodeUint(d)
	if err != nil {
		return l, fmt.Errorf("type: %w", err)
	}
	if typ > math.MaxUint8 {
		return l, fmt.Errorf("type %d out of range", typ)
	}
	l.Type = raft.LogType(typ)
	if l.Data, err = decodeBytes(d, r); err != nil {
		return l, fmt.Errorf("data: %w", err)
	}
	if l.Extensions, err = decodeBytes(d, r); err != nil {
		return l, fmt.Errorf("extensions: %w", err)
	}
	if l.AppendedAt, err = decodeTime(d); err != nil {
		return l, fmt.Errorf("appended at: %w", err)
	}
	if r.Len() != 0 {
		return l, fmt.Errorf("%d trailing bytes", r.Len())
	}
	return l, nil
}

// decodeUint decodes a non-negative integer. Unlike Decoder.DecodeUint64 it
// refuses nil and negative numbers instead of converting them.
func decodeUint(d *msgpack.Decoder) (uint64, error) {
	c, err := d.PeekCode()
	if err != nil {
		return 0, err
	}
	if c > msgpcode.PosFixedNumHigh && (c < msgpcode.Uint8 || c > msgpcode.Uint64) {
		return 0, fmt.Errorf("code %#x is not an unsigned integer", c)
	}
	return d.DecodeUint64()
}

// decodeBytes decodes a bin or nil. It checks the declared length against
// what is left in r before allocating, so a forged length cannot make it
// allocate gigabytes.
func decodeBytes(d *msgpack.Decoder, r *bytes.Reader) ([]byte, error) {
	c, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	if c != msgpcode.Nil && c != msgpcode.Bin8 && c != msgpcode.Bin16 && c != msgpcode.Bin32 {
		return nil, fmt.Errorf("code %#x is not bin or nil", c)
	}
	n, err := d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil
	}
	if n > r.Len() {
		return nil, fmt.Errorf("length %d exceeds the %d bytes left", n, r.Len())
	}
	out := make([]byte, n)
	if err := d.ReadFull(out); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeTime decodes a msgpack timestamp (ext -1) as UTC, or nil as the zero
// time.
func decodeTime(d *msgpack.Decoder) (time.Time, error) {
	c, err := d.PeekCode()
	if err != nil {
		return time.Time{}, err
	}
	if c == msgpcode.Nil {
		return time.Time{}, d.DecodeNil()
	}
	// The three timestamp forms: 32-bit (fixext 4), 64-bit (fixext 8) and
	// 96-bit (ext 8 of length 12). Other ext codes could declare huge
	// lengths.
	if c != msgpcode.FixExt4 && c != msgpcode.FixExt8 && c != msgpcode.Ext8 {
		return time.Time{}, fmt.Errorf("code %#x is not a timestamp or nil", c)
	}
	t, err := d.DecodeTime()
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}
