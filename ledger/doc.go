// Package ledger is leash's receipt ledger: signed receipts, the Merkle log
// they are appended to, signed and co-signed checkpoints of that log, and
// the offline checks an auditor runs with nothing but the nodes' public
// keys.
//
// # Receipts
//
// Every task yields one [Receipt], serialized as JSON and signed by the
// executing node's Ed25519 receipt key as a DSSE [Envelope] of type
// [PayloadType] ([SignReceipt]). [VerifyEnvelope] checks one against a
// [KeySet].
//
// # The log
//
// A [Log] is a golang.org/x/mod/sumdb/tlog Merkle tree over the canonical
// envelope bytes, kept in any key-value [Store] under a key prefix.
// [Log.Append] is deterministic and reads and writes only the Store it is
// given, so a Raft FSM applies a batch of envelopes to its Pebble batch and
// every replica ends with byte-identical state. Reads ([Log.Record],
// [Log.TreeHash], [Log.ProveRecord], [Log.ProveTree], [Log.Export]) take a
// [Reader].
//
// # Checkpoints
//
// A [Checkpoint] (origin, size, root) is signed as a
// golang.org/x/mod/sumdb/note signed note by each node's note key
// ([SignCheckpoint], [NewNoteSigner]). A node co-signs a checkpoint after
// checking it against its own copy of the log ([Log.CoSign]); copies signed
// by different nodes merge into one note ([MergeCheckpoints]). An auditor
// demands signatures from several distinct nodes ([VerifyCheckpoint]), so a
// split view needs several nodes to lie.
//
// # Offline verification
//
// [VerifyReceipt] (signature and inclusion), [VerifyExport] (a full export
// against a checkpoint), [VerifyConsistency] (an older and a newer
// checkpoint) and [VerifyAgreement] (two nodes' checkpoints) back the
// `leash ledger verify` commands. Every failure is a [*VerifyError] naming
// what failed and where, wrapping one of the package's sentinel errors.
//
// # Concurrency
//
// Log, KeySet (once built) and every function here are safe for concurrent
// use. Append's atomicity and isolation are the Store's: run it inside one
// write batch and commit or discard the batch as a whole.
package ledger
