package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// table declares, once, how a record type lives in replicated state: the
// key of its record, its secondary indexes and the counters it counts in.
// Appliers write records only through put, insert and remove, which keep
// every index and counter in step with the record; no applier writes an
// index key by hand. (The idea is go-memdb's schema, over Pebble keys.)
//
// The keys a table writes are part of the state format: changing an
// index's key or value is a format change (TestQueueStateFormat).
type table[T any] struct {
	name     string
	key      func(*T) string // the record's key
	indexes  []index[T]
	counters []counter[T]
	sums     []sum[T]
}

// index is a secondary index: a record in it has one key there (ok
// false: the record is not in the index in its present state), and the
// value stored under that key.
type index[T any] struct {
	name  string
	key   func(*T) (key string, ok bool)
	value func(*T) []byte
}

// counter is a count kept under a key: a record counts 1 under the key it
// maps to (ok false: under none). A count that falls to 0 is deleted.
type counter[T any] struct {
	name string
	key  func(*T) (key string, ok bool)
}

// sum is a total kept under a key: a record adds amount under the key it
// maps to (the session KV's bytes per session). A total that falls to 0
// is deleted.
type sum[T any] struct {
	name   string
	key    func(*T) string
	amount func(*T) int64
}

// get reads the record stored under key.
func (tb *table[T]) get(r reader, key string) (*T, error) {
	var v T
	if err := getRecord(r, key, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// insert writes a new record with its index entries and counts.
func (tb *table[T]) insert(tx *Tx, cur *T) error { return tb.put(tx, nil, cur) }

// put writes cur, which replaces old (nil for a new record), and moves its
// index entries and counts from where old had them to where cur has them.
// old must be the record as stored, before the applier changed it.
func (tb *table[T]) put(tx *Tx, old, cur *T) error {
	for _, ix := range tb.indexes {
		nk, nok := ix.key(cur)
		if old != nil {
			if ok, ook := ix.key(old); ook && (!nok || ok != nk) {
				tx.Delete(ok)
			}
		}
		if nok {
			tx.Set(nk, ix.value(cur))
		}
	}
	for _, c := range tb.counters {
		nk, nok := c.key(cur)
		ok, ook := "", false
		if old != nil {
			ok, ook = c.key(old)
		}
		if ook && nok && ok == nk {
			continue
		}
		if ook {
			if err := addCount(tx, ok, -1); err != nil {
				return fmt.Errorf("%s counter %s: %w", tb.name, c.name, err)
			}
		}
		if nok {
			if err := addCount(tx, nk, 1); err != nil {
				return fmt.Errorf("%s counter %s: %w", tb.name, c.name, err)
			}
		}
	}
	for _, c := range tb.sums {
		if old != nil {
			if err := addCount(tx, c.key(old), -c.amount(old)); err != nil {
				return fmt.Errorf("%s sum %s: %w", tb.name, c.name, err)
			}
		}
		if err := addCount(tx, c.key(cur), c.amount(cur)); err != nil {
			return fmt.Errorf("%s sum %s: %w", tb.name, c.name, err)
		}
	}
	return put(tx, tb.key(cur), cur)
}

// remove deletes old (the record as stored) with its index entries and
// counts.
func (tb *table[T]) remove(tx *Tx, old *T) error {
	for _, ix := range tb.indexes {
		if k, ok := ix.key(old); ok {
			tx.Delete(k)
		}
	}
	for _, c := range tb.counters {
		if k, ok := c.key(old); ok {
			if err := addCount(tx, k, -1); err != nil {
				return fmt.Errorf("%s counter %s: %w", tb.name, c.name, err)
			}
		}
	}
	for _, c := range tb.sums {
		if err := addCount(tx, c.key(old), -c.amount(old)); err != nil {
			return fmt.Errorf("%s sum %s: %w", tb.name, c.name, err)
		}
	}
	tx.Delete(tb.key(old))
	return nil
}

// expireBefore removes, oldest first and at most limit of them, the records
// whose entry in a time index (idxPrefix + 8-byte big-endian time + the
// record's key without recPrefix) is before the time before. It returns
// how many index entries it took; an entry without its record (never
// written so) is dropped.
func (tb *table[T]) expireBefore(tx *Tx, idxPrefix, recPrefix string, before int64, limit int) (int, error) {
	var gone []string
	upper := idxPrefix + string(binary.BigEndian.AppendUint64(nil, uint64(max(before, 0))))
	err := scan(tx, idxPrefix, func(k, _ []byte) error {
		if len(gone) >= limit || string(k) >= upper {
			return errStopScan
		}
		gone = append(gone, string(k))
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return 0, err
	}
	for _, k := range gone {
		rec, err := tb.get(tx, recPrefix+k[len(idxPrefix)+8:])
		switch {
		case errors.Is(err, ErrNotFound):
			tx.Delete(k)
			continue
		case err != nil:
			return 0, err
		}
		if err := tb.remove(tx, rec); err != nil {
			return 0, err
		}
	}
	return len(gone), nil
}

// always is an index or counter key every record has.
func always[T any](key func(*T) string) func(*T) (string, bool) {
	return func(v *T) (string, bool) { return key(v), true }
}

// Counters are 8-byte big-endian values; an absent key is 0.

func getCount(r reader, key string) (int64, error) {
	b, closer, err := r.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(b) != 8 {
		return 0, fmt.Errorf("counter %s is %d bytes", key, len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

func addCount(tx *Tx, key string, delta int64) error {
	v, err := getCount(tx, key)
	if err != nil {
		return err
	}
	v += delta
	if v <= 0 {
		tx.Delete(key)
		return nil
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	tx.Set(key, b[:])
	return nil
}
