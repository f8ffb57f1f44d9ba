package webencoding

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// decodeAll decodes src as one chunk.
func decodeAll(t testing.TB, name string, src []byte) string {
	t.Helper()
	out, st, err := Decode(name, 0, src, true, false)
	if err != nil || st != 0 {
		t.Fatalf("Decode(%s, % x) = %v, state %#x", name, src, err, st)
	}
	return string(out)
}

func TestGB18030(t *testing.T) {
	tests := map[string]struct {
		in   []byte
		want string
	}{
		"ASCII and the euro byte":           {[]byte{'a', 0x80, 'b'}, "a\u20acb"},
		"two bytes":                         {[]byte{0xd6, 0xd0, 0xce, 0xc4}, "中文"},
		"first user-defined area":           {[]byte{0xaa, 0xa1, 0xaf, 0xfe}, "\ue000\ue233"},
		"second user-defined area":          {[]byte{0xf8, 0xa1, 0xfe, 0xfe}, "\ue234\ue4c5"},
		"third user-defined area":           {[]byte{0xa1, 0x40, 0xa7, 0xa0}, "\ue4c6\ue765"},
		"Private Use outside the areas":     {[]byte{0xa2, 0xab, 0xfe, 0x51}, "\ue766\ue816"},
		"GB18030-2005's 0xA8BC":             {[]byte{0xa8, 0xbc}, "\u1e3f"},
		"GB18030-2022's vertical forms":     {[]byte{0xa6, 0xd9, 0xa6, 0xda, 0xa6, 0xf3}, "\ufe10\ufe12\ufe19"},
		"GB18030-2022's ideographs":         {[]byte{0xfe, 0x59, 0xfe, 0xa0}, "\u9fb4\u9fbb"},
		"four bytes, first range":           {[]byte{0x81, 0x30, 0x81, 0x30}, "\u0080"},
		"four bytes, the 2005 special case": {[]byte{0x81, 0x35, 0xf4, 0x37}, "\ue7c7"},
		"four bytes, last BMP pointer":      {[]byte{0x84, 0x31, 0xa4, 0x39}, "\uffff"},
		"four bytes, first astral":          {[]byte{0x90, 0x30, 0x81, 0x30}, "\U00010000"},
		"four bytes, last astral":           {[]byte{0xe3, 0x32, 0x9a, 0x35}, "\U0010ffff"},
		// errors: one per sequence, its ASCII bytes given back
		"pointer in the gap":          {[]byte{0x84, 0x31, 0xa5, 0x30}, "\ufffd"},
		"pointer past the last":       {[]byte{0xe3, 0x32, 0x9a, 0x36}, "\ufffd"},
		"bad trail keeps its ASCII":   {[]byte{0x81, 0x7f, 'x'}, "\ufffd\x7fx"},
		"bad trail above ASCII":       {[]byte{0x81, 0xff, 'x'}, "\ufffdx"},
		"bad third byte":              {[]byte{0x81, 0x30, 0x20}, "\ufffd0 "},
		"bad fourth byte":             {[]byte{0x81, 0x30, 0x81, 0x20}, "\ufffd0\ufffd "},
		"bad fourth byte, lead again": {[]byte{0x81, 0x30, 0x81, 0x81, 0x40}, "\ufffd0\u4e96@"},
		"truncated at the end":        {[]byte{'a', 0x81, 0x30, 0x81}, "a\ufffd"},
		"0xFF":                        {[]byte{0xff}, "\ufffd"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for _, enc := range []string{"gb18030", "gbk"} {
				if got := decodeAll(t, enc, tc.in); got != tc.want {
					t.Errorf("%s: %+q, want %+q", enc, got, tc.want)
				}
			}
		})
	}
}

func TestISO2022JP(t *testing.T) {
	esc := func(s string) []byte { return []byte(s) }
	tests := map[string]struct {
		in   []byte
		want string
	}{
		"ASCII":                             {esc("ab\\~"), "ab\\~"},
		"Roman":                             {esc("\x1b(Ja\\~\x1b(Bb"), "a\u00a5\u203eb"},
		"katakana":                          {esc("\x1b(I\x21\x5f"), "\uff61\uff9f"},
		"JIS X 0208, both escapes":          {esc("\x1b$BF|\x1b$@K\\\x1b(B"), "日本"},
		"two escapes in a row":              {esc("\x1b(J\x1b(Ba"), "\ufffda"},
		"an escape at the end":              {esc("a\x1b(J"), "a"},
		"escapes apart":                     {esc("\x1b(Ja\x1b(Bb"), "ab"},
		"SO and SI are errors":              {esc("\x0e\x0f"), "\ufffd\ufffd"},
		"unknown escape gives its bytes":    {esc("\x1b(Z"), "\ufffd(Z"},
		"escape start then a byte":          {esc("\x1bA"), "\ufffdA"},
		"lone ESC at the end":               {esc("a\x1b"), "a\ufffd"},
		"ESC and lead at the end":           {esc("\x1b$"), "\ufffd$"},
		"ESC inside a character":            {esc("\x1b$BF\x1b(Ba"), "\ufffda"},
		"bad trail":                         {esc("\x1b$BF\x20"), "\ufffd"},
		"unmapped pointer":                  {esc("\x1b$B\x29\x21"), "\ufffd"},
		"lead at the end":                   {esc("\x1b$BF"), "\ufffd"},
		"a byte above 0x7F":                 {[]byte{0x80, 'a'}, "\ufffda"},
		"katakana refuses lower case ASCII": {esc("\x1b(Ia"), "\ufffd"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := decodeAll(t, "iso-2022-jp", tc.in); got != tc.want {
				t.Errorf("%+q, want %+q", got, tc.want)
			}
		})
	}
}

func TestShiftJISBig5EUC(t *testing.T) {
	tests := map[string]struct {
		enc  string
		in   []byte
		want string
	}{
		"Shift_JIS pairs":                       {"shift_jis", []byte{0x93, 0xfa, 0x96, 0x7b}, "日本"},
		"Shift_JIS halfwidth katakana and 0x80": {"shift_jis", []byte{0xa1, 0xdf, 0x80, 0x5c}, "\uff61\uff9f\u0080\\"},
		"Shift_JIS Private Use":                 {"shift_jis", []byte{0xf0, 0x40, 0xf9, 0xfc}, "\ue000\ue757"},
		"Shift_JIS gives back an ASCII trail":   {"shift_jis", []byte{0x82, 0x40}, "\ufffd@"},
		"Shift_JIS bad trail above ASCII":       {"shift_jis", []byte{0x81, 0xfd}, "\ufffd"},
		"Shift_JIS 0xA0 and 0xFD":               {"shift_jis", []byte{0xa0, 0xfd}, "\ufffd\ufffd"},
		"Shift_JIS lead at the end":             {"shift_jis", []byte{'a', 0x93}, "a\ufffd"},
		"Big5 pair":                             {"big5", []byte{0xa4, 0xa4}, "中"},
		"Big5 two code points":                  {"big5", []byte{0x88, 0x62, 0x88, 0x64, 0x88, 0xa3, 0x88, 0xa5}, "\u00ca\u0304\u00ca\u030c\u00ea\u0304\u00ea\u030c"},
		"Big5 beyond the BMP":                   {"big5", []byte{0x87, 0x45}, "\U00027267"},
		"Big5 gives back an ASCII trail":        {"big5", []byte{0x81, 0x40}, "\ufffd@"},
		"Big5 lead at the end":                  {"big5", []byte{0xa4}, "\ufffd"},
		"Big5 0x80 and 0xFF":                    {"big5", []byte{0x80, 0xff}, "\ufffd\ufffd"},
		"EUC-JP JIS X 0208":                     {"euc-jp", []byte{0xc6, 0xfc, 0xcb, 0xdc}, "日本"},
		"EUC-JP katakana":                       {"euc-jp", []byte{0x8e, 0xa1, 0x8e, 0xdf}, "\uff61\uff9f"},
		"EUC-JP JIS X 0212":                     {"euc-jp", []byte{0x8f, 0xb0, 0xa1}, "\u4e02"},
		"EUC-JP one error per bad pair":         {"euc-jp", []byte{0xa4, 0x80, 0x8e, 0xe0}, "\ufffd\ufffd"},
		"EUC-JP gives back an ASCII trail":      {"euc-jp", []byte{0xa4, 0x41, 0x8f, 0xb0, 0x41}, "\ufffdA\ufffdA"},
		"EUC-JP lead at the end":                {"euc-jp", []byte{0x8f, 0xb0}, "\ufffd"},
		"EUC-KR":                                {"euc-kr", []byte{0xc7, 0xd1, 0x81, 0x41}, "한\uac02"},
		"EUC-KR gives back an ASCII trail":      {"euc-kr", []byte{0xc9, 0x41, 0x80}, "\ufffdA\ufffd"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := decodeAll(t, tc.enc, tc.in); got != tc.want {
				t.Errorf("%+q, want %+q", got, tc.want)
			}
		})
	}
}

func TestSingleByte(t *testing.T) {
	for _, name := range singleByteNames {
		if !Has(name) {
			t.Errorf("%s has no table", name)
		}
	}
	tests := map[string]struct {
		enc  string
		in   []byte
		want string
	}{
		"ASCII":                           {"windows-1252", []byte("a~\x7f"), "a~\x7f"},
		"windows-1252's euro":             {"windows-1252", []byte{0x80}, "\u20ac"},
		"a windows-1252 hole is C1":       {"windows-1252", []byte{0x81, 0x9d}, "\u0081\u009d"},
		"ISO-8859-2's C1 controls":        {"iso-8859-2", []byte{0x80, 0x9f, 0xa1}, "\u0080\u009f\u0104"},
		"ISO-8859-8-I is ISO-8859-8":      {"iso-8859-8-i", []byte{0x80, 0xe0}, "\u0080\u05d0"},
		"ISO-8859-3 has a hole at 0xA5":   {"iso-8859-3", []byte{0xa5, 'a'}, "\ufffda"},
		"windows-874 has holes past 0xDA": {"windows-874", []byte{0xdb, 0x81}, "\ufffd\u0081"},
		"x-user-defined":                  {"x-user-defined", []byte{0x80, 0xff}, "\uf780\uf7ff"},
		"KOI8-R":                          {"koi8-r", []byte{0xc1, 0x80}, "\u0430\u2500"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := decodeAll(t, tc.enc, tc.in); got != tc.want {
				t.Errorf("%+q, want %+q", got, tc.want)
			}
		})
	}
	if _, _, err := Decode("iso-8859-3", 0, []byte{0xa5}, true, true); !errors.Is(err, ErrInvalid) {
		t.Errorf("fatal hole: %v", err)
	}
	if out, _, err := Decode("iso-8859-2", 0, []byte{0x85}, true, true); err != nil || string(out) != "\u0085" {
		t.Errorf("fatal C1: %q %v", out, err)
	}
	if _, _, err := Decode("windows-1252", 1, nil, true, false); !errors.Is(err, ErrState) {
		t.Errorf("a single-byte decoder took a state: %v", err)
	}
}

// TestStreaming: every split of an input in two calls, the state carried
// from one to the next, decodes as the whole input in one call.
func TestStreaming(t *testing.T) {
	inputs := map[string][]byte{
		"gb18030":     {'a', 0x81, 0x30, 0x81, 0x30, 0xd6, 0xd0, 0x81, 0x30, 0x81, 0x20, 0x81, 0x7f, 0x90, 0x30, 0x81, 0x30, 0x81},
		"gbk":         {0xd6, 0xd0, 0xce, 0xc4, 0x81},
		"iso-2022-jp": []byte("a\x1b$BF|K\\\x1b(Jb\\\x1b(I\x21\x1b$BF\x1b(B\x1b(J\x1b(Bc\x1b(Z\x1b$"),
		"shift_jis":   {0x93, 0xfa, 0x82, 0x40, 0xa1, 0xf0, 0x40, 0x96},
		"big5":        {0xa4, 0xa4, 0x88, 0x62, 0x81, 0x40, 0x87, 0x40, 0xa4},
		"euc-jp":      {0xc6, 0xfc, 0x8e, 0xa1, 0x8f, 0xb0, 0xa1, 0xa4, 0x80, 0x8f, 0xb0, 0x41, 0x8f},
		"euc-kr":      {0xc7, 0xd1, 0xc9, 0x41, 0xc7},
	}
	for name, in := range inputs {
		whole := decodeAll(t, name, in)
		for k := 0; k <= len(in); k++ {
			a, st, err := Decode(name, 0, in[:k], false, false)
			if err != nil {
				t.Fatal(err)
			}
			b, end, err := Decode(name, st, in[k:], true, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(a) + string(b); got != whole || end != 0 {
				t.Errorf("%s split at %d: %+q (state %#x), whole: %+q", name, k, got, end, whole)
			}
		}
	}
}

func TestFatal(t *testing.T) {
	if _, _, err := Decode("gb18030", 0, []byte{0x81, 0x7f}, true, true); !errors.Is(err, ErrInvalid) {
		t.Errorf("gb18030: %v, want ErrInvalid", err)
	}
	if _, _, err := Decode("iso-2022-jp", 0, []byte("\x1b(J\x1b(B"), true, true); !errors.Is(err, ErrInvalid) {
		t.Errorf("iso-2022-jp: %v, want ErrInvalid", err)
	}
	// an incomplete sequence is no error until the end
	out, st, err := Decode("gb18030", 0, []byte{'a', 0x81}, false, true)
	if err != nil || string(out) != "a" || st == 0 {
		t.Errorf("streaming: %q, %#x, %v", out, st, err)
	}
	if _, _, err := Decode("gb18030", st, nil, true, true); !errors.Is(err, ErrInvalid) {
		t.Errorf("flushed incomplete: %v, want ErrInvalid", err)
	}
}

// TestState: a state no decoder makes is refused, whatever the guest
// sends.
func TestState(t *testing.T) {
	bad := map[string]uint32{
		"gb18030 first not a lead":      0x41,
		"gb18030 second without first":  0x3000,
		"gb18030 second not a digit":    0x4181,
		"gb18030 third without second":  0x810081,
		"gb18030 high byte":             0x1000000,
		"iso-2022-jp unknown state":     7,
		"iso-2022-jp spare bits":        1 << 6,
		"iso-2022-jp trail without one": uint32(jpTrail),
		"iso-2022-jp escape lead":       uint32(jpEscape) | 0x41<<8,
		"iso-2022-jp lead in ASCII":     0x21 << 8,
		"iso-2022-jp high bits":         1 << 16,
		"shift_jis lead 0xA0":           0xa0,
		"shift_jis high bits":           0x193,
		"big5 lead 0x80":                0x80,
		"euc-jp lead 0x90":              0x90,
		"euc-jp jis0212 after 0x8E":     0x18e,
		"euc-jp high bits":              0x200,
		"euc-kr lead 0xFF":              0xff,
	}
	for name, st := range bad {
		enc, _, _ := strings.Cut(name, " ")
		if _, _, err := Decode(enc, st, []byte("a"), true, false); !errors.Is(err, ErrState) {
			t.Errorf("%s (%#x): %v, want ErrState", name, st, err)
		}
	}
	if _, _, err := Decode("utf-8", 0, nil, true, false); !errors.Is(err, ErrEncoding) {
		t.Errorf("utf-8: %v, want ErrEncoding", err)
	}
}

// TestGBIndex checks what the index built from x/text must hold: every
// Private Use code point of the user-defined areas exactly once, and the
// ranges increasing up to U+FFFF.
func TestGBIndex(t *testing.T) {
	tab := gbTables()
	seen := map[uint16]int{}
	mapped := 0
	for _, r := range tab.index {
		if r != 0 {
			mapped++
			seen[r]++
		}
	}
	for r := uint16(0xe000); r <= 0xe765; r++ {
		// 0xA3A0, in the third area, is U+3000 since GB18030-2005
		if seen[r] != 1 && r != 0xe5e5 {
			t.Errorf("U+%04X mapped %d times", r, seen[r])
		}
	}
	// the standard's index leaves none of its 23,940 pointers empty
	if mapped != len(tab.index) {
		t.Errorf("%d of %d pointers mapped", mapped, len(tab.index))
	}
	for i := 1; i < len(tab.rangePointer); i++ {
		if tab.rangePointer[i] <= tab.rangePointer[i-1] || tab.rangeCodePoint[i] <= tab.rangeCodePoint[i-1] {
			t.Fatalf("range %d not increasing", i)
		}
	}
	for p, want := range map[int]rune{39417: 0xfffd, 39419: 0xffff, 7456: 0x1e3e, 7457: 0xe7c7, 7458: 0x1e40} {
		if r, ok := gbRangesCodePoint(p); !ok || r != want {
			t.Errorf("pointer %d: %U %v, want %U", p, r, ok, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("gb18030", []byte{0x81, 0x30, 0x81, 0x30, 0xd6, 0xd0}, uint8(3), uint32(0x3081))
	f.Add("gbk", []byte{0x81, 0x30, 0x81, 0x20}, uint8(2), uint32(0))
	f.Add("iso-2022-jp", []byte("\x1b$BF|\x1b(J\\\x1b(B"), uint8(4), uint32(0x7e04|3<<3))
	f.Add("windows-1252", []byte{0x80, 0x81, 'a'}, uint8(1), uint32(1))
	f.Add("shift_jis", []byte{0x93, 0xfa, 0x82, 0x40}, uint8(1), uint32(0x93))
	f.Add("big5", []byte{0x88, 0x62, 0xa4}, uint8(1), uint32(0xa4))
	f.Add("euc-jp", []byte{0x8f, 0xb0, 0xa1, 0xa4, 0x80}, uint8(2), uint32(0x1b0))
	f.Fuzz(func(t *testing.T, name string, in []byte, split uint8, state uint32) {
		if !Has(name) {
			name = "gb18030"
		}
		// a state from the guest: refused, or decoded without a panic
		if out, _, err := Decode(name, state, in, true, false); err == nil && !utf8.Valid(out) {
			t.Fatalf("invalid UTF-8 from state %#x", state)
		} else if err != nil && !errors.Is(err, ErrState) {
			t.Fatalf("state %#x: %v", state, err)
		}
		whole, st, err := Decode(name, 0, in, true, false)
		if err != nil || st != 0 {
			t.Fatalf("%v, state %#x", err, st)
		}
		if !utf8.Valid(whole) {
			t.Fatalf("invalid UTF-8 from % x", in)
		}
		if len(whole) > 3*len(in)+3 {
			t.Fatalf("%d bytes out of %d", len(whole), len(in))
		}
		k := int(split) % (len(in) + 1)
		a, st, err := Decode(name, 0, in[:k], false, false)
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := Decode(name, st, in[k:], true, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := append(a, b...); !bytes.Equal(got, whole) {
			t.Fatalf("split at %d: %+q, whole %+q", k, got, whole)
		}
		fatal, _, err := Decode(name, 0, in, true, true)
		if err == nil && !bytes.Equal(fatal, whole) {
			t.Fatalf("fatal %+q, not %+q", fatal, whole)
		}
		if err != nil && !bytes.ContainsRune(whole, utf8.RuneError) {
			t.Fatalf("fatal refused %+q, which has no error", whole)
		}
	})
}
