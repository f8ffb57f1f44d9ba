// Package consensus holds the replicated state of leash.
//
// The state is kept by hashicorp/raft. Its log, its stable store (current
// term, last vote) and the FSM's state all live in one Pebble database per
// node, shared with the ledger and node-local history, and kept apart by key
// prefixes (see [PrefixRaftLog] and its siblings). Commands in the log are
// versioned msgpack records, applied deterministically by the FSM.
//
// # Concurrency
//
// [LogStore] is safe for concurrent use, as raft requires: raft calls it from
// its main loop, its replication goroutines and its snapshot goroutine.
package consensus

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// Key prefixes of the node's Pebble database. Every key the node writes
// starts with exactly one of them; no prefix is a prefix of another, so a
// range scan bounded by [PrefixEnd] never crosses into a neighbour.
const (
	// PrefixRaftLog holds raft log entries: the prefix, then the entry's
	// index as 8 big-endian bytes, so keys sort in index order.
	PrefixRaftLog = "r/l/"
	// PrefixRaftStable holds raft's stable store (current term, last
	// vote): the prefix, then raft's own key.
	PrefixRaftStable = "r/s/"
	// PrefixState holds the FSM's replicated state.
	PrefixState = "s/"
	// PrefixLocal holds node-local data that is not replicated: compiled
	// modules, task records, events.
	PrefixLocal = "x/"
)

// Pebble settings for a small server. The defaults are tuned for much bigger
// machines; these keep memory modest while leaving the WAL on, since raft
// needs every acknowledged write to survive a crash.
//
// L0 is compacted once 16 sublevels wait (Pebble's default is 4): the
// task path writes some 6.5 KB a task under random keys (task ids) into
// a store that starts small, so every L0 compaction rewrites most of the
// level below, and compactions were the largest single cost of an
// audited node under load (24% of its CPU with the minimal WASI guest).
// Compacting four times as much L0 at once cut the node's CPU per task
// by 14% (docs/BENCHMARKS.md, issue 19); point reads see more L0 files,
// which the measurement includes. Writes stall at 48 sublevels (3×, as
// the default's 12 is to 4).
const (
	blockCacheSize        = 32 << 20 // 32 MiB shared block cache
	memTableSize          = 8 << 20  // 8 MiB memtables (two may be queued)
	maxOpenFiles          = 500
	l0CompactionThreshold = 16
	l0StopWritesThreshold = 48
	bloomBitsPerKey       = 10
)

// OpenDB opens the node's Pebble database in dir, creating dir (mode 0700)
// and the database when missing. Pebble's own log lines go to logger. The
// caller owns the returned database and must Close it after every user
// (raft, the FSM, the ledger) has stopped.
func OpenDB(dir string, logger *slog.Logger) (*pebble.DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %q: %w", dir, err)
	}
	cache := pebble.NewCache(blockCacheSize)
	// The database takes its own reference to the cache; drop ours so the
	// cache is freed when the database closes.
	defer cache.Unref()
	opts := &pebble.Options{
		Cache:        cache,
		MemTableSize: memTableSize,
		MaxOpenFiles: maxOpenFiles,
		// See l0CompactionThreshold.
		L0CompactionThreshold: l0CompactionThreshold,
		L0StopWritesThreshold: l0StopWritesThreshold,
		FormatMajorVersion:    pebble.FormatNewest,
		DisableWAL:            false,
		Logger:                slogPebbleLogger{logger: logger},
	}
	// Bloom filters on every level (L1+ inherit L0's): see bloomBitsPerKey.
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(bloomBitsPerKey)
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open pebble database in %q: %w", dir, err)
	}
	return db, nil
}

// PrefixEnd returns the smallest key greater than every key that starts with
// prefix: the exclusive upper bound of a scan over prefix. It returns nil
// (no upper bound) when prefix is empty or all 0xff bytes.
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// slogPebbleLogger routes Pebble's printf-style logging to slog.
type slogPebbleLogger struct {
	logger *slog.Logger
}

var _ pebble.Logger = slogPebbleLogger{}

// Infof logs at info level.
func (l slogPebbleLogger) Infof(format string, args ...any) {
	l.logger.Info(fmt.Sprintf(format, args...))
}

// Errorf logs at error level.
func (l slogPebbleLogger) Errorf(format string, args ...any) {
	l.logger.Error(fmt.Sprintf(format, args...))
}

// Fatalf logs at error level and panics. Pebble calls Fatalf on invariant
// violations and unrecoverable I/O failures (a failed WAL or MANIFEST sync)
// and does not expect it to return: its default logger exits the process.
// Panicking instead keeps the message in our logs, runs deferred cleanups and
// leaves the decision to crash to whoever recovers, never silently.
func (l slogPebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.logger.Error(msg, "fatal", true)
	panic("pebble: fatal: " + msg)
}
