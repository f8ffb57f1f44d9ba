package sandbox

// Host calls of the JS engine for the web APIs Go does better than the
// prelude: the WHATWG URL setters (the parser weburl wraps) and the WHATWG
// Encoding Standard's legacy decoders (webencoding; the label table is
// golang.org/x/text/encoding/htmlindex's).

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/nlnwa/whatwg-url/url"
	"github.com/tetratelabs/wazero/api"
	"golang.org/x/text/encoding/htmlindex"

	"github.com/leash-dev/leash/webencoding"
	"github.com/leash-dev/leash/weburl"
)

// urlSetParser applies the URL Standard's setters (state overrides); the
// result is parsed again by weburl, so the parts the prelude sees come
// from the gateway's parser.
var urlSetParser = url.NewParser(url.WithReportValidationErrors())

// jsURLSetters are the URL attributes the prelude sets through the host,
// numbered as the prelude numbers them.
var jsURLSetters = [...]func(u *url.Url, v string){
	func(u *url.Url, v string) { u.SetProtocol(v) },
	func(u *url.Url, v string) { u.SetUsername(v) },
	func(u *url.Url, v string) { u.SetPassword(v) },
	func(u *url.Url, v string) { u.SetHost(v) },
	func(u *url.Url, v string) { u.SetHostname(v) },
	func(u *url.Url, v string) { u.SetPort(v) },
	func(u *url.Url, v string) { u.SetPathname(v) },
	func(u *url.Url, v string) { u.SetSearch(v) },
	func(u *url.Url, v string) { u.SetHash(v) },
}

// urlSet applies setter which of href to value and returns the new URL.
func urlSet(href string, which uint32, value string) (*weburl.URL, error) {
	if which >= uint32(len(jsURLSetters)) {
		return nil, errors.New("unknown URL attribute")
	}
	if len(href) > weburl.MaxLen || len(value) > weburl.MaxLen {
		return nil, weburl.ErrTooLong
	}
	u, err := urlSetParser.Parse(href)
	if err != nil {
		return nil, err
	}
	jsURLSetters[which](u, value)
	return weburl.Parse(u.Href(false), "")
}

// jsURLSet: url_set(href, hlen, which, value, vlen) -> reply length (the
// parts as JSON, as url_parse), or -1.
func jsURLSet(ctx context.Context, mod api.Module, stack []uint64) {
	st := jsTaskFrom(ctx)
	href, ok := readString(mod, uint32(stack[0]), uint32(stack[1]))
	value, ok2 := readString(mod, uint32(stack[3]), uint32(stack[4]))
	if st == nil || !ok || !ok2 {
		stack[0] = api.EncodeI32(-1)
		return
	}
	u, err := urlSet(href, uint32(stack[2]), value)
	if err != nil {
		stack[0] = api.EncodeI32(-1)
		return
	}
	b, err := json.Marshal(u)
	if err != nil {
		stack[0] = api.EncodeI32(-1)
		return
	}
	st.reply = b
	stack[0] = uint64(len(b))
}

// Flags of the decode host call. Bits 8 to 31 are the decoder's state
// (webencoding.Decode's) that the previous streaming call returned; the
// guest keeps it, so no decoder state stays in the host between calls.
const (
	decodeFatal      = 1 // an invalid sequence is an error, not U+FFFD
	decodeStream     = 2 // more input follows: return the state, not an end
	decodeNameOnly   = 4 // resolve the label only; the reply is the name
	decodeStateShift = 8
)

// jsMaxDecode bounds one decode call's input. Host calls are not
// interrupted, so this bounds how far a call runs past the task's CPU
// limit (a few ms); the prelude splits a larger decode() into calls of
// 256 KiB, carrying the state.
const jsMaxDecode = 1 << 20

// encodingFor resolves a label as the Encoding Standard's "get an
// encoding" (golang.org/x/text/encoding/htmlindex is its table): ASCII
// whitespace trimmed, ASCII case-insensitive, every label is ASCII. The
// replacement encoding is no TextDecoder's.
func encodingFor(label string) (string, bool) {
	label = strings.Trim(label, "\t\n\f\r ")
	if label == "" || len(label) > 64 {
		return "", false
	}
	for i := 0; i < len(label); i++ {
		if c := label[i]; c >= utf8.RuneSelf || c <= ' ' {
			return "", false
		}
	}
	enc, err := htmlindex.Get(strings.ToLower(label))
	if err != nil {
		return "", false
	}
	name, err := htmlindex.Name(enc)
	if err != nil || name == "replacement" {
		return "", false
	}
	return name, true
}

// jsDecode: decode(label, llen, in, ilen, flags) -> reply length, or -1
// (an unknown label, an encoding the host does not decode, a bad state,
// or invalid input when fatal), or -2 (input over jsMaxDecode). The reply
// is the canonical name (decodeNameOnly), or 4 bytes of the decoder's
// next state (little-endian) and the UTF-8 text; every input byte is
// consumed.
func jsDecode(ctx context.Context, mod api.Module, stack []uint64) {
	st := jsTaskFrom(ctx)
	label, ok := readString(mod, uint32(stack[0]), uint32(stack[1]))
	flags := uint32(stack[4])
	if st == nil || !ok {
		stack[0] = api.EncodeI32(-1)
		return
	}
	name, ok := encodingFor(label)
	if !ok {
		stack[0] = api.EncodeI32(-1)
		return
	}
	if flags&decodeNameOnly != 0 {
		st.reply = []byte(name)
		stack[0] = uint64(len(st.reply))
		return
	}
	if uint32(stack[3]) > jsMaxDecode {
		stack[0] = api.EncodeI32(-2)
		return
	}
	src, ok := mod.Memory().Read(uint32(stack[2]), uint32(stack[3]))
	if !ok {
		stack[0] = api.EncodeI32(-1)
		return
	}
	text, next, err := webencoding.Decode(name, flags>>decodeStateShift, src, flags&decodeStream == 0, flags&decodeFatal != 0)
	if err != nil {
		stack[0] = api.EncodeI32(-1)
		return
	}
	reply := make([]byte, 4, 4+len(text))
	binary.LittleEndian.PutUint32(reply, next)
	st.reply = append(reply, text...)
	stack[0] = uint64(len(st.reply))
}
