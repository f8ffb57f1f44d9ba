//go:build !wasip1

package leash

import (
	"fmt"
	"os"
)

func abiVersion() int32 { return 0 }

func logLine(level Level, msg string) int32 {
	fmt.Fprintf(os.Stderr, "[%d] %s\n", level, msg)
	return 0
}

// Outside wasip1 there is no gateway: every fetch is refused.
func hostFetch(req []byte) int32               { return -2 }
func hostResponseMeta(h int32, b []byte) int32 { return -4 }
func hostResponseRead(h int32, b []byte) int32 { return -4 }
func hostResponseClose(h int32)                {}
func hostLastError(b []byte) int32 {
	msg := []byte(`{"clause":"profile.default_deny","message":"no leash host outside wasip1"}`)
	if len(b) < len(msg) {
		return -int32(len(msg))
	}
	return int32(copy(b, msg))
}
