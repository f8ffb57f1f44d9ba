package webencoding

import (
	"sort"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// gb18030 is the gb18030 decoder's state: gb18030 first, second and
// third, each 0x00 or a byte of a sequence begun.
type gb18030 struct {
	first, second, third byte
	t                    *gbIndexes
}

func gb18030State(s uint32) (*gb18030, bool) {
	g := &gb18030{first: byte(s), second: byte(s >> 8), third: byte(s >> 16), t: gbTables()}
	ok := s>>24 == 0 &&
		(g.first == 0 || g.first >= 0x81 && g.first <= 0xfe) &&
		(g.second == 0 || g.first != 0 && g.second >= 0x30 && g.second <= 0x39) &&
		(g.third == 0 || g.second != 0 && g.third >= 0x81 && g.third <= 0xfe)
	return g, ok
}

func (g *gb18030) state() uint32 {
	return uint32(g.first) | uint32(g.second)<<8 | uint32(g.third)<<16
}

func (g *gb18030) handle(q *queue, b int) (result, rune) {
	if b == endOfQueue {
		if g.first == 0 && g.second == 0 && g.third == 0 {
			return resFinished, 0
		}
		g.first, g.second, g.third = 0, 0, 0
		return resError, 0
	}
	c := byte(b)
	switch {
	case g.third != 0:
		if c < 0x30 || c > 0x39 {
			q.restore(g.second, g.third, c)
			g.first, g.second, g.third = 0, 0, 0
			return resError, 0
		}
		p := (int(g.first)-0x81)*12600 + (int(g.second)-0x30)*1260 + (int(g.third)-0x81)*10 + int(c) - 0x30
		g.first, g.second, g.third = 0, 0, 0
		r, ok := gbRangesCodePoint(p)
		if !ok {
			return resError, 0
		}
		return resCodePoint, r
	case g.second != 0:
		if c >= 0x81 && c <= 0xfe {
			g.third = c
			return resContinue, 0
		}
		q.restore(g.second, c)
		g.first, g.second = 0, 0
		return resError, 0
	case g.first != 0:
		if c >= 0x30 && c <= 0x39 {
			g.second = c
			return resContinue, 0
		}
		lead := g.first
		g.first = 0
		offset := 0x41
		if c < 0x7f {
			offset = 0x40
		}
		if c >= 0x40 && c <= 0x7e || c >= 0x80 && c <= 0xfe {
			if r := g.t.index[(int(lead)-0x81)*190+int(c)-offset]; r != 0 {
				return resCodePoint, rune(r)
			}
		}
		if c < 0x80 {
			q.restore(c)
		}
		return resError, 0
	case c < 0x80:
		return resCodePoint, rune(c)
	case c == 0x80:
		return resCodePoint, '\u20ac'
	case c <= 0xfe:
		g.first = c
		return resContinue, 0
	}
	return resError, 0
}

// gbRangesCodePoint is the standard's "index gb18030 ranges code point".
func gbRangesCodePoint(p int) (rune, bool) {
	switch {
	case p > 39419 && p < 189000 || p > 1237575:
		return 0, false
	case p >= 189000:
		return rune(0x10000 + p - 189000), true
	case p == 7457:
		return '\ue7c7', true
	}
	t := gbTables()
	i := sort.Search(len(t.rangePointer), func(i int) bool { return int(t.rangePointer[i]) > p }) - 1
	return rune(int(t.rangeCodePoint[i]) + p - int(t.rangePointer[i])), true
}

// gbIndexes are index gb18030 (pointer to code point, 0 for none; all
// are in the BMP) and index gb18030 ranges below pointer 39420.
type gbIndexes struct {
	index                        [126 * 190]uint16
	rangePointer, rangeCodePoint []uint16
}

// gbTables builds the indexes once, from what x/text's gb18030 decoder
// gives for each two- and four-byte sequence. x/text's two-byte table
// (GB18030-2000's, with -2005's € at 0xA2E3) leaves unmapped what the
// standard maps to Private Use code points, and predates -2005's 0xA8BC
// and -2022's nineteen changes; those are filled in below.
var gbTables = sync.OnceValue(func() *gbIndexes {
	t := &gbIndexes{}
	d := simplifiedchinese.GB18030.NewDecoder()
	// one decodes one sequence; 0 when x/text maps it to nothing (U+FFFD,
	// which only a four-byte sequence, pointer 39417, stands for)
	one := func(src []byte) rune {
		var dst [8]byte
		d.Reset()
		n, _, err := d.Transform(dst[:], src, true)
		r, size := utf8.DecodeRune(dst[:n])
		if err != nil || size != n || r == utf8.RuneError && len(src) == 2 {
			return 0
		}
		return r
	}
	for p := range t.index {
		lead, trail := p/190+0x81, p%190
		if trail < 0x3f {
			trail += 0x40
		} else {
			trail += 0x41
		}
		t.index[p] = uint16(one([]byte{byte(lead), byte(trail)}))
	}
	// The user-defined areas (0xAAA1–0xAFFE, 0xF8A1–0xFEFE, 0xA140–0xA7A0)
	// are U+E000 onwards, in that order.
	pua := rune(0xe000)
	area := func(leadFrom, leadTo, trailFrom, trailTo int) {
		for lead := leadFrom; lead <= leadTo; lead++ {
			for trail := trailFrom; trail <= trailTo; trail++ {
				if trail == 0x7f {
					continue
				}
				offset := 0x41
				if trail < 0x7f {
					offset = 0x40
				}
				if p := (lead-0x81)*190 + trail - offset; t.index[p] == 0 {
					t.index[p] = uint16(pua)
				}
				pua++
			}
		}
	}
	area(0xaa, 0xaf, 0xa1, 0xfe)
	area(0xf8, 0xfe, 0xa1, 0xfe)
	area(0xa1, 0xa7, 0x40, 0xa0)
	// The other Private Use mappings, runs of pointer, code point, length.
	for _, r := range gbPrivateUse {
		for i := uint16(0); i < r[2]; i++ {
			t.index[r[0]+i] = r[1] + i
		}
	}
	for _, o := range gbChanged {
		t.index[o[0]] = o[1]
	}
	var prev rune = -2
	for p := 0; p <= 39419; p++ {
		r := one([]byte{byte(p/12600 + 0x81), byte(p%12600/1260 + 0x30), byte(p%1260/10 + 0x81), byte(p%10 + 0x30)})
		if r != prev+1 {
			t.rangePointer = append(t.rangePointer, uint16(p))
			t.rangeCodePoint = append(t.rangeCodePoint, uint16(r))
		}
		prev = r
	}
	return t
})

// gbPrivateUse are the standard's two-byte Private Use mappings outside
// the user-defined areas (U+E766 onwards): pointer, code point, count.
var gbPrivateUse = [...][3]uint16{
	{6376, 0xe766, 6}, {6433, 0xe76d, 1}, {6444, 0xe76e, 2}, {6458, 0xe770, 2},
	{6829, 0xe772, 11}, {7022, 0xe77d, 8}, {7150, 0xe785, 8}, {7211, 0xe797, 9},
	{7349, 0xe7a0, 15}, {7397, 0xe7af, 13}, {7495, 0xe7bc, 11}, {7538, 0xe7c9, 4},
	{7579, 0xe7cd, 21}, {7624, 0xe7e2, 1}, {7627, 0xe7e3, 1}, {7629, 0xe7e4, 3},
	{7686, 0xe7f4, 13}, {7775, 0xe801, 15}, {16525, 0xe810, 5}, {23767, 0xe816, 3},
	{23794, 0xe831, 1}, {23804, 0xe83b, 1}, {23830, 0xe855, 1},
}

// gbChanged are the two-byte mappings GB18030-2005 (0xA8BC) and
// GB18030-2022 (the vertical forms, eight ideographs) gave characters
// that x/text's table does not have: pointer, code point.
var gbChanged = [...][2]uint16{
	{7182, 0xfe10}, {7183, 0xfe12}, {7184, 0xfe11}, {7185, 0xfe13}, {7186, 0xfe14},
	{7187, 0xfe15}, {7188, 0xfe16}, {7201, 0xfe17}, {7202, 0xfe18}, {7208, 0xfe19},
	{7533, 0x1e3f},
	{23775, 0x9fb4}, {23783, 0x9fb5}, {23788, 0x9fb6}, {23789, 0x9fb7},
	{23795, 0x9fb8}, {23812, 0x9fb9}, {23829, 0x9fba}, {23845, 0x9fbb},
}
