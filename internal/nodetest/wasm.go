package nodetest

import "encoding/binary"

// WithCustomSection appends a custom section named "padding" holding
// content to a wasm module: a valid module, as large as wanted, that
// compiles as fast as the original (tests and benchmarks of big uploads).
func WithCustomSection(wasm, content []byte) []byte {
	name := []byte("padding")
	body := binary.AppendUvarint(nil, uint64(len(name)))
	body = append(append(body, name...), content...)
	out := append([]byte{}, wasm...)
	out = append(out, 0)
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...)
}
