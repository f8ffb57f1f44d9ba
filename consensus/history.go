// Durable task history in replicated state (docs/sessions.md, "History"):
// a bounded record of every finished task, readable on any node until
// its tenant's retention runs out, with an expiry index the leader
// purges in bounded batches.

package consensus

import (
	"encoding/binary"
	"encoding/json"
	"errors"
)

// Keys of the history area.
const (
	prefixHist    = PrefixState + "hist/"     // <task id> → the record
	prefixHistExp = PrefixState + "hist-exp/" // 8-byte big-endian expiry, <task id> → empty
)

// Bounds of the history commands.
const (
	// MaxTaskRecordBytes bounds one record's task JSON: the node leaves
	// out response bodies and logs, and drops what still does not fit.
	MaxTaskRecordBytes = 16 << 10
	// MaxTaskRecordsPerCommand bounds one PutTaskRecords.
	MaxTaskRecordsPerCommand = 128
	// maxHistPurgePerCommand bounds the work of one PurgeTaskRecords.
	maxHistPurgePerCommand = 10000
)

// TaskRecord is one finished task as history keeps it: its tenant (for
// scoping reads), when it is forgotten, and the task as the API shows it
// (api.Task's JSON; this package does not read it).
type TaskRecord struct {
	ID        string          `msgpack:"id"`
	Tenant    string          `msgpack:"tenant"`
	ExpiresAt int64           `msgpack:"expires_at"` // unix ns
	Task      json.RawMessage `msgpack:"task"`
}

func histExpiryKey(r *TaskRecord) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(max(r.ExpiresAt, 0)))
	return prefixHistExp + string(b[:]) + r.ID
}

// taskRecords is the history record with its expiry index: the only
// writer of the keys under hist/ and hist-exp/.
var taskRecords = &table[TaskRecord]{
	name: "task record",
	key:  func(r *TaskRecord) string { return prefixHist + r.ID },
	indexes: []index[TaskRecord]{
		{"expiry", always(histExpiryKey), func(*TaskRecord) []byte { return emptyValue }},
	},
}

// PutTaskRecords adds a batch of finished tasks to history; a record for
// a task already there replaces it (a later attempt, a retried batch).
type PutTaskRecords struct {
	Records []TaskRecord `msgpack:"records"`
}

// PurgeTaskRecords forgets records whose retention ended before Before
// (unix ns), oldest first, at most maxHistPurgePerCommand of them.
type PurgeTaskRecords struct {
	Before int64 `msgpack:"before"`
}

func (PutTaskRecords) Op() Op   { return OpPutTaskRecords }
func (PurgeTaskRecords) Op() Op { return OpPurgeTaskRecords }

func applyPutTaskRecords(tx *Tx, c *PutTaskRecords) (int, error) {
	if len(c.Records) == 0 || len(c.Records) > MaxTaskRecordsPerCommand {
		return 0, refuse(CodeInvalid, "a history batch holds 1-%d records", MaxTaskRecordsPerCommand)
	}
	for i := range c.Records {
		r := &c.Records[i]
		switch {
		case !validKeyID(r.ID) || !ValidKVName(r.Tenant):
			return 0, refuse(CodeInvalid, "a task record needs a task id and a tenant")
		case r.ExpiresAt <= 0:
			return 0, refuse(CodeInvalid, "a task record needs its expiry")
		case len(r.Task) == 0 || len(r.Task) > MaxTaskRecordBytes || !json.Valid(r.Task):
			return 0, refuse(CodeInvalid, "a task record is JSON of at most %d bytes", MaxTaskRecordBytes)
		}
	}
	for i := range c.Records {
		r := c.Records[i]
		old, err := taskRecords.get(tx, prefixHist+r.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			old = nil
		case err != nil:
			return 0, err
		}
		if old != nil && old.Tenant != r.Tenant {
			return 0, refuse(CodeInvalid, "task %s belongs to another tenant", r.ID)
		}
		if err := taskRecords.put(tx, old, &r); err != nil {
			return 0, err
		}
	}
	return len(c.Records), nil
}

func applyPurgeTaskRecords(tx *Tx, c *PurgeTaskRecords) (int, error) {
	return taskRecords.expireBefore(tx, prefixHistExp, prefixHist, c.Before, maxHistPurgePerCommand)
}

// TaskRecord returns a task's history record, or ErrNotFound.
func (s *State) TaskRecord(id string) (*TaskRecord, error) {
	return taskRecords.get(s.db, prefixHist+id)
}
