package sandbox

// Host calls of the JS engine for the web APIs Go does better than the
// prelude: the WHATWG URL setters (the parser weburl wraps) and the WHATWG
// Encoding Standard's decoders (webencoding's, golang.org/x/text/encoding/
// htmlindex's for EUC-KR).

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/nlnwa/whatwg-url/url"
	"github.com/tetratelabs/wazero/api"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/transform"

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
	decodeStream     = 2 // more input follows: keep an incomplete tail
	decodeNameOnly   = 4 // resolve the label only; the reply is the name
	decodeStateShift = 8
)

// jsMaxDecode bounds one legacy decode call's input: the host's output
// buffer is up to three bytes per input byte.
const jsMaxDecode = 16 << 20

// encodingFor resolves a label as the Encoding Standard's "get an
// encoding": ASCII whitespace trimmed, ASCII case-insensitive, every
// label is ASCII. The replacement encoding is no TextDecoder's.
func encodingFor(label string) (encoding.Encoding, string, bool) {
	label = strings.Trim(label, "\t\n\f\r ")
	if label == "" || len(label) > 64 {
		return nil, "", false
	}
	for i := 0; i < len(label); i++ {
		if c := label[i]; c >= utf8.RuneSelf || c <= ' ' {
			return nil, "", false
		}
	}
	enc, err := htmlindex.Get(strings.ToLower(label))
	if err != nil {
		return nil, "", false
	}
	name, err := htmlindex.Name(enc)
	if err != nil || name == "replacement" {
		return nil, "", false
	}
	return enc, name, true
}

// errDecode is a fatal decoder's invalid input.
var errDecode = errors.New("invalid input")

// decodeLegacy decodes src; when stream, an incomplete sequence at the
// end is left unconsumed. The result is UTF-8 and the bytes consumed.
func decodeLegacy(enc encoding.Encoding, src []byte, fatal, stream bool) ([]byte, int, error) {
	t := enc.NewDecoder()
	out := make([]byte, 0, len(src)+16)
	dst := make([]byte, 4096)
	pos := 0
	for {
		nDst, nSrc, err := t.Transform(dst, src[pos:], !stream)
		out = append(out, dst[:nDst]...)
		pos += nSrc
		switch {
		case errors.Is(err, transform.ErrShortDst):
			if nDst == 0 && nSrc == 0 {
				dst = make([]byte, 2*len(dst))
			}
			continue
		case errors.Is(err, transform.ErrShortSrc) && stream:
		case err != nil:
			return nil, 0, err
		}
		break
	}
	if fatal && strings.ContainsRune(string(out), utf8.RuneError) {
		return nil, 0, errDecode
	}
	return out, pos, nil
}

// decodeChunk decodes one call's input: with webencoding's decoder, which
// consumes it all and returns the state for the next call, or with
// x/text's, which leaves an incomplete tail unconsumed and has no state.
func decodeChunk(enc encoding.Encoding, name string, state uint32, src []byte, fatal, stream bool) ([]byte, int, uint32, error) {
	if webencoding.Has(name) {
		text, next, err := webencoding.Decode(name, state, src, !stream, fatal)
		return text, len(src), next, err
	}
	if state != 0 {
		return nil, 0, 0, webencoding.ErrState
	}
	text, n, err := decodeLegacy(enc, src, fatal, stream)
	return text, n, 0, err
}

// jsDecode: decode(label, llen, in, ilen, flags) -> reply length, or -1
// (an unknown label, a bad state, or invalid input when fatal), or -2
// (input too large). The reply is the canonical name (decodeNameOnly), or
// 4 bytes of the count of input bytes consumed and 4 of the decoder's
// state (both little-endian), then the UTF-8 text.
func jsDecode(ctx context.Context, mod api.Module, stack []uint64) {
	st := jsTaskFrom(ctx)
	label, ok := readString(mod, uint32(stack[0]), uint32(stack[1]))
	flags := uint32(stack[4])
	if st == nil || !ok {
		stack[0] = api.EncodeI32(-1)
		return
	}
	enc, name, ok := encodingFor(label)
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
	text, n, next, err := decodeChunk(enc, name, flags>>decodeStateShift, src, flags&decodeFatal != 0, flags&decodeStream != 0)
	if err != nil {
		stack[0] = api.EncodeI32(-1)
		return
	}
	reply := make([]byte, 8, 8+len(text))
	binary.LittleEndian.PutUint32(reply, uint32(n))
	binary.LittleEndian.PutUint32(reply[4:], next)
	st.reply = append(reply, text...)
	stack[0] = uint64(len(st.reply))
}
