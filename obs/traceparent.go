// The request's own traceparent, carried in ctx whether tracing is on
// or off: every log line of a request names it.

package obs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// ParseTraceparent returns a valid W3C traceparent from the client, or a
// new one. Only version 00 is accepted; all-zero ids are invalid.
func ParseTraceparent(h string) string {
	if validTraceparent(h) {
		return strings.ToLower(h)
	}
	return newTraceparent()
}

func validTraceparent(h string) bool {
	// 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>
	if len(h) != 55 || h[2] != '-' || h[35] != '-' || h[52] != '-' || h[:2] != "00" {
		return false
	}
	for _, part := range []string{h[3:35], h[36:52], h[53:]} {
		if _, err := hex.DecodeString(part); err != nil {
			return false
		}
		if strings.Trim(part, "0") == "" && len(part) > 2 {
			return false
		}
	}
	return true
}

func newTraceparent() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01"
}

type traceKey struct{}

// WithRequestTraceparent puts a request's traceparent in ctx (the API does it
// for every request, the bulk worker for every attempt).
func WithRequestTraceparent(ctx context.Context, tp string) context.Context {
	return context.WithValue(ctx, traceKey{}, tp)
}

// RequestTraceparent returns the traceparent WithRequestTraceparent put
// in ctx, or "".
func RequestTraceparent(ctx context.Context) string {
	tp, _ := ctx.Value(traceKey{}).(string)
	return tp
}
