package consensus

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// The FSM command set. This file is the one place that lists every change
// replicated state can undergo; each command is applied by the handler of
// the same name in apply.go. Commands are msgpack, wrapped in a versioned
// envelope; an unknown version or op is refused, never guessed.

// CommandVersion is the envelope version this build writes and reads.
const CommandVersion = 1

// MaxCommandBytes bounds one Raft entry. Bigger proposals are refused
// before they reach the log.
const MaxCommandBytes = 4 << 20

// Op names a command.
type Op uint16

// Ops. Values are part of the log format: never renumber, only append.
const (
	OpPutPolicy    Op = 1 // store a policy bundle and point an environment at it
	OpIssueLease   Op = 2 // record a lease
	OpRevokeLease  Op = 3 // revoke one lease
	OpPutNodeKey   Op = 4 // publish a node's public key (lease or receipt signing)
	OpPutNode      Op = 5 // record a node's addresses
	OpExpireLeases Op = 6 // forget leases that expired before a time

	// The receipt ledger (ledger.go).
	OpLedgerInit       Op = 20 // name the ledger (its checkpoint origin), once
	OpAppendReceipts   Op = 21 // append a batch of signed receipts
	OpCosignCheckpoint Op = 22 // add a node's signature to a checkpoint

	// The bulk task queue (queue.go).
	OpPutQueueModule Op = 30 // replicate a module bulk tasks run
	OpEnqueueTask    Op = 31 // add a bulk task
	OpClaimTask      Op = 32 // claim a tenant's next due task for a node
	OpRenewClaims    Op = 33 // extend a node's claims
	OpCompleteTask   Op = 34 // end an attempt: succeeded, failed, dead, cancelled or retry
	OpCancelTask     Op = 35 // cancel a task
	OpReclaimTasks   Op = 36 // take back expired claims, or a restarted node's
	OpPurgeTasks     Op = 37 // forget finished tasks past their retention
)

var opNames = map[Op]string{
	OpPutPolicy:    "put_policy",
	OpIssueLease:   "issue_lease",
	OpRevokeLease:  "revoke_lease",
	OpPutNodeKey:   "put_node_key",
	OpPutNode:      "put_node",
	OpExpireLeases: "expire_leases",

	OpLedgerInit:       "ledger_init",
	OpAppendReceipts:   "append_receipts",
	OpCosignCheckpoint: "cosign_checkpoint",

	OpPutQueueModule: "put_queue_module",
	OpEnqueueTask:    "enqueue_task",
	OpClaimTask:      "claim_task",
	OpRenewClaims:    "renew_claims",
	OpCompleteTask:   "complete_task",
	OpCancelTask:     "cancel_task",
	OpReclaimTasks:   "reclaim_tasks",
	OpPurgeTasks:     "purge_tasks",
}

func (o Op) String() string {
	if n, ok := opNames[o]; ok {
		return n
	}
	return fmt.Sprintf("op(%d)", uint16(o))
}

// Command is a typed command body.
type Command interface {
	Op() Op
}

// envelope is what is written to the Raft log.
type envelope struct {
	_msgpack struct{} `msgpack:",as_array"`
	V        uint8
	Op       Op
	Body     msgpack.RawMessage
}

// PutPolicy stores a bundle (its canonical JSON; the digest is recomputed
// on apply) and points Env at it when Env is set.
type PutPolicy struct {
	Canonical []byte `msgpack:"canonical"`
	Source    []byte `msgpack:"source"` // the YAML as written, for people
	Env       string `msgpack:"env"`
	By        string `msgpack:"by"`
	At        int64  `msgpack:"at"` // unix nanoseconds, set by the proposer
}

// IssueLease records a lease. The proposer validated it against the
// bundle; apply checks again against replicated state.
type IssueLease struct {
	Lease Lease `msgpack:"lease"`
}

// RevokeLease revokes one lease.
type RevokeLease struct {
	LeaseID string `msgpack:"lease_id"`
	Reason  string `msgpack:"reason"`
	By      string `msgpack:"by"`
	At      int64  `msgpack:"at"`
}

// PutNodeKey publishes a node's Ed25519 public key.
type PutNodeKey struct {
	Key NodeKey `msgpack:"key"`
}

// PutNode records a node's identity and addresses.
type PutNode struct {
	Node NodeInfo `msgpack:"node"`
}

// ExpireLeases forgets leases that expired before Before (unix ns).
type ExpireLeases struct {
	Before int64 `msgpack:"before"`
}

func (PutPolicy) Op() Op    { return OpPutPolicy }
func (IssueLease) Op() Op   { return OpIssueLease }
func (RevokeLease) Op() Op  { return OpRevokeLease }
func (PutNodeKey) Op() Op   { return OpPutNodeKey }
func (PutNode) Op() Op      { return OpPutNode }
func (ExpireLeases) Op() Op { return OpExpireLeases }

// newCommand returns an empty body for op, or nil for unknown ops.
func newCommand(op Op) Command {
	switch op {
	case OpPutPolicy:
		return &PutPolicy{}
	case OpIssueLease:
		return &IssueLease{}
	case OpRevokeLease:
		return &RevokeLease{}
	case OpPutNodeKey:
		return &PutNodeKey{}
	case OpPutNode:
		return &PutNode{}
	case OpExpireLeases:
		return &ExpireLeases{}
	case OpLedgerInit:
		return &LedgerInit{}
	case OpAppendReceipts:
		return &AppendReceipts{}
	case OpCosignCheckpoint:
		return &CosignCheckpoint{}
	case OpPutQueueModule:
		return &PutQueueModule{}
	case OpEnqueueTask:
		return &EnqueueTask{}
	case OpClaimTask:
		return &ClaimTask{}
	case OpRenewClaims:
		return &RenewClaims{}
	case OpCompleteTask:
		return &CompleteTask{}
	case OpCancelTask:
		return &CancelTask{}
	case OpReclaimTasks:
		return &ReclaimTasks{}
	case OpPurgeTasks:
		return &PurgeTasks{}
	}
	return nil
}

// Errors of the command codec.
var (
	ErrCommandTooLarge = errors.New("command too large")
	ErrMalformed       = errors.New("malformed command")
)

// Encode writes a command into its log form.
func Encode(c Command) ([]byte, error) {
	body, err := msgpack.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.Op(), err)
	}
	b, err := msgpack.Marshal(&envelope{V: CommandVersion, Op: c.Op(), Body: body})
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.Op(), err)
	}
	if len(b) > MaxCommandBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, at most %d", ErrCommandTooLarge, c.Op(), len(b), MaxCommandBytes)
	}
	return b, nil
}

// Decode reads a command from its log form. Anything but a well-formed
// envelope of a known version and op, with a body that decodes completely
// into that op's type with no unknown fields, is ErrMalformed.
func Decode(b []byte) (Command, error) {
	if len(b) > MaxCommandBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrCommandTooLarge, len(b))
	}
	var env envelope
	r := bytes.NewReader(b)
	dec := msgpack.NewDecoder(r)
	dec.DisallowUnknownFields(true)
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	if r.Len() > 0 {
		return nil, fmt.Errorf("%w: trailing bytes after envelope", ErrMalformed)
	}
	if env.V != CommandVersion {
		return nil, fmt.Errorf("%w: version %d, this node reads %d", ErrMalformed, env.V, CommandVersion)
	}
	c := newCommand(env.Op)
	if c == nil {
		return nil, fmt.Errorf("%w: unknown op %d", ErrMalformed, env.Op)
	}
	br := bytes.NewReader(env.Body)
	bd := msgpack.NewDecoder(br)
	bd.DisallowUnknownFields(true)
	if err := bd.Decode(c); err != nil {
		return nil, fmt.Errorf("%w: %s body: %v", ErrMalformed, env.Op, err)
	}
	if br.Len() > 0 {
		return nil, fmt.Errorf("%w: %s body: trailing bytes", ErrMalformed, env.Op)
	}
	return c, nil
}

func msgpackMarshal(v any) ([]byte, error) { return msgpack.Marshal(v) }
