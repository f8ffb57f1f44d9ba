// Command warm loads the JS engine once, so that its snapshot and compiled
// code are cached beside it; `make engine` runs it after building
// engine.wasm. Usage: go run ./engine/warm build/engine/engine.wasm
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/leash-dev/leash/sandbox"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: warm ENGINE_WASM")
		return 2
	}
	start := time.Now()
	if err := sandbox.PrepareJSEngine(context.Background(), args[0]); err != nil {
		fmt.Fprintf(stderr, "warm: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "engine: snapshot and compiled code cached beside %s (%v)\n", args[0], time.Since(start).Round(time.Millisecond))
	return 0
}
