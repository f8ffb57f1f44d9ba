package consensus

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// The FSM command set. This file is the one place that lists every change
// replicated state can undergo: the ops below and the table commands,
// which names each op's body type and its applier (in the file of its
// area: leases.go, policy.go, nodes.go, ledger.go, queue_state.go, apikeys.go, kv.go, history.go, runbook.go). Commands are msgpack, wrapped in a versioned
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

	// API keys (apikeys.go).
	OpCreateAPIKey Op = 40 // record a new API key (its secret's hash)
	OpRevokeAPIKey Op = 41 // revoke an API key

	// The policy lifecycle (policy.go).
	OpPushPolicy     Op = 50 // store a bundle and point dev (or, overridden, stage or prod) at it
	OpPromotePolicy  Op = 51 // copy a digest forward: dev → stage → prod
	OpRollbackPolicy Op = 52 // return an environment to its previous digest
	OpSetCanary      Op = 53 // start prod's canary or change its percentage
	OpEndCanary      Op = 54 // promote or abort prod's canary

	// Usage counters and budget envelopes (usage.go).
	OpUsageBatch  Op = 60 // add a node's batch of usage deltas, once per node and sequence
	OpSetEnvelope Op = 61 // set, raise or reset a tenant's daily envelope

	// The session KV (kv.go).
	OpPutKV      Op = 70 // write one entry of a session, within its quota
	OpDeleteKV   Op = 71 // delete one entry
	OpExpireKV   Op = 72 // forget entries past their TTL
	OpEndSession Op = 73 // drop every entry of a session

	// Durable task history (history.go).
	OpPutTaskRecords   Op = 74 // add a batch of finished tasks to history
	OpPurgeTaskRecords Op = 75 // forget records past their tenant's retention

	// The security runbook (runbook.go).
	OpFreezeProfile     Op = 80 // freeze (optionally revoking its live leases) or thaw a profile
	OpRevokeLeases      Op = 81 // revoke every live lease a selector matches
	OpBlockDestinations Op = 82 // block or unblock destinations on the global deny list
	OpOpenIncident      Op = 83 // open an incident with its steps
	OpCompleteStep      Op = 84 // record an incident's step as done
	OpCloseIncident     Op = 85 // close an incident
	OpThawCanary        Op = 86 // let a frozen profile's leases through under prod's canary digest (restore)
)

// commands is the command set as a table: for every op, its name, its
// body type, the applier that changes state and the type of the value it
// returns. Decoding, dispatch and forwarded results all read it, so a
// command is added here once.
var commands = map[Op]spec{
	OpPutPolicy:    def("put_policy", applyPutPolicy),
	OpIssueLease:   def("issue_lease", applyIssueLease),
	OpRevokeLease:  def("revoke_lease", applyRevokeLease),
	OpPutNodeKey:   defNoValue("put_node_key", applyPutNodeKey),
	OpPutNode:      defNoValue("put_node", applyPutNode),
	OpExpireLeases: def("expire_leases", applyExpireLeases),

	OpLedgerInit:       defNoValue("ledger_init", applyLedgerInit),
	OpAppendReceipts:   def("append_receipts", applyAppendReceipts),
	OpCosignCheckpoint: def("cosign_checkpoint", applyCosignCheckpoint),

	OpPutQueueModule: def("put_queue_module", applyPutQueueModule),
	OpEnqueueTask:    def("enqueue_task", applyEnqueueTask),
	OpClaimTask:      def("claim_task", applyClaimTask),
	OpRenewClaims:    def("renew_claims", applyRenewClaims),
	OpCompleteTask:   def("complete_task", applyCompleteTask),
	OpCancelTask:     def("cancel_task", applyCancelTask),
	OpReclaimTasks:   def("reclaim_tasks", applyReclaimTasks),
	OpPurgeTasks:     def("purge_tasks", applyPurgeTasks),

	OpCreateAPIKey: def("create_api_key", applyCreateAPIKey),
	OpRevokeAPIKey: def("revoke_api_key", applyRevokeAPIKey),

	OpPushPolicy:     def("push_policy", applyPushPolicy),
	OpPromotePolicy:  def("promote_policy", applyPromotePolicy),
	OpRollbackPolicy: def("rollback_policy", applyRollbackPolicy),
	OpSetCanary:      def("set_canary", applySetCanary),
	OpEndCanary:      def("end_canary", applyEndCanary),

	OpUsageBatch:  def("usage_batch", applyUsageBatch),
	OpSetEnvelope: def("set_envelope", applySetEnvelope),

	OpPutKV:      def("put_kv", applyPutKV),
	OpDeleteKV:   def("delete_kv", applyDeleteKV),
	OpExpireKV:   def("expire_kv", applyExpireKV),
	OpEndSession: def("end_session", applyEndSession),

	OpPutTaskRecords:   def("put_task_records", applyPutTaskRecords),
	OpPurgeTaskRecords: def("purge_task_records", applyPurgeTaskRecords),

	OpFreezeProfile:     def("freeze_profile", applyFreezeProfile),
	OpRevokeLeases:      def("revoke_leases", applyRevokeLeases),
	OpBlockDestinations: def("block_destinations", applyBlockDestinations),
	OpOpenIncident:      def("open_incident", applyOpenIncident),
	OpCompleteStep:      def("complete_step", applyCompleteStep),
	OpCloseIncident:     def("close_incident", applyCloseIncident),
	OpThawCanary:        def("thaw_canary", applyThawCanary),
}

// spec is one command's row in the table.
type spec struct {
	name  string
	new   func() Command
	apply func(*Tx, Command) (any, error)
	// value decodes the value apply returned, as a forwarded write
	// carries it; nil for commands that return none.
	value func([]byte) (any, error)
}

// def is the row of a command whose applier returns a value of type R.
func def[C any, PC interface {
	*C
	Command
}, R any](name string, apply func(*Tx, PC) (R, error)) spec {
	return spec{
		name: name,
		new:  func() Command { return PC(new(C)) },
		apply: func(tx *Tx, c Command) (any, error) {
			v, err := apply(tx, c.(PC))
			if err != nil {
				return nil, err
			}
			return v, nil
		},
		value: func(b []byte) (any, error) {
			var v R
			err := msgpack.Unmarshal(b, &v)
			return v, err
		},
	}
}

// defNoValue is the row of a command whose applier returns only an error.
func defNoValue[C any, PC interface {
	*C
	Command
}](name string, apply func(*Tx, PC) error) spec {
	return spec{
		name:  name,
		new:   func() Command { return PC(new(C)) },
		apply: func(tx *Tx, c Command) (any, error) { return nil, apply(tx, c.(PC)) },
	}
}

func (o Op) String() string {
	if s, ok := commands[o]; ok {
		return s.name
	}
	return fmt.Sprintf("op(%d)", uint16(o))
}

// Command is a typed command body.
type Command interface{ Op() Op }

// envelope is what is written to the Raft log.
type envelope struct {
	_msgpack struct{} `msgpack:",as_array"`
	V        uint8
	Op       Op
	Body     msgpack.RawMessage
}

// newCommand returns an empty body for op, or nil for unknown ops.
func newCommand(op Op) Command {
	if s, ok := commands[op]; ok {
		return s.new()
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
