package sandbox

// Module is a compiled guest, cached by the digest of its bytes.
type Module struct {
	Digest string // "sha256:<hex>" of the module bytes (wasm, or JS source)
	Kind   Kind
	Size   int
	// compiled is set for KindWASI; source for KindJS.
	compiled any
	source   []byte

	// refs counts runs using compiled; an evicted module's code is
	// released when the last one ends. Guarded by Runtime.mu.
	refs    int
	evicted bool
	closed  bool
}
