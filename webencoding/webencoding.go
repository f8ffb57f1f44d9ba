// Package webencoding holds the WHATWG Encoding Standard's legacy
// decoders (every encoding but UTF-8, UTF-16 and replacement), which
// golang.org/x/text does not all follow: its gb18030 predates the 2022
// index and reports an error per byte; its ISO-2022-JP has no output
// flag; its charmaps leave unmapped the bytes 0x80 to 0x9F that the
// standard maps to the C1 controls; its Shift_JIS lacks the Private Use
// range, and with Big5 drops an ASCII byte that follows a lead byte it
// cannot pair, which the standard gives back; its EUC-JP reports two
// errors where the standard reports one. (Its EUC-KR matches; it is here
// so that every legacy decoder keeps its state the same way.)
//
// Each is the standard's algorithm step by step, so an invalid sequence
// gives the errors the standard gives (one per sequence, with its bytes
// restored to the input as it says), and its state is a number the
// caller keeps between calls: a streaming TextDecoder carries it from one
// call to the next, so no decoder state lives in the host between calls,
// and every call consumes all its input.
//
// The indexes are built from x/text's tables on first use, corrected
// where the standard differs (GB18030-2005 and -2022, the Private Use
// mappings, the C1 bytes); nothing of the standard's index files is
// copied here.
package webencoding

import (
	"errors"
	"unicode/utf8"
)

// Errors of Decode.
var (
	// ErrInvalid is a fatal decoder's first error.
	ErrInvalid = errors.New("webencoding: invalid input")
	// ErrState is a state that no decoder of the encoding can be in.
	ErrState = errors.New("webencoding: invalid decoder state")
	// ErrEncoding is an encoding this package does not decode.
	ErrEncoding = errors.New("webencoding: unsupported encoding")
)

// Has reports whether name (an encoding's canonical name, as the
// standard's "get an encoding" gives it) is decoded by this package.
func Has(name string) bool {
	switch name {
	case "gb18030", "gbk", "iso-2022-jp", "shift_jis", "big5", "euc-jp", "euc-kr":
		return true
	}
	_, ok := singleByteTables()[name]
	return ok
}

// Decode decodes src with the decoder of encoding name, starting in
// state (0 is a new decoder), and returns the text as UTF-8 and the state
// to pass with the next chunk. With flush, src is the last chunk: the
// end of the queue is processed and the state returned is 0. Every input
// byte is consumed. With fatal, the first error ends the call with
// ErrInvalid. A state not made by Decode for that encoding is ErrState.
func Decode(name string, state uint32, src []byte, flush, fatal bool) ([]byte, uint32, error) {
	var d decoder
	switch name {
	case "gb18030", "gbk":
		g, ok := gb18030State(state)
		if !ok {
			return nil, 0, ErrState
		}
		d = g
	case "iso-2022-jp":
		j, ok := iso2022JPState(state)
		if !ok {
			return nil, 0, ErrState
		}
		d = j
	case "shift_jis":
		s, ok := shiftJISState(state)
		if !ok {
			return nil, 0, ErrState
		}
		d = s
	case "big5":
		b, ok := big5State(state)
		if !ok {
			return nil, 0, ErrState
		}
		d = b
	case "euc-jp":
		e, ok := eucJPState(state)
		if !ok {
			return nil, 0, ErrState
		}
		d = e
	case "euc-kr":
		k, ok := eucKRState(state)
		if !ok {
			return nil, 0, ErrState
		}
		d = k
	default:
		t, ok := singleByteTables()[name]
		if !ok {
			return nil, 0, ErrEncoding
		}
		if state != 0 {
			return nil, 0, ErrState
		}
		d = singleByte{t}
	}
	out, err := run(d, src, flush, fatal)
	if err != nil {
		return nil, 0, err
	}
	if flush {
		return out, 0, nil
	}
	return out, d.state(), nil
}

// A handler's results, as the standard names them.
type result int

const (
	resContinue result = iota
	resCodePoint
	resError
	resFinished
	resPair // two BMP code points, the first in the high 16 bits
)

// endOfQueue is the standard's end-of-queue item.
const endOfQueue = -1

// decoder is one of the standard's decoders: its handler, given one
// byte (or endOfQueue), and its state as a number.
type decoder interface {
	handle(q *queue, b int) (result, rune)
	state() uint32
}

// queue holds the bytes a handler restored; they are read before the
// rest of the input. A handler restores at most three bytes.
type queue struct {
	buf [4]byte
	n   int
}

// restore puts bs back at the front, first byte first.
func (q *queue) restore(bs ...byte) {
	copy(q.buf[len(bs):], q.buf[:q.n])
	copy(q.buf[:], bs)
	q.n += len(bs)
}

func (q *queue) pop() byte {
	b := q.buf[0]
	copy(q.buf[:], q.buf[1:q.n])
	q.n--
	return b
}

// run is the standard's "process a queue" for one chunk: every byte,
// then end-of-queue when flush, each error U+FFFD unless fatal.
func run(d decoder, src []byte, flush, fatal bool) ([]byte, error) {
	out := make([]byte, 0, len(src)+len(src)/2+4)
	var q queue
	i := 0
	for {
		b := endOfQueue
		switch {
		case q.n > 0:
			b = int(q.pop())
		case i < len(src):
			b = int(src[i])
			i++
		case !flush:
			return out, nil
		}
		res, r := d.handle(&q, b)
		switch res {
		case resCodePoint:
			out = utf8.AppendRune(out, r)
		case resPair:
			out = utf8.AppendRune(utf8.AppendRune(out, r>>16), r&0xffff)
		case resError:
			if fatal {
				return nil, ErrInvalid
			}
			out = utf8.AppendRune(out, utf8.RuneError)
		case resFinished:
			return out, nil
		}
	}
}
