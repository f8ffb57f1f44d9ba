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
