package webencoding

import (
	"sync"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/traditionalchinese"
)

// shiftJIS is the Shift_JIS decoder's state: Shift_JIS lead, 0x00 or a
// lead byte.
type shiftJIS struct{ lead byte }

func shiftJISState(s uint32) (*shiftJIS, bool) {
	l := byte(s)
	return &shiftJIS{l}, s>>8 == 0 && (l == 0 || l >= 0x81 && l <= 0x9f || l >= 0xe0 && l <= 0xfc)
}

func (d *shiftJIS) state() uint32 { return uint32(d.lead) }

func (d *shiftJIS) handle(q *queue, b int) (result, rune) {
	if b == endOfQueue {
		if d.lead == 0 {
			return resFinished, 0
		}
		d.lead = 0
		return resError, 0
	}
	c := byte(b)
	if d.lead != 0 {
		lead := d.lead
		d.lead = 0
		offset, leadOffset := 0x41, 0xc1
		if c < 0x7f {
			offset = 0x40
		}
		if lead < 0xa0 {
			leadOffset = 0x81
		}
		if c >= 0x40 && c <= 0x7e || c >= 0x80 && c <= 0xfc {
			p := (int(lead)-leadOffset)*188 + int(c) - offset
			if p >= 8836 && p <= 10715 {
				return resCodePoint, rune(0xe000 - 8836 + p)
			}
			if r := sjisTable()[p]; r != 0 {
				return resCodePoint, rune(r)
			}
		}
		if c < 0x80 {
			q.restore(c)
		}
		return resError, 0
	}
	switch {
	case c <= 0x80:
		return resCodePoint, rune(c)
	case c >= 0xa1 && c <= 0xdf:
		return resCodePoint, rune(0xff61 - 0xa1 + int(c))
	case c <= 0x9f || c >= 0xe0 && c <= 0xfc:
		d.lead = c
		return resContinue, 0
	}
	return resError, 0
}

// sjisTable is index jis0208 as Shift_JIS reaches it (pointers up to
// 11,279; 0 for none), built once from x/text's Shift_JIS decoder, which
// lacks only the standard's Private Use range (pointers 8836 to 10715).
var sjisTable = sync.OnceValue(func() *[60 * 188]uint16 {
	var t [60 * 188]uint16
	d := japanese.ShiftJIS.NewDecoder()
	for p := range t {
		lead, trail := p/188, p%188
		if lead < 0x1f {
			lead += 0x81
		} else {
			lead += 0xc1
		}
		if trail < 0x3f {
			trail += 0x40
		} else {
			trail += 0x41
		}
		t[p] = bmp(decodeOne(d, byte(lead), byte(trail)))
	}
	return &t
})

// big5 is the Big5 decoder's state: Big5 lead, 0x00 or a lead byte.
type big5 struct{ lead byte }

func big5State(s uint32) (*big5, bool) {
	l := byte(s)
	return &big5{l}, s>>8 == 0 && (l == 0 || l >= 0x81 && l <= 0xfe)
}

func (d *big5) state() uint32 { return uint32(d.lead) }

// big5Pairs are the four pointers that decode to two code points, a
// base letter and a combining mark, packed as resPair wants them.
var big5Pairs = map[int]rune{1133: 0x00ca<<16 | 0x0304, 1135: 0x00ca<<16 | 0x030c, 1164: 0x00ea<<16 | 0x0304, 1166: 0x00ea<<16 | 0x030c}

func (d *big5) handle(q *queue, b int) (result, rune) {
	if b == endOfQueue {
		if d.lead == 0 {
			return resFinished, 0
		}
		d.lead = 0
		return resError, 0
	}
	c := byte(b)
	if d.lead != 0 {
		lead := d.lead
		d.lead = 0
		offset := 0x62
		if c < 0x7f {
			offset = 0x40
		}
		if c >= 0x40 && c <= 0x7e || c >= 0xa1 && c <= 0xfe {
			p := (int(lead)-0x81)*157 + int(c) - offset
			if pair, ok := big5Pairs[p]; ok {
				return resPair, pair
			}
			if r := big5Table()[p]; r != 0 {
				return resCodePoint, r
			}
		}
		if c < 0x80 {
			q.restore(c)
		}
		return resError, 0
	}
	switch {
	case c < 0x80:
		return resCodePoint, rune(c)
	case c >= 0x81 && c <= 0xfe:
		d.lead = c
		return resContinue, 0
	}
	return resError, 0
}

// big5Table is index Big5 (0 for none), built once from x/text's Big5
// decoder, whose table is the standard's.
var big5Table = sync.OnceValue(func() *[126 * 157]rune {
	var t [126 * 157]rune
	d := traditionalchinese.Big5.NewDecoder()
	for p := range t {
		lead, trail := p/157+0x81, p%157
		if trail < 0x3f {
			trail += 0x40
		} else {
			trail += 0x62
		}
		t[p] = decodeOne(d, byte(lead), byte(trail))
	}
	return &t
})

// eucJP is the EUC-JP decoder's state: EUC-JP leading and the jis0212
// flag (a three-byte sequence begun with 0x8F).
type eucJP struct {
	lead    byte
	jis0212 bool
}

func eucJPState(s uint32) (*eucJP, bool) {
	d := &eucJP{lead: byte(s), jis0212: s>>8&1 == 1}
	l := d.lead
	ok := s>>9 == 0 && (l == 0 || l == 0x8e || l == 0x8f || l >= 0xa1 && l <= 0xfe) && (!d.jis0212 || l >= 0xa1 && l <= 0xfe)
	return d, ok
}

func (d *eucJP) state() uint32 {
	s := uint32(d.lead)
	if d.jis0212 {
		s |= 1 << 8
	}
	return s
}

func (d *eucJP) handle(q *queue, b int) (result, rune) {
	if b == endOfQueue {
		if d.lead == 0 {
			return resFinished, 0
		}
		*d = eucJP{}
		return resError, 0
	}
	c := byte(b)
	switch {
	case d.lead == 0x8e && c >= 0xa1 && c <= 0xdf:
		d.lead = 0
		return resCodePoint, rune(0xff61 - 0xa1 + int(c))
	case d.lead == 0x8f && c >= 0xa1 && c <= 0xfe:
		d.jis0212, d.lead = true, c
		return resContinue, 0
	case d.lead != 0:
		lead, j12 := d.lead, d.jis0212
		*d = eucJP{}
		if lead >= 0xa1 && lead <= 0xfe && c >= 0xa1 && c <= 0xfe {
			p := (int(lead)-0xa1)*94 + int(c) - 0xa1
			r := jis0208()[p]
			if j12 {
				r = jis0212()[p]
			}
			if r != 0 {
				return resCodePoint, rune(r)
			}
		}
		if c < 0x80 {
			q.restore(c)
		}
		return resError, 0
	case c < 0x80:
		return resCodePoint, rune(c)
	case c == 0x8e || c == 0x8f || c >= 0xa1 && c <= 0xfe:
		d.lead = c
		return resContinue, 0
	}
	return resError, 0
}

// jis0212 is the standard's index jis0212 (0 for none), built once from
// x/text's EUC-JP decoder (its three-byte sequences), whose table it is.
var jis0212 = sync.OnceValue(func() *[94 * 94]uint16 {
	var t [94 * 94]uint16
	d := japanese.EUCJP.NewDecoder()
	for p := range t {
		t[p] = bmp(decodeOne(d, 0x8f, byte(p/94+0xa1), byte(p%94+0xa1)))
	}
	return &t
})

// eucKR is the EUC-KR decoder's state: EUC-KR lead, 0x00 or a lead byte.
type eucKR struct{ lead byte }

func eucKRState(s uint32) (*eucKR, bool) {
	l := byte(s)
	return &eucKR{l}, s>>8 == 0 && (l == 0 || l >= 0x81 && l <= 0xfe)
}

func (d *eucKR) state() uint32 { return uint32(d.lead) }

func (d *eucKR) handle(q *queue, b int) (result, rune) {
	if b == endOfQueue {
		if d.lead == 0 {
			return resFinished, 0
		}
		d.lead = 0
		return resError, 0
	}
	c := byte(b)
	if d.lead != 0 {
		lead := d.lead
		d.lead = 0
		if c >= 0x41 && c <= 0xfe {
			if r := eucKRTable()[(int(lead)-0x81)*190+int(c)-0x41]; r != 0 {
				return resCodePoint, rune(r)
			}
		}
		if c < 0x80 {
			q.restore(c)
		}
		return resError, 0
	}
	switch {
	case c < 0x80:
		return resCodePoint, rune(c)
	case c >= 0x81 && c <= 0xfe:
		d.lead = c
		return resContinue, 0
	}
	return resError, 0
}

// eucKRTable is index EUC-KR (0 for none), built once from x/text's
// EUC-KR decoder, whose table is the standard's.
var eucKRTable = sync.OnceValue(func() *[126 * 190]uint16 {
	var t [126 * 190]uint16
	d := korean.EUCKR.NewDecoder()
	for p := range t {
		t[p] = bmp(decodeOne(d, byte(p/190+0x81), byte(p%190+0x41)))
	}
	return &t
})

// decodeOne is the one code point x/text's decoder d gives for the bytes
// seq, or 0 when it gives an error, nothing or more than one: how the
// index tables are read out of x/text.
func decodeOne(d *encoding.Decoder, seq ...byte) rune {
	var dst [16]byte
	d.Reset()
	n, _, err := d.Transform(dst[:], seq, true)
	if r, size := utf8.DecodeRune(dst[:n]); err == nil && size == n && r != utf8.RuneError {
		return r
	}
	return 0
}

// bmp is r as an entry of a 16-bit index table: 0 beyond the BMP.
func bmp(r rune) uint16 {
	if r > 0xffff {
		return 0
	}
	return uint16(r)
}
