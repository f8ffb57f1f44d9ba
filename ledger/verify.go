package ledger

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// VerifyOptions tune the offline checks.
type VerifyOptions struct {
	// MinSignatures is how many distinct trusted nodes must have signed
	// every checkpoint involved; below 1 means 1.
	MinSignatures int
	// Workers is how many goroutines check export signatures; below 1
	// means GOMAXPROCS; 1 checks on the calling goroutine.
	Workers int
	// MaxErrors caps the record-level failures an export check lists;
	// below 1 means 20.
	MaxErrors int
}

func (o VerifyOptions) workers() int {
	if o.Workers < 1 {
		return runtime.GOMAXPROCS(0)
	}
	return o.Workers
}

func (o VerifyOptions) maxErrors() int {
	if o.MaxErrors < 1 {
		return 20
	}
	return o.MaxErrors
}

// maxProofHashes bounds a proof: 2·63 hashes covers any int64 tree size.
const maxProofHashes = 128

// ReceiptProof is a receipt with its inclusion proof: what
// GET /v1/ledger/receipts/{index} serves and `leash ledger verify receipt`
// reads.
//
//	{"index":17,"envelope":{…},"tree_size":100,"proof":["<base64>",…],"checkpoint":"<signed note>"}
type ReceiptProof struct {
	// Index is the record's index in the log.
	Index int64 `json:"index"`
	// Envelope is the canonical DSSE envelope.
	Envelope json.RawMessage `json:"envelope"`
	// TreeSize is the size of the tree the proof leads to.
	TreeSize int64 `json:"tree_size"`
	// Proof is the RFC 6962 audit path (tlog.RecordProof).
	Proof tlog.RecordProof `json:"proof"`
	// Checkpoint is the signed note of size TreeSize, or "" when the
	// auditor supplies the checkpoint.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// ParseReceiptProof parses the JSON form of a ReceiptProof.
func ParseReceiptProof(data []byte) (*ReceiptProof, error) {
	var p ReceiptProof
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, verr("receipt", ErrMalformed, "not a receipt with proof: "+err.Error())
	}
	if len(p.Proof) > maxProofHashes {
		return nil, &VerifyError{Subject: "receipt", Index: p.Index, Field: "proof", Err: ErrTooLarge, Detail: fmt.Sprintf("%d hashes", len(p.Proof))}
	}
	return &p, nil
}

// VerifyReceipt checks, offline, a receipt and its inclusion: the
// checkpoint (checkpoint, or the one inside p when checkpoint is nil) is
// signed by at least opts.MinSignatures trusted nodes; the envelope is
// signed by the receipt key of the node it names; and the proof shows the
// envelope's record hash at p.Index in the checkpoint's tree.
func VerifyReceipt(p *ReceiptProof, checkpoint []byte, keys *KeySet, opts VerifyOptions) (*Receipt, *SignedCheckpoint, error) {
	idx, err := keys.compile()
	if err != nil {
		return nil, nil, err
	}
	if checkpoint == nil {
		if p.Checkpoint == "" {
			return nil, nil, verr("checkpoint", ErrMalformed, "none given and none in the receipt proof")
		}
		checkpoint = []byte(p.Checkpoint)
	}
	cp, err := verifyCheckpoint(checkpoint, idx, opts.MinSignatures, "checkpoint", "")
	if err != nil {
		return nil, nil, err
	}
	fail := func(cause error, detail string) (*Receipt, *SignedCheckpoint, error) {
		return nil, cp, &VerifyError{Subject: "receipt", Index: p.Index, Err: cause, Detail: detail}
	}
	if p.Index < 0 {
		return fail(ErrMalformed, "negative index")
	}
	if p.TreeSize != cp.Size {
		return fail(ErrSizeMismatch, fmt.Sprintf("proof is for tree size %d, checkpoint has size %d", p.TreeSize, cp.Size))
	}
	if p.Index >= cp.Size {
		return fail(ErrNotIncluded, fmt.Sprintf("index is beyond the checkpoint's size %d", cp.Size))
	}
	env, err := DecodeEnvelope(p.Envelope)
	if err != nil {
		return nil, cp, relabel(err, "receipt", p.Index)
	}
	r, err := verifyEnvelope(env, idx)
	if err != nil {
		return nil, cp, relabel(err, "receipt", p.Index)
	}
	canon, _ := env.Canonical()
	if err := tlog.CheckRecord(p.Proof, cp.Size, cp.Root, p.Index, tlog.RecordHash(canon)); err != nil {
		return fail(ErrNotIncluded, fmt.Sprintf("not included in the checkpoint of size %d: inclusion proof does not lead to root %s", cp.Size, cp.Root))
	}
	return r, cp, nil
}

// ConsistencyProof proves that the tree of size NewSize extends the tree of
// size OldSize:
//
//	{"old_size":100,"new_size":120,"proof":["<base64>",…]}
type ConsistencyProof struct {
	OldSize int64          `json:"old_size"`
	NewSize int64          `json:"new_size"`
	Proof   tlog.TreeProof `json:"proof"`
}

// ParseConsistencyProof parses the JSON form of a ConsistencyProof.
func ParseConsistencyProof(data []byte) (*ConsistencyProof, error) {
	var p ConsistencyProof
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, verr("consistency", ErrMalformed, "not a consistency proof: "+err.Error())
	}
	if len(p.Proof) > maxProofHashes {
		return nil, &VerifyError{Subject: "consistency", Index: -1, Field: "proof", Err: ErrTooLarge, Detail: fmt.Sprintf("%d hashes", len(p.Proof))}
	}
	return &p, nil
}

// checkConsistency checks that newer extends older, given p. Failures are
// charged to subject/label; olderName and newerName name the two trees in
// messages.
func checkConsistency(older, newer Checkpoint, p *ConsistencyProof, subject, label, olderName, newerName string) error {
	fail := func(cause error, detail string) error {
		return &VerifyError{Subject: subject, Index: -1, Node: label, Err: cause, Detail: detail}
	}
	if older.Origin != newer.Origin {
		return fail(ErrOriginMismatch, fmt.Sprintf("origins differ: %s names %q, %s %q", olderName, older.Origin, newerName, newer.Origin))
	}
	if older.Size > newer.Size {
		return fail(ErrSizeMismatch, fmt.Sprintf("%s has size %d, more than %s's %d (swapped?)", olderName, older.Size, newerName, newer.Size))
	}
	if older.Size == newer.Size {
		if older.Root != newer.Root {
			return fail(ErrRootMismatch, fmt.Sprintf("root differs at size %d: %s has %s, %s has %s", older.Size, olderName, older.Root, newerName, newer.Root))
		}
		return nil
	}
	if older.Size == 0 {
		return nil // every tree extends the empty tree
	}
	if p == nil {
		return fail(ErrInconsistent, fmt.Sprintf("sizes %d and %d differ and no consistency proof was given", older.Size, newer.Size))
	}
	if p.OldSize != older.Size || p.NewSize != newer.Size {
		return fail(ErrSizeMismatch, fmt.Sprintf("consistency proof is from size %d to %d, the checkpoints have sizes %d and %d", p.OldSize, p.NewSize, older.Size, newer.Size))
	}
	if len(p.Proof) > maxProofHashes {
		return fail(ErrTooLarge, fmt.Sprintf("consistency proof has %d hashes", len(p.Proof)))
	}
	if err := tlog.CheckTree(p.Proof, newer.Size, newer.Root, older.Size, older.Root); err != nil {
		return fail(ErrInconsistent, fmt.Sprintf("%s at size %d (root %s) does not extend %s at size %d (root %s): the logs have forked or the proof is wrong",
			newerName, newer.Size, newer.Root, olderName, older.Size, older.Root))
	}
	return nil
}

// VerifyConsistency checks, offline, that the newer checkpoint extends the
// older one: both are signed by at least opts.MinSignatures trusted nodes,
// name the same log, and p proves the older tree a prefix of the newer
// (equal sizes need equal roots and no proof).
func VerifyConsistency(older, newer []byte, p *ConsistencyProof, keys *KeySet, opts VerifyOptions) error {
	idx, err := keys.compile()
	if err != nil {
		return err
	}
	o, err := verifyCheckpoint(older, idx, opts.MinSignatures, "older checkpoint", "")
	if err != nil {
		return err
	}
	n, err := verifyCheckpoint(newer, idx, opts.MinSignatures, "newer checkpoint", "")
	if err != nil {
		return err
	}
	return checkConsistency(o.Checkpoint, n.Checkpoint, p, "consistency", "", "the older checkpoint", "the newer checkpoint")
}

// NodeCheckpoint is a checkpoint as served by one node.
type NodeCheckpoint struct {
	// Node names the node that served it (for messages).
	Node string
	// Note is the signed checkpoint.
	Note []byte
}

// VerifyAgreement checks, offline, that two nodes serve the same log: each
// checkpoint is signed by at least opts.MinSignatures trusted nodes; at the
// same size the roots are equal; at different sizes p proves the larger
// tree extends the smaller. a is the reference: failures name node b, as in
// "checkpoint from node b: root differs at size 100: …".
func VerifyAgreement(a, b NodeCheckpoint, p *ConsistencyProof, keys *KeySet, opts VerifyOptions) error {
	idx, err := keys.compile()
	if err != nil {
		return err
	}
	ca, err := verifyCheckpoint(a.Note, idx, opts.MinSignatures, "checkpoint", a.Node)
	if err != nil {
		return err
	}
	cb, err := verifyCheckpoint(b.Note, idx, opts.MinSignatures, "checkpoint", b.Node)
	if err != nil {
		return err
	}
	an, bn := "node "+a.Node+"'s log", "node "+b.Node+"'s log"
	if ca.Size <= cb.Size {
		return checkConsistency(ca.Checkpoint, cb.Checkpoint, p, "checkpoint", b.Node, an, bn)
	}
	return checkConsistency(cb.Checkpoint, ca.Checkpoint, p, "checkpoint", b.Node, bn, an)
}

// ExportResult describes a verified export.
type ExportResult struct {
	// Checkpoint is the checkpoint the export was checked against.
	Checkpoint *SignedCheckpoint
	// Records is the number of records read.
	Records int64
	// Root is the tree hash of the export's first Checkpoint.Size records.
	Root tlog.Hash
}

// ExportError lists the failures of an export check, in the order found.
// It matches (errors.Is / errors.As) each of them.
type ExportError struct {
	Failures []*VerifyError
	// Omitted counts record-level failures left off the list.
	Omitted int
}

func (e *ExportError) Error() string {
	var b strings.Builder
	for i, f := range e.Failures {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(f.Error())
	}
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "\nexport: %d more record failures not listed", e.Omitted)
	}
	return b.String()
}

// Unwrap returns the failures.
func (e *ExportError) Unwrap() []error {
	out := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		out[i] = f
	}
	return out
}

// VerifyExport checks, offline, a full export (records 0 to the
// checkpoint's size, as written by Log.Export) against a checkpoint: the
// checkpoint's signatures (opts.MinSignatures distinct trusted nodes); for
// every record that its line parses, its index is the next one, its
// envelope is signed by the receipt key of the node it names and its
// receipt validates; and the tree recomputed from the envelopes has the
// checkpoint's size and root. When the root differs but the export's
// stated record hashes build the checkpoint's root, the records whose
// envelopes do not hash to their stated hash are named.
//
// It streams: memory does not grow with the export. Signatures are checked
// on opts.Workers goroutines. The error is a *VerifyError when the
// checkpoint fails, otherwise an *ExportError.
func VerifyExport(r io.Reader, checkpoint []byte, keys *KeySet, opts VerifyOptions) (*ExportResult, error) {
	idx, err := keys.compile()
	if err != nil {
		return nil, err
	}
	cp, err := verifyCheckpoint(checkpoint, idx, opts.MinSignatures, "checkpoint", "")
	if err != nil {
		return nil, err
	}
	v := &exportVerifier{cp: cp, idx: idx, max: opts.maxErrors()}
	v.run(NewExportReader(r), opts.workers())
	return v.finish()
}

// chunkLines is how many export lines one worker job holds.
const chunkLines = 256

type lineResult struct {
	line     int64
	index    int64 // -1 when the line did not parse
	claimed  tlog.Hash
	computed tlog.Hash
	err      *VerifyError
}

type exportChunk struct {
	lines [][]byte
	nums  []int64
	res   []lineResult
	done  chan struct{}
}

type exportVerifier struct {
	cp  *SignedCheckpoint
	idx *keyIndex
	max int

	failures []*VerifyError
	omitted  int
	readErr  error

	n         int64 // records seen
	next      int64 // index expected next
	computed  treeBuilder
	claimed   treeBuilder
	rootAt    tlog.Hash // computed root at cp.Size
	claimedAt tlog.Hash // claimed root at cp.Size
	mismatch  []int64   // positions < cp.Size whose stated hash differs
	nMismatch int
}

func (v *exportVerifier) fail(e *VerifyError) {
	if len(v.failures) < v.max {
		v.failures = append(v.failures, e)
	} else {
		v.omitted++
	}
}

// run reads chunks of lines on one goroutine, checks them on workers and
// folds the results here, in order.
func (v *exportVerifier) run(x *ExportReader, workers int) {
	if v.cp.Size == 0 {
		v.rootAt, v.claimedAt = v.computed.root(), v.claimed.root()
	}
	if workers == 1 {
		// No goroutines: the same work, in line.
		for {
			b, err := x.nextLine()
			if err != nil {
				if err != io.EOF {
					v.readErr = err
				}
				return
			}
			res := checkExportLine(b, x.line, v.idx)
			v.fold(&res)
		}
	}
	work := make(chan *exportChunk, workers)
	order := make(chan *exportChunk, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				for i, b := range c.lines {
					c.res[i] = checkExportLine(b, c.nums[i], v.idx)
				}
				close(c.done)
			}
		}()
	}
	go func() {
		defer close(order)
		defer close(work)
		for {
			c := &exportChunk{done: make(chan struct{})}
			var buf []byte
			var ends []int
			for len(c.nums) < chunkLines {
				b, err := x.nextLine()
				if err != nil {
					if err != io.EOF {
						v.readErr = err // read by the folder only after order closes
					}
					break
				}
				buf = append(buf, b...)
				ends = append(ends, len(buf))
				c.nums = append(c.nums, x.line)
			}
			if len(c.nums) == 0 {
				return
			}
			start := 0
			for _, e := range ends {
				c.lines = append(c.lines, buf[start:e:e])
				start = e
			}
			c.res = make([]lineResult, len(c.nums))
			work <- c
			order <- c
			if len(c.nums) < chunkLines {
				return
			}
		}
	}()
	for c := range order {
		<-c.done
		for i := range c.res {
			v.fold(&c.res[i])
		}
	}
	wg.Wait()
}

// checkExportLine does the per-record work: parse, hash, verify.
func checkExportLine(b []byte, line int64, idx *keyIndex) lineResult {
	res := lineResult{line: line, index: -1}
	rec, err := parseExportLine(b)
	if err != nil {
		res.err = lineErr(line, err)
		res.computed = tlog.RecordHash(b)
		return res
	}
	res.index, res.claimed = rec.Index, rec.Hash
	env := rec.env
	if env == nil {
		env, err = DecodeEnvelope(rec.Envelope)
	}
	if err != nil {
		res.err = relabel(err, "export", rec.Index)
		res.err.Line = line
		res.computed = tlog.RecordHash(rec.Envelope)
		return res
	}
	canon := []byte(rec.Envelope) // canonical already when the fast path took it
	if rec.env == nil {
		canon, _ = env.Canonical()
	}
	res.computed = tlog.RecordHash(canon)
	verify := func(env *Envelope, idx *keyIndex) (any, error) { return verifyEnvelope(env, idx) }
	if env.PayloadType == GovernancePayloadType {
		verify = func(env *Envelope, idx *keyIndex) (any, error) { return verifyGovernance(env, idx) }
	}
	if _, err := verify(env, idx); err != nil {
		res.err = relabel(err, "export", rec.Index)
		res.err.Line = line
	}
	return res
}

// fold takes one record's result in export order.
func (v *exportVerifier) fold(r *lineResult) {
	pos := v.n
	switch {
	case r.index < 0:
		// Unparsable: counted in its position, its index unknown.
		v.next++
	case r.index == v.next:
		v.next++
	case r.index > v.next:
		d := fmt.Sprintf("missing (line %d has index %d)", r.line, r.index)
		if r.index > v.next+1 {
			d = fmt.Sprintf("missing, and the %d records after it (line %d has index %d)", r.index-v.next-1, r.line, r.index)
		}
		v.fail(&VerifyError{Subject: "export", Index: v.next, Err: ErrMissingRecord, Detail: d})
		v.next = r.index + 1
	default:
		v.fail(&VerifyError{Subject: "export", Index: r.index, Line: r.line, Err: ErrOutOfOrder,
			Detail: fmt.Sprintf("out of order: index %d was expected here", v.next)})
	}
	if r.err != nil {
		v.fail(r.err)
	}
	v.computed.add(r.computed)
	v.claimed.add(r.claimed)
	if pos < v.cp.Size && r.index >= 0 && r.claimed != r.computed {
		v.nMismatch++
		if len(v.mismatch) < v.max {
			v.mismatch = append(v.mismatch, pos)
		}
	}
	v.n++
	if v.n == v.cp.Size {
		v.rootAt, v.claimedAt = v.computed.root(), v.claimed.root()
	}
}

func (v *exportVerifier) finish() (*ExportResult, error) {
	res := &ExportResult{Checkpoint: v.cp, Records: v.n, Root: v.rootAt}
	if v.readErr != nil {
		v.fail(relabel(v.readErr, "export", -1))
	}
	size := v.cp.Size
	switch {
	case v.n < size:
		v.fail(&VerifyError{Subject: "export", Index: -1, Err: ErrSizeMismatch,
			Detail: fmt.Sprintf("has %d records, the checkpoint has size %d: %s missing", v.n, size, span(v.n, size))})
	case v.n > size:
		v.fail(&VerifyError{Subject: "export", Index: -1, Err: ErrSizeMismatch,
			Detail: fmt.Sprintf("has %d records, the checkpoint has size %d: %s not covered by it (export with to=%d, or use a newer checkpoint)", v.n, size, span(size, v.n), size)})
	}
	listed := false
	if v.n >= size {
		switch {
		case v.rootAt == v.cp.Root && v.nMismatch > 0:
			listed = true
			for _, i := range v.mismatch {
				v.fail(&VerifyError{Subject: "export", Index: i, Err: ErrHashMismatch,
					Detail: "stated hash differs from the envelope's hash (the envelopes match the checkpoint; the line's hash field is wrong)"})
			}
		case v.rootAt != v.cp.Root && v.claimedAt == v.cp.Root && v.nMismatch > 0:
			listed = true
			for _, i := range v.mismatch {
				v.fail(&VerifyError{Subject: "export", Index: i, Err: ErrHashMismatch,
					Detail: "hash mismatch: the envelope was altered (its hash differs from the logged hash that the checkpoint covers)"})
			}
		case v.rootAt != v.cp.Root:
			v.fail(&VerifyError{Subject: "export", Index: -1, Err: ErrRootMismatch,
				Detail: fmt.Sprintf("root mismatch at size %d: the export's records give %s, the checkpoint has %s (records were altered, removed, added or reordered; the stated hashes do not lead to the checkpoint either, so the records cannot be located)", size, v.rootAt, v.cp.Root)})
		}
	}
	if listed {
		v.omitted += v.nMismatch - len(v.mismatch)
	}
	if len(v.failures) > 0 {
		return res, &ExportError{Failures: v.failures, Omitted: v.omitted}
	}
	return res, nil
}

// span names the records [from, to) with a verb: "record 7 is",
// "records 7 to 9 are".
func span(from, to int64) string {
	if to-from == 1 {
		return fmt.Sprintf("record %d is", from)
	}
	return fmt.Sprintf("records %d to %d are", from, to-1)
}
