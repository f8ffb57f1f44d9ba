// Package image carries the JS engine inside the leash binary. `make build`
// copies the engine `make engine` built (build/engine/engine.wasm) into
// data/ before it compiles the binary, so bin/leash runs JavaScript from any
// working directory; a binary built without it (plain `go build`) carries
// none, and the node refuses JavaScript tasks with js_engine_unavailable
// unless --engine names an engine file.
package image

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed all:data
var data embed.FS

// name is the engine's file in data/.
const name = "data/engine.wasm"

// Engine returns the engine the binary carries, or nil when it has none.
func Engine() []byte {
	b, err := data.ReadFile(name)
	if err != nil {
		return nil
	}
	return b
}

// Install writes the carried engine into dir as engine-<hash>.wasm (once:
// an existing file with that name is kept, since the name is its content
// hash) and returns its path. The JS engine caches its snapshot and
// compiled code beside that file, so dir is where they live too. It returns
// fs.ErrNotExist when the binary carries no engine.
func Install(dir string) (string, error) {
	b := Engine()
	if b == nil {
		return "", fmt.Errorf("this binary carries no JS engine: %w", fs.ErrNotExist)
	}
	sum := sha256.Sum256(b)
	path := filepath.Join(dir, "engine-"+hex.EncodeToString(sum[:8])+".wasm")
	if have, err := os.ReadFile(path); err == nil && sha256.Sum256(have) == sum {
		return path, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read installed engine: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("install engine: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".engine-*.wasm")
	if err != nil {
		return "", fmt.Errorf("install engine: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install engine: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("install engine: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("install engine: %w", err)
	}
	return path, nil
}
