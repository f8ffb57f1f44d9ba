package ledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a tree head: the log's origin, a size and the tree hash at
// that size. Its text (the body of a signed note, the transparency-dev /
// C2SP tlog-checkpoint convention) is three lines:
//
//	<origin>
//	<size, decimal>
//	<root hash, standard base64>
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// Text returns the checkpoint's note text.
func (c Checkpoint) Text() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// maxOrigin bounds the origin line.
const maxOrigin = 256

func checkOrigin(s string) error {
	if s == "" {
		return errors.New("origin is empty")
	}
	if len(s) > maxOrigin {
		return fmt.Errorf("origin is %d bytes, more than %d", len(s), maxOrigin)
	}
	if !utf8.ValidString(s) {
		return errors.New("origin is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || unicode.IsSpace(r) && r != ' ' {
			return fmt.Errorf("origin contains the control or space character %U", r)
		}
	}
	return nil
}

// ParseCheckpoint parses checkpoint text (a note's text, without the
// signatures). It is strict: exactly three lines, the size in canonical
// decimal, the hash in canonical base64 of 32 bytes; extension lines are
// refused since leash never writes any.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	bad := func(field, detail string) (Checkpoint, error) {
		return Checkpoint{}, &VerifyError{Subject: "checkpoint", Index: -1, Field: field, Err: ErrMalformed, Detail: detail}
	}
	if len(text) > 4096 {
		return bad("", "text is over 4096 bytes")
	}
	s := string(text)
	if !strings.HasSuffix(s, "\n") {
		return bad("", "text does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) != 3 {
		return bad("", fmt.Sprintf("text has %d lines, want 3 (origin, size, root hash)", len(lines)))
	}
	if err := checkOrigin(lines[0]); err != nil {
		return bad("origin", err.Error())
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return bad("size", fmt.Sprintf("%q is not a canonical non-negative decimal", lines[1]))
	}
	h, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize || base64.StdEncoding.EncodeToString(h) != lines[2] {
		return bad("root", fmt.Sprintf("%q is not the base64 of a 32-byte hash", lines[2]))
	}
	c := Checkpoint{Origin: lines[0], Size: n}
	copy(c.Root[:], h)
	return c, nil
}

// NewNoteSigner returns a note signer named name (the node id) for an
// existing Ed25519 private key. Its verifier key is NoteVerifierKey(name,
// key.Public()).
func NewNoteSigner(name string, key ed25519.PrivateKey) (note.Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("note signer %s: private key is %d bytes, want %d", name, len(key), ed25519.PrivateKeySize)
	}
	vkey, err := NoteVerifierKey(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	// vkey is name+hash+base64(0x01 || public key); the signer key is the
	// same with the seed in place of the public key.
	_, rest, _ := strings.Cut(vkey, "+")
	hash, _, _ := strings.Cut(rest, "+")
	skey := "PRIVATE+KEY+" + name + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("note signer %s: %w", name, err)
	}
	return s, nil
}

// NoteVerifierKey returns the note verifier key (name+hash+key) of an
// Ed25519 public key: what a node lists in KeySet checkpoint_keys.
func NoteVerifierKey(name string, pub ed25519.PublicKey) (string, error) {
	if name == "" || strings.ContainsAny(name, "+ \t\n") {
		return "", fmt.Errorf("note key name %q must be non-empty without spaces or '+'", name)
	}
	return note.NewEd25519VerifierKey(name, pub)
}

// SignCheckpoint returns c as a signed note, signed by signers.
func SignCheckpoint(c Checkpoint, signers ...note.Signer) ([]byte, error) {
	if err := checkOrigin(c.Origin); err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	if c.Size < 0 {
		return nil, fmt.Errorf("sign checkpoint: negative size %d", c.Size)
	}
	if len(signers) == 0 {
		return nil, errors.New("sign checkpoint: no signer")
	}
	return formatNote(string(c.Text()), nil, signers...)
}

// formatNote signs text with signers and writes it with the signatures sigs
// plus the new ones, one per key, sorted by name and key hash, so that the
// same set of signatures always gives the same bytes.
func formatNote(text string, sigs []note.Signature, signers ...note.Signer) ([]byte, error) {
	all := append([]note.Signature(nil), sigs...)
	for _, s := range signers {
		msg, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			return nil, fmt.Errorf("sign note as %s: %w", s.Name(), err)
		}
		n, err := openUnverified(msg)
		if err != nil {
			return nil, err
		}
		all = append(all, n.UnverifiedSigs...)
	}
	type nh struct {
		name string
		hash uint32
	}
	seen := map[nh]int{}
	var out []note.Signature
	for _, s := range all {
		k := nh{s.Name, s.Hash}
		if i, ok := seen[k]; ok {
			out[i] = s // a later signature by the same key replaces the earlier one
			continue
		}
		seen[k] = len(out)
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("note would have no signature")
	}
	if len(out) > maxNoteSigs {
		return nil, fmt.Errorf("note would have %d signatures, more than %d", len(out), maxNoteSigs)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Hash < out[j].Hash
	})
	return note.Sign(&note.Note{Text: text, Sigs: out})
}

// maxNoteSigs is the note package's own limit on signatures per note.
const maxNoteSigs = 100

// noVerifiers knows no key, so note.Open parses without verifying.
type noVerifiers struct{}

func (noVerifiers) Verifier(name string, hash uint32) (note.Verifier, error) {
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

// openUnverified parses a signed note without checking any signature; all
// signatures land in UnverifiedSigs.
func openUnverified(msg []byte) (*note.Note, error) {
	_, err := note.Open(msg, noVerifiers{})
	var u *note.UnverifiedNoteError
	if errors.As(err, &u) {
		return u.Note, nil
	}
	if err == nil {
		return nil, verr("checkpoint", ErrMalformed, "note has no signature")
	}
	return nil, verr("checkpoint", ErrMalformed, "not a signed note: "+err.Error())
}

// openTrusted opens a note checking every signature by a key in idx. A
// signature by a known key that does not verify is an error; signatures by
// unknown keys are returned apart. label names the node that served it.
func openTrusted(msg []byte, idx *keyIndex, subject, label string) (*note.Note, error) {
	n, err := note.Open(msg, idx.verifiers)
	if err == nil {
		return n, nil
	}
	e := verr(subject, ErrMalformed, "")
	e.Node = label
	var u *note.UnverifiedNoteError
	var inv *note.InvalidSignatureError
	switch {
	case errors.As(err, &u):
		return u.Note, nil
	case errors.As(err, &inv):
		e.Err = ErrBadSignature
		e.Detail = fmt.Sprintf("signature by node %s (key hash %08x) does not verify", inv.Name, inv.Hash)
	default:
		e.Detail = "not a signed note: " + err.Error()
	}
	return nil, e
}

// SignedCheckpoint is a checkpoint whose signatures have been checked.
type SignedCheckpoint struct {
	Checkpoint
	// Signers are the distinct trusted nodes whose signatures verified,
	// sorted.
	Signers []string
	// Note is the signed note as given.
	Note []byte
}

// VerifyCheckpoint opens a signed checkpoint and checks that it names the
// key set's origin and carries valid signatures from at least
// minSignatures distinct trusted nodes (minSignatures < 1 counts as 1).
// Every signature by a trusted key must verify; signatures by unknown keys
// are ignored.
func VerifyCheckpoint(msg []byte, keys *KeySet, minSignatures int) (*SignedCheckpoint, error) {
	idx, err := keys.compile()
	if err != nil {
		return nil, err
	}
	return verifyCheckpoint(msg, idx, minSignatures, "checkpoint", "")
}

func verifyCheckpoint(msg []byte, idx *keyIndex, minSignatures int, subject, label string) (*SignedCheckpoint, error) {
	if minSignatures < 1 {
		minSignatures = 1
	}
	fail := func(cause error, field, detail string) (*SignedCheckpoint, error) {
		return nil, &VerifyError{Subject: subject, Index: -1, Node: label, Field: field, Err: cause, Detail: detail}
	}
	if len(msg) > 64<<10 {
		return fail(ErrTooLarge, "", "signed note is over 64 KiB")
	}
	n, err := openTrusted(msg, idx, subject, label)
	if err != nil {
		return nil, err
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		e := relabel(err, subject, -1)
		e.Node = label
		return nil, e
	}
	if idx.origin != "" && c.Origin != idx.origin {
		return fail(ErrOriginMismatch, "origin", fmt.Sprintf("%q, the trusted key set is for %q", c.Origin, idx.origin))
	}
	set := map[string]bool{}
	for _, s := range n.Sigs {
		set[s.Name] = true
	}
	signers := make([]string, 0, len(set))
	for name := range set {
		signers = append(signers, name)
	}
	sort.Strings(signers)
	if len(signers) < minSignatures {
		var unknown []string
		for _, s := range n.UnverifiedSigs {
			unknown = append(unknown, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
		}
		d := fmt.Sprintf("signed by %d trusted node(s) %v, need %d", len(signers), signers, minSignatures)
		if len(unknown) > 0 {
			d += fmt.Sprintf("; signatures by untrusted keys ignored: %s", strings.Join(unknown, ", "))
		}
		return fail(ErrTooFewSignatures, "", d)
	}
	return &SignedCheckpoint{Checkpoint: c, Signers: signers, Note: bytes.Clone(msg)}, nil
}

// CoSign is what a node does with a checkpoint another node proposes: it
// checks the signatures already on it (with keys; nil skips that), checks
// the checkpoint against its own copy of the log in r (same origin, size
// not beyond the local log, same tree hash at that size) and adds its own
// signature. Signatures by keys not in keys are dropped; the result lists
// signatures sorted by node name. ErrBehind means retry once the local log
// has caught up; ErrRootMismatch means the logs differ and nothing must be
// signed.
func (l *Log) CoSign(r Reader, msg []byte, keys *KeySet, signer note.Signer) ([]byte, error) {
	var n *note.Note
	var err error
	if keys == nil {
		n, err = openUnverified(msg)
	} else {
		var idx *keyIndex
		if idx, err = keys.compile(); err == nil {
			n, err = openTrusted(msg, idx, "co-sign", "")
		}
	}
	if err != nil {
		return nil, relabel(err, "co-sign", -1)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return nil, relabel(err, "co-sign", -1)
	}
	if err := l.CheckCheckpoint(r, c); err != nil {
		var ve *VerifyError
		if !errors.As(err, &ve) {
			return nil, fmt.Errorf("co-sign: %w", err) // the store failed
		}
		return nil, relabel(err, "co-sign", -1)
	}
	sigs := n.Sigs
	if keys == nil {
		sigs = append(sigs, n.UnverifiedSigs...)
	}
	return formatNote(n.Text, sigs, signer)
}

// CheckCheckpoint checks c against the log in r: same origin, size not
// beyond the log (else ErrBehind), same tree hash at that size (else
// ErrRootMismatch). An FSM that collects co-signatures through Raft calls
// it before merging one in.
func (l *Log) CheckCheckpoint(r Reader, c Checkpoint) error {
	if c.Origin != l.origin {
		return verr("checkpoint", ErrOriginMismatch, fmt.Sprintf("checkpoint names origin %q, this log is %q", c.Origin, l.origin))
	}
	size, err := l.Size(r)
	if err != nil {
		return err
	}
	if c.Size > size {
		return verr("checkpoint", ErrBehind, fmt.Sprintf("checkpoint size %d, local log size %d", c.Size, size))
	}
	root, err := l.TreeHash(r, c.Size)
	if err != nil {
		return err
	}
	if root != c.Root {
		return verr("checkpoint", ErrRootMismatch, fmt.Sprintf("root differs at size %d: checkpoint %s, local log %s", c.Size, c.Root, root))
	}
	return nil
}

// MergeCheckpoints combines copies of one checkpoint signed by different
// nodes into one note carrying every signature, sorted by node name. All
// notes must have the same text. With keys, each signature by a trusted key
// is checked (a bad one is an error naming the node) and signatures by
// unknown keys are dropped; with nil keys nothing is checked and all are
// kept.
func MergeCheckpoints(keys *KeySet, notes ...[]byte) ([]byte, error) {
	if len(notes) == 0 {
		return nil, verr("merge", ErrMalformed, "no checkpoint to merge")
	}
	var idx *keyIndex
	if keys != nil {
		var err error
		if idx, err = keys.compile(); err != nil {
			return nil, err
		}
	}
	var text string
	var sigs []note.Signature
	for i, msg := range notes {
		var n *note.Note
		var err error
		if idx != nil {
			n, err = openTrusted(msg, idx, "merge", "")
		} else {
			n, err = openUnverified(msg)
		}
		if err != nil {
			e := relabel(err, "merge", -1)
			e.Detail = fmt.Sprintf("note %d: %s", i, e.Detail)
			return nil, e
		}
		if i == 0 {
			text = n.Text
		} else if n.Text != text {
			return nil, verr("merge", ErrRootMismatch, fmt.Sprintf("note %d is for another tree head (%q, note 0 is %q)", i,
				strings.ReplaceAll(n.Text, "\n", " "), strings.ReplaceAll(text, "\n", " ")))
		}
		sigs = append(sigs, n.Sigs...)
		if idx == nil {
			sigs = append(sigs, n.UnverifiedSigs...)
		}
	}
	if _, err := ParseCheckpoint([]byte(text)); err != nil {
		return nil, relabel(err, "merge", -1)
	}
	out, err := formatNote(text, sigs)
	if err != nil {
		return nil, verr("merge", ErrTooLarge, err.Error())
	}
	return out, nil
}
