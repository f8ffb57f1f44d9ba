package webencoding

import (
	"sync"

	"golang.org/x/text/encoding/japanese"
)

// The ISO-2022-JP decoder's states.
const (
	jpASCII byte = iota
	jpRoman
	jpKatakana
	jpLead
	jpTrail
	jpEscapeStart
	jpEscape
)

// iso2022JP is the ISO-2022-JP decoder's state: decoder state, output
// state, leading byte and the output flag.
type iso2022JP struct {
	st, out, lead byte
	output        bool
}

func iso2022JPState(s uint32) (*iso2022JP, bool) {
	j := &iso2022JP{st: byte(s & 7), out: byte(s >> 3 & 3), output: s>>5&1 == 1, lead: byte(s >> 8)}
	ok := s>>16 == 0 && s>>6&3 == 0 && j.st <= jpEscape && j.out <= jpLead
	switch j.st {
	case jpTrail:
		ok = ok && j.lead >= 0x21 && j.lead <= 0x7e
	case jpEscape:
		ok = ok && (j.lead == 0x24 || j.lead == 0x28)
	default:
		ok = ok && j.lead == 0
	}
	return j, ok
}

func (j *iso2022JP) state() uint32 {
	s := uint32(j.st) | uint32(j.out)<<3 | uint32(j.lead)<<8
	if j.output {
		s |= 1 << 5
	}
	return s
}

func (j *iso2022JP) handle(q *queue, b int) (result, rune) {
	switch j.st {
	case jpASCII, jpRoman, jpKatakana, jpLead:
		switch {
		case b == 0x1b:
			j.st = jpEscapeStart
			return resContinue, 0
		case b == endOfQueue:
			return resFinished, 0
		}
		j.output = false
		c := rune(b)
		switch j.st {
		case jpASCII:
			if c <= 0x7f && c != 0x0e && c != 0x0f {
				return resCodePoint, c
			}
		case jpRoman:
			switch {
			case c == 0x5c:
				return resCodePoint, '\u00a5'
			case c == 0x7e:
				return resCodePoint, '\u203e'
			case c <= 0x7f && c != 0x0e && c != 0x0f:
				return resCodePoint, c
			}
		case jpKatakana:
			if c >= 0x21 && c <= 0x5f {
				return resCodePoint, 0xff61 - 0x21 + c
			}
		case jpLead:
			if c >= 0x21 && c <= 0x7e {
				j.lead, j.st = byte(c), jpTrail
				return resContinue, 0
			}
		}
		return resError, 0
	case jpTrail:
		if b == 0x1b {
			j.st, j.lead = jpEscapeStart, 0
			return resError, 0
		}
		lead := j.lead
		j.st, j.lead = jpLead, 0
		if b >= 0x21 && b <= 0x7e {
			if r := jis0208()[(int(lead)-0x21)*94+b-0x21]; r != 0 {
				return resCodePoint, rune(r)
			}
		}
		return resError, 0
	case jpEscapeStart:
		if b == 0x24 || b == 0x28 {
			j.lead, j.st = byte(b), jpEscape
			return resContinue, 0
		}
		if b != endOfQueue {
			q.restore(byte(b))
		}
		j.output, j.st = false, j.out
		return resError, 0
	}
	// jpEscape
	lead := j.lead
	j.lead = 0
	st := byte(0xff)
	switch {
	case lead == 0x28 && b == 0x42:
		st = jpASCII
	case lead == 0x28 && b == 0x4a:
		st = jpRoman
	case lead == 0x28 && b == 0x49:
		st = jpKatakana
	case lead == 0x24 && (b == 0x40 || b == 0x42):
		st = jpLead
	}
	if st != 0xff {
		j.st, j.out = st, st
		output := j.output
		j.output = true
		if output {
			return resError, 0
		}
		return resContinue, 0
	}
	if b == endOfQueue {
		q.restore(lead)
	} else {
		q.restore(lead, byte(b))
	}
	j.output, j.st = false, j.out
	return resError, 0
}

// jis0208 is the standard's index jis0208 up to pointer 8835 (all that
// ISO-2022-JP reaches), 0 for none, built once from x/text's EUC-JP
// decoder, whose two-byte table is that index.
var jis0208 = sync.OnceValue(func() *[94 * 94]uint16 {
	var t [94 * 94]uint16
	d := japanese.EUCJP.NewDecoder()
	for p := range t {
		t[p] = bmp(decodeOne(d, byte(p/94+0xa1), byte(p%94+0xa1)))
	}
	return &t
})
