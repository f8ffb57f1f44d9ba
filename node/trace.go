package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// traceparent returns a valid W3C traceparent from the client, or a new
// one. Only version 00 is accepted; all-zero ids are invalid.
func traceparent(h string) string {
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

func withTrace(ctx context.Context, tp string) context.Context {
	return context.WithValue(ctx, traceKey{}, tp)
}

// traceFrom returns the request's traceparent.
func traceFrom(ctx context.Context) string {
	tp, _ := ctx.Value(traceKey{}).(string)
	return tp
}
