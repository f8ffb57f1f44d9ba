package ledger

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"
)

// ExportRecord is one line of an export (JSON lines, one record a line):
//
//	{"index":42,"hash":"<base64 record hash>","envelope":{…canonical DSSE envelope…}}
//
// hash is the log's stored record hash (tlog.RecordHash of the canonical
// envelope bytes). It lets a verifier point at the altered record when an
// export does not match its checkpoint: once the stated hashes are shown to
// build the checkpoint's root they are authentic, and any envelope that
// does not hash to its stated hash is the one that changed.
type ExportRecord struct {
	Index    int64           `json:"index"`
	Hash     tlog.Hash       `json:"hash"`
	Envelope json.RawMessage `json:"envelope"`

	env *Envelope // decoded already, when the line was canonical
}

// maxExportLine bounds one export line.
const maxExportLine = MaxEnvelopeBytes + 256

// Export writes the records [from, to) of the log to w as JSON lines (see
// ExportRecord). A full export, from 0 to a checkpoint's size, is what
// VerifyExport checks.
func (l *Log) Export(r Reader, w io.Writer, from, to int64) error {
	n, err := l.Size(r)
	if err != nil {
		return err
	}
	if from < 0 || from > to || to > n {
		return fmt.Errorf("ledger: export [%d, %d) of a log of size %d: %w", from, to, n, ErrNotFound)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	for i := from; i < to; i++ {
		rec, err := l.readRecord(r, i)
		if err != nil {
			return err
		}
		h, err := l.readHash(r, tlog.StoredHashIndex(0, i))
		if err != nil {
			return err
		}
		line = appendExportLine(line[:0], i, h, rec)
		if _, err := bw.Write(line); err != nil {
			return fmt.Errorf("ledger: write export: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("ledger: write export: %w", err)
	}
	return nil
}

// appendExportLine appends one export line, newline included.
func appendExportLine(b []byte, index int64, h tlog.Hash, envelope []byte) []byte {
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, index, 10)
	b = append(b, `,"hash":"`...)
	b = base64.StdEncoding.AppendEncode(b, h[:])
	b = append(b, `","envelope":`...)
	b = append(b, envelope...)
	return append(b, "}\n"...)
}

// ExportReader reads an export line by line. Blank lines are skipped; a
// line over MaxEnvelopeBytes plus a little is an error.
type ExportReader struct {
	sc   *bufio.Scanner
	line int64
}

// NewExportReader returns a reader of the export in r.
func NewExportReader(r io.Reader) *ExportReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
	return &ExportReader{sc: sc}
}

// Line returns the 1-based number of the line Next last returned.
func (x *ExportReader) Line() int64 { return x.line }

// nextLine returns the next non-blank line; the slice is only valid until
// the next call. It returns io.EOF at the end.
func (x *ExportReader) nextLine() ([]byte, error) {
	for x.sc.Scan() {
		x.line++
		b := bytes.TrimSuffix(x.sc.Bytes(), []byte("\r"))
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		return b, nil
	}
	if err := x.sc.Err(); err != nil {
		x.line++
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &VerifyError{Subject: "export", Index: -1, Line: x.line, Err: ErrTooLarge, Detail: fmt.Sprintf("longer than %d bytes", maxExportLine)}
		}
		return nil, fmt.Errorf("read export: %w", err)
	}
	return nil, io.EOF
}

// Next returns the next record, or io.EOF after the last one. A line that
// does not parse is a *VerifyError naming the line.
func (x *ExportReader) Next() (ExportRecord, error) {
	b, err := x.nextLine()
	if err != nil {
		return ExportRecord{}, err
	}
	rec, err := parseExportLine(b)
	if err != nil {
		return ExportRecord{}, lineErr(x.line, err)
	}
	return rec, nil
}

func lineErr(line int64, err error) *VerifyError {
	e := relabel(err, "export", -1)
	e.Line = line
	return e
}

// parseExportLine parses one line strictly: the three fields present, no
// others, nothing after the object.
func parseExportLine(b []byte) (ExportRecord, error) {
	if rec, ok := parseExportLineFast(b); ok {
		return rec, nil
	}
	return parseExportLineSlow(b)
}

// parseExportLineSlow is parseExportLine's general path, through
// encoding/json.
func parseExportLineSlow(b []byte) (ExportRecord, error) {
	var w struct {
		Index    *int64          `json:"index"`
		Hash     *tlog.Hash      `json:"hash"`
		Envelope json.RawMessage `json:"envelope"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return ExportRecord{}, verr("export", ErrMalformed, "not an export record: "+err.Error())
	}
	if dec.More() {
		return ExportRecord{}, verr("export", ErrMalformed, "trailing data after the record")
	}
	switch {
	case w.Index == nil:
		return ExportRecord{}, &VerifyError{Subject: "export", Index: -1, Field: "index", Err: ErrMalformed, Detail: "is missing"}
	case *w.Index < 0:
		return ExportRecord{}, &VerifyError{Subject: "export", Index: -1, Field: "index", Err: ErrMalformed, Detail: "is negative"}
	case w.Hash == nil:
		return ExportRecord{}, &VerifyError{Subject: "export", Index: *w.Index, Field: "hash", Err: ErrMalformed, Detail: "is missing"}
	case len(w.Envelope) == 0 || string(w.Envelope) == "null":
		return ExportRecord{}, &VerifyError{Subject: "export", Index: *w.Index, Field: "envelope", Err: ErrMalformed, Detail: "is missing"}
	}
	return ExportRecord{Index: *w.Index, Hash: *w.Hash, Envelope: w.Envelope}, nil
}

// parseExportLineFast parses a line exactly as appendExportLine writes it
// and reports ok only then (it re-encodes and compares); anything else
// goes through encoding/json.
func parseExportLineFast(b []byte) (ExportRecord, bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"index":`))
	if !ok {
		return ExportRecord{}, false
	}
	i := bytes.IndexByte(rest, ',')
	if i < 0 {
		return ExportRecord{}, false
	}
	index, err := strconv.ParseInt(string(rest[:i]), 10, 64)
	if err != nil || index < 0 {
		return ExportRecord{}, false
	}
	rest = rest[i:]
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"hash":"`)); !ok || len(rest) < 44 {
		return ExportRecord{}, false
	}
	var hb [tlog.HashSize + 1]byte // Decode wants room for 33 bytes
	if n, err := base64.StdEncoding.Strict().Decode(hb[:], rest[:44]); err != nil || n != tlog.HashSize {
		return ExportRecord{}, false
	}
	var h tlog.Hash
	copy(h[:], hb[:])
	if rest, ok = bytes.CutPrefix(rest[44:], []byte(`","envelope":`)); !ok {
		return ExportRecord{}, false
	}
	env, ok := bytes.CutSuffix(rest, []byte(`}`))
	if !ok || len(env) == 0 || len(env) > MaxEnvelopeBytes {
		return ExportRecord{}, false
	}
	// The envelope must be canonical too: that makes it one JSON value.
	e, ok := parseCanonical(env)
	if !ok {
		return ExportRecord{}, false
	}
	line := appendExportLine(make([]byte, 0, len(b)+1), index, h, env)
	if !bytes.Equal(line[:len(line)-1], b) {
		return ExportRecord{}, false
	}
	return ExportRecord{Index: index, Hash: h, Envelope: bytes.Clone(env), env: e}, true
}
