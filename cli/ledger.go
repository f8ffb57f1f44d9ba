package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/leash-dev/leash/ledger"
)

// runLedger: fetch ledger material from a node, and verify it offline.
func runLedger(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 && args[0] == "verify" {
		return runLedgerVerify(env, args[1:])
	}
	// export and proof have flag sets of their own, which answer -h.
	if len(args) == 0 || (args[0] != "export" && args[0] != "proof") {
		if stop, err := subUsage(env, args, "ledger keys|checkpoint|receipt INDEX|export [--from N] [--to N]|proof --old N --new N|verify receipt|export|consistency|agree …"); stop {
			return err
		}
	}
	c := newClient(env)
	get := func(path string) error {
		return c.do(ctx, http.MethodGet, path, c.token, "", nil, rawOut{env.Stdout})
	}
	switch args[0] {
	case "keys":
		return get("/v1/keys")
	case "checkpoint":
		return get("/v1/ledger/checkpoint")
	case "receipt":
		if len(args) != 2 {
			return &exitError{code: 2, msg: "usage: leash ledger receipt INDEX"}
		}
		if _, err := strconv.ParseInt(args[1], 10, 64); err != nil {
			return &exitError{code: 2, msg: "receipt: INDEX must be a number"}
		}
		return get("/v1/ledger/receipts/" + args[1])
	case "export":
		fs := flags(env, "ledger export", "ledger export [--from N] [--to N]")
		from := fs.Int64("from", 0, "first index")
		to := fs.Int64("to", -1, "end (exclusive); default: the ledger's size")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		q := url.Values{"from": {strconv.FormatInt(*from, 10)}}
		if *to >= 0 {
			q.Set("to", strconv.FormatInt(*to, 10))
		}
		return get("/v1/ledger/export?" + q.Encode())
	case "proof":
		fs := flags(env, "ledger proof", "ledger proof --old N --new N")
		oldSize := fs.Int64("old", 0, "older tree size")
		newSize := fs.Int64("new", 0, "newer tree size")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		return get(fmt.Sprintf("/v1/ledger/consistency?old=%d&new=%d", *oldSize, *newSize))
	}
	return &exitError{code: 2, msg: fmt.Sprintf("ledger: unknown subcommand %q", args[0])}
}

// rawOut copies a response body as is.
type rawOut struct{ w io.Writer }

// runLedgerVerify checks ledger material offline, trusting only the key
// set. Exit status: 0 ok, 1 verification failed, 2 usage or I/O error.
func runLedgerVerify(env *Env, args []string) error {
	if len(args) == 0 || helpArgs[args[0]] {
		fmt.Fprintln(env.Stderr, "usage: leash ledger verify receipt|export|consistency|agree --keys keys.json [flags]  (leash ledger verify <what> -h for its flags)")
		if len(args) == 0 {
			return &exitError{code: 2}
		}
		return flag.ErrHelp
	}
	what := args[0]
	fs := flags(env, "ledger verify "+what, "ledger verify "+what+" --keys keys.json …")
	keysPath := fs.String("keys", "", "the key set (saved from GET /v1/keys)")
	minSigs := fs.Int("min-sigs", 1, "distinct trusted node signatures required on each checkpoint")
	receiptPath := fs.String("receipt", "", "receipt with inclusion proof (leash ledger receipt N)")
	cpPath := fs.String("checkpoint", "", "signed checkpoint (leash ledger checkpoint)")
	exportPath := fs.String("export", "", "export (JSON lines; - for stdin)")
	oldPath := fs.String("old", "", "older checkpoint")
	newPath := fs.String("new", "", "newer checkpoint")
	proofPath := fs.String("proof", "", "consistency proof (leash ledger proof)")
	aSpec := fs.String("a", "", "NODE=checkpoint file of the reference node")
	bSpec := fs.String("b", "", "NODE=checkpoint file of the node checked against it")
	workers := fs.Int("workers", 0, "signature-checking goroutines (default: CPUs)")
	maxErrors := fs.Int("max-errors", 20, "failures listed before stopping")
	if _, err := parse(fs, args[1:]); err != nil {
		return err
	}
	usage := func(msg string) error { return &exitError{code: 2, msg: "ledger verify " + what + ": " + msg} }
	if *keysPath == "" {
		return usage("--keys is required")
	}
	read := func(path, name string) ([]byte, error) {
		if path == "" {
			return nil, usage("--" + name + " is required")
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, &exitError{code: 2, msg: err.Error()}
		}
		return b, nil
	}
	kb, err := read(*keysPath, "keys")
	if err != nil {
		return err
	}
	keys, err := ledger.ParseKeySet(kb)
	if err != nil {
		return &exitError{code: 2, msg: "keys: " + err.Error()}
	}
	opts := ledger.VerifyOptions{MinSignatures: *minSigs, Workers: *workers, MaxErrors: *maxErrors}
	fail := func(err error) error {
		var ee *ledger.ExportError
		if errors.As(err, &ee) {
			for _, f := range ee.Failures {
				fmt.Fprintln(env.Stdout, f.Error())
			}
			if ee.Omitted > 0 {
				fmt.Fprintf(env.Stdout, "… and %d more failures\n", ee.Omitted)
			}
			return &exitError{code: 1, msg: fmt.Sprintf("export: %d failure(s)", len(ee.Failures)+ee.Omitted)}
		}
		fmt.Fprintln(env.Stdout, err.Error())
		return &exitError{code: 1}
	}
	optional := func(path string) ([]byte, error) {
		if path == "" {
			return nil, nil
		}
		return read(path, "")
	}
	switch what {
	case "receipt":
		rb, err := read(*receiptPath, "receipt")
		if err != nil {
			return err
		}
		p, err := ledger.ParseReceiptProof(rb)
		if err != nil {
			return &exitError{code: 2, msg: "receipt: " + err.Error()}
		}
		cp, err := optional(*cpPath)
		if err != nil {
			return err
		}
		r, sc, err := ledger.VerifyReceipt(p, cp, keys, opts)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(env.Stdout, "ok: receipt %d (task %s, outcome %s, node %s) is in the log of size %d, root %s, signed by %s\n",
			p.Index, r.TaskID, r.Outcome, r.NodeID, sc.Size, sc.Root, strings.Join(sc.Signers, ", "))
	case "export":
		cp, err := read(*cpPath, "checkpoint")
		if err != nil {
			return err
		}
		var in io.Reader
		switch *exportPath {
		case "":
			return usage("--export is required")
		case "-":
			in = os.Stdin
		default:
			f, err := os.Open(*exportPath)
			if err != nil {
				return &exitError{code: 2, msg: err.Error()}
			}
			defer f.Close()
			in = f
		}
		res, err := ledger.VerifyExport(in, cp, keys, opts)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(env.Stdout, "ok: %d records, every signature verified, root %s at size %d, checkpoint signed by %s\n",
			res.Records, res.Root, res.Checkpoint.Size, strings.Join(res.Checkpoint.Signers, ", "))
	case "consistency":
		older, err := read(*oldPath, "old")
		if err != nil {
			return err
		}
		newer, err := read(*newPath, "new")
		if err != nil {
			return err
		}
		proof, err := readProof(optional, *proofPath)
		if err != nil {
			return err
		}
		if err := ledger.VerifyConsistency(older, newer, proof, keys, opts); err != nil {
			return fail(err)
		}
		fmt.Fprintln(env.Stdout, "ok: the newer checkpoint extends the older one")
	case "agree":
		a, err := nodeCheckpoint(*aSpec, "a", read)
		if err != nil {
			return err
		}
		b, err := nodeCheckpoint(*bSpec, "b", read)
		if err != nil {
			return err
		}
		proof, err := readProof(optional, *proofPath)
		if err != nil {
			return err
		}
		if err := ledger.VerifyAgreement(a, b, proof, keys, opts); err != nil {
			return fail(err)
		}
		fmt.Fprintf(env.Stdout, "ok: %s and %s serve the same log\n", a.Node, b.Node)
	default:
		return usage("unknown check")
	}
	return nil
}

func readProof(optional func(string) ([]byte, error), path string) (*ledger.ConsistencyProof, error) {
	b, err := optional(path)
	if err != nil || b == nil {
		return nil, err
	}
	p, err := ledger.ParseConsistencyProof(b)
	if err != nil {
		return nil, &exitError{code: 2, msg: "proof: " + err.Error()}
	}
	return p, nil
}

func nodeCheckpoint(spec, name string, read func(string, string) ([]byte, error)) (ledger.NodeCheckpoint, error) {
	node, path, ok := strings.Cut(spec, "=")
	if !ok || node == "" {
		return ledger.NodeCheckpoint{}, &exitError{code: 2, msg: fmt.Sprintf("--%s wants NODE=FILE", name)}
	}
	b, err := read(path, name)
	if err != nil {
		return ledger.NodeCheckpoint{}, err
	}
	return ledger.NodeCheckpoint{Node: node, Note: b}, nil
}
