// Package leash is the guest side of leash's host ABI for Go programs
// built with GOOS=wasip1 GOARCH=wasm: it wraps the host functions of the
// import module "leash" (docs/guest-abi.md). On other platforms the
// functions fall back to stderr so that guests can be tested natively.
package leash

import "fmt"

// Level is a log level.
type Level int32

// Log levels, as the ABI numbers them.
const (
	Debug Level = 0
	Info  Level = 1
	Warn  Level = 2
	Error Level = 3
)

// ABIVersion is the host ABI version the node speaks (2 today: 2 added the session KV).
func ABIVersion() int { return int(abiVersion()) }

// Log sends one log line to the task's logs. Lines count against the
// profile's log_bytes; past it they are dropped.
func Log(level Level, msg string) error {
	if rc := logLine(level, msg); rc != 0 {
		return fmt.Errorf("leash.log refused the line (code %d)", rc)
	}
	return nil
}

// Logf formats and logs at Info.
func Logf(format string, args ...any) { _ = Log(Info, fmt.Sprintf(format, args...)) }
