package webencoding

import (
	"sync"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
)

// singleByteNames are the standard's legacy single-byte encodings and
// x-user-defined.
var singleByteNames = [...]string{
	"ibm866", "iso-8859-2", "iso-8859-3", "iso-8859-4", "iso-8859-5", "iso-8859-6", "iso-8859-7",
	"iso-8859-8", "iso-8859-8-i", "iso-8859-10", "iso-8859-13", "iso-8859-14", "iso-8859-15",
	"iso-8859-16", "koi8-r", "koi8-u", "macintosh", "windows-874", "windows-1250", "windows-1251",
	"windows-1252", "windows-1253", "windows-1254", "windows-1255", "windows-1256", "windows-1257",
	"windows-1258", "x-mac-cyrillic", "x-user-defined",
}

// singleByte is a single-byte decoder: the code points of bytes 0x80 to
// 0xFF, 0 where the standard's index has none. It has no state.
type singleByte struct{ upper *[128]rune }

func (s singleByte) state() uint32 { return 0 }

func (s singleByte) handle(_ *queue, b int) (result, rune) {
	switch {
	case b == endOfQueue:
		return resFinished, 0
	case b < 0x80:
		return resCodePoint, rune(b)
	case s.upper[b-0x80] != 0:
		return resCodePoint, s.upper[b-0x80]
	}
	return resError, 0
}

// singleByteTables are the single-byte indexes, built once from x/text's
// charmaps. x/text leaves bytes 0x80 to 0x9F unmapped where the
// standard's indexes map them to U+0080 to U+009F (every ISO-8859 part,
// the holes of the windows code pages); no index has a hole there.
var singleByteTables = sync.OnceValue(func() map[string]*[128]rune {
	tables := make(map[string]*[128]rune, len(singleByteNames))
	for _, name := range singleByteNames {
		src := name
		if name == "iso-8859-8-i" { // the same index as iso-8859-8
			src = "iso-8859-8"
		}
		// TestSingleByte checks that every name has its table
		enc, err := htmlindex.Get(src)
		cm, ok := enc.(*charmap.Charmap)
		if err != nil || !ok {
			continue
		}
		var t [128]rune
		for i := range t {
			b := byte(0x80 + i)
			r := cm.DecodeByte(b)
			if r == utf8.RuneError {
				r = 0
				if b <= 0x9f {
					r = rune(b)
				}
			}
			t[i] = r
		}
		tables[name] = &t
	}
	return tables
})
