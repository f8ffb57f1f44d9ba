package sandbox

// The JS engine's snapshot, as Wizer makes one: run the engine's
// initialisation once (QuickJS runtime and context, the prelude), then
// capture its linear memory and globals and build a module that starts in
// that state. The module's globals get the captured values as their
// initialisers and its data segments are dropped; the captured memory is
// handed to each new instance by the memory allocator (see jscow_linux.go),
// copy-on-write, so an instance costs the pages it writes.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Wasm section ids.
const (
	wasmSecCustom    = 0
	wasmSecType      = 1
	wasmSecImport    = 2
	wasmSecFunction  = 3
	wasmSecMemory    = 5
	wasmSecGlobal    = 6
	wasmSecExport    = 7
	wasmSecData      = 11
	wasmSecDataCount = 12
)

var wasmHeader = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}

type wasmSection struct {
	id   byte
	body []byte
}

// wasmGlobal is one global defined by the module (not imported).
type wasmGlobal struct {
	valType byte // 0x7f i32, 0x7e i64, 0x7d f32, 0x7c f64
	mutable bool
	init    []byte // the init expression, with its end opcode
}

type wasmModule struct {
	sections        []wasmSection
	importedGlobals uint32
	globals         []wasmGlobal
	// funcImports are the imported functions' "module.name", in index
	// order; types and funcs count the types and the defined functions.
	funcImports []string
	types       uint32
	funcs       uint32
	hasMemory   bool
}

func parseWasm(b []byte) (*wasmModule, error) {
	if !bytes.HasPrefix(b, wasmHeader) {
		return nil, errors.New("not a wasm module")
	}
	m := &wasmModule{}
	r := &wasmReader{b: b, off: len(wasmHeader)}
	for r.off < len(r.b) {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, r.err
		}
		m.sections = append(m.sections, wasmSection{id: id, body: body})
		switch id {
		case wasmSecImport:
			if err := m.parseImports(body); err != nil {
				return nil, err
			}
		case wasmSecGlobal:
			if err := m.parseGlobals(body); err != nil {
				return nil, err
			}
		case wasmSecMemory:
			m.hasMemory = true
		case wasmSecType, wasmSecFunction:
			br := &wasmReader{b: body}
			n := br.u32()
			if br.err != nil {
				return nil, br.err
			}
			if id == wasmSecType {
				m.types = n
			} else {
				m.funcs = n
			}
		}
	}
	return m, nil
}

func (m *wasmModule) parseImports(body []byte) error {
	r := &wasmReader{b: body}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		mod := r.bytes(int(r.u32()))
		name := r.bytes(int(r.u32()))
		switch kind := r.byte(); kind {
		case 0: // func
			r.u32()
			m.funcImports = append(m.funcImports, string(mod)+"."+string(name))
		case 1: // table
			r.byte()
			r.limits()
		case 2: // memory
			r.limits()
		case 3: // global
			r.byte()
			r.byte()
			m.importedGlobals++
		default:
			return fmt.Errorf("import kind %d", kind)
		}
	}
	return r.err
}

func (m *wasmModule) parseGlobals(body []byte) error {
	r := &wasmReader{b: body}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		g := wasmGlobal{valType: r.byte(), mutable: r.byte() == 1}
		start := r.off
		if err := r.skipConstExpr(); err != nil {
			return err
		}
		g.init = body[start:r.off]
		m.globals = append(m.globals, g)
	}
	return r.err
}

// withGlobalExports returns the module with every defined global exported
// as "__leash_global_<i>", so the captured values can be read.
func (m *wasmModule) withGlobalExports() []byte {
	var out bytes.Buffer
	out.Write(wasmHeader)
	added := false
	addExports := func(existing []byte) []byte {
		var count uint32
		var rest []byte
		if existing != nil {
			r := &wasmReader{b: existing}
			count = r.u32()
			rest = existing[r.off:]
		}
		var b []byte
		b = appendU32(b, count+uint32(len(m.globals)))
		b = append(b, rest...)
		for i := range m.globals {
			name := fmt.Sprintf("__leash_global_%d", i)
			b = appendU32(b, uint32(len(name)))
			b = append(b, name...)
			b = append(b, 3)
			b = appendU32(b, m.importedGlobals+uint32(i))
		}
		return b
	}
	for _, s := range m.sections {
		body := s.body
		if s.id == wasmSecExport {
			body = addExports(body)
			added = true
		}
		if !added && s.id > wasmSecExport && s.id != wasmSecCustom && s.id != wasmSecDataCount {
			writeSection(&out, wasmSecExport, addExports(nil))
			added = true
		}
		writeSection(&out, s.id, body)
	}
	if !added {
		writeSection(&out, wasmSecExport, addExports(nil))
	}
	return out.Bytes()
}

// snapshotModule returns the module that starts where the capture left
// off: minimum memory of pages, mutable globals initialised to values
// (raw bits, as api.Global returns them), no data segments, no custom
// sections; and the fuel counter (jsstop.go): a new mutable global
// exported as leash_fuel, counted down at every function entry and loop
// head when stopChecks is set (the module must then import
// leash.interrupt).
func (m *wasmModule) snapshotModule(pages uint32, values []uint64, stopChecks bool) ([]byte, error) {
	if len(values) != len(m.globals) {
		return nil, fmt.Errorf("have %d global values for %d globals", len(values), len(m.globals))
	}
	fuel := m.importedGlobals + uint32(len(m.globals))
	interrupt := slices.Index(m.funcImports, HostModule+".interrupt")
	if stopChecks && interrupt < 0 {
		return nil, errors.New("the engine does not import leash.interrupt")
	}
	// With a memory, large memory.copy and memory.fill go through checked
	// helpers (jsstop.go); they need a type and a function section.
	bulk := stopChecks && m.hasMemory && m.types > 0 && m.funcs > 0
	var out bytes.Buffer
	out.Write(wasmHeader)
	sawCode, sawExport, sawGlobal := false, false, false
	for _, s := range m.sections {
		switch s.id {
		case wasmSecCustom, wasmSecData:
			continue
		case wasmSecType:
			body := s.body
			if bulk { // the bulk helpers' type: (i32, i32, i32) -> ()
				r := &wasmReader{b: body}
				n := r.u32()
				if r.err != nil {
					return nil, r.err
				}
				body = append(append(appendU32(nil, n+1), body[r.off:]...), 0x60, 3, 0x7f, 0x7f, 0x7f, 0)
			}
			writeSection(&out, s.id, body)
		case wasmSecFunction:
			body := s.body
			if bulk {
				r := &wasmReader{b: body}
				n := r.u32()
				if r.err != nil {
					return nil, r.err
				}
				body = append(appendU32(nil, n+2), body[r.off:]...)
				body = appendU32(appendU32(body, m.types), m.types)
			}
			writeSection(&out, s.id, body)
		case wasmSecCode:
			body := s.body
			if stopChecks {
				var err error
				var calls []bulkCalls
				if bulk {
					first := uint32(len(m.funcImports)) + m.funcs
					calls = append(calls, bulkCalls{copy: first, fill: first + 1})
				}
				if body, err = instrumentCode(s.body, fuelCheck(fuel, uint32(interrupt)), calls...); err != nil {
					return nil, fmt.Errorf("instrument the code: %w", err)
				}
			}
			writeSection(&out, s.id, body)
			sawCode = true
		case wasmSecExport:
			r := &wasmReader{b: s.body}
			count := r.u32()
			if r.err != nil {
				return nil, r.err
			}
			b := appendU32(nil, count+1)
			b = append(b, s.body[r.off:]...)
			b = appendU32(b, uint32(len(jsFuelExport)))
			b = append(b, jsFuelExport...)
			b = append(b, 3)
			b = appendU32(b, fuel)
			writeSection(&out, s.id, b)
			sawExport = true
		case wasmSecDataCount:
			writeSection(&out, s.id, appendU32(nil, 0))
		case wasmSecMemory:
			r := &wasmReader{b: s.body}
			if n := r.u32(); n != 1 {
				return nil, fmt.Errorf("module defines %d memories, want 1", n)
			}
			flags := r.byte()
			r.u32() // old min
			var b []byte
			b = appendU32(b, 1)
			b = append(b, flags)
			b = appendU32(b, pages)
			if flags&1 != 0 {
				maxPages := r.u32()
				if maxPages < pages {
					return nil, fmt.Errorf("snapshot memory of %d pages over the module's maximum %d", pages, maxPages)
				}
				b = appendU32(b, maxPages)
			}
			if r.err != nil {
				return nil, r.err
			}
			writeSection(&out, s.id, b)
		case wasmSecGlobal:
			sawGlobal = true
			var b []byte
			b = appendU32(b, uint32(len(m.globals))+1)
			for i, g := range m.globals {
				b = append(b, g.valType)
				if !g.mutable {
					b = append(b, 0)
					b = append(b, g.init...)
					continue
				}
				b = append(b, 1)
				v := values[i]
				switch g.valType {
				case 0x7f:
					b = append(b, 0x41)
					b = appendS64(b, int64(int32(uint32(v))))
				case 0x7e:
					b = append(b, 0x42)
					b = appendS64(b, int64(v))
				case 0x7d:
					b = append(b, 0x43)
					b = binary.LittleEndian.AppendUint32(b, uint32(v))
				case 0x7c:
					b = append(b, 0x44)
					b = binary.LittleEndian.AppendUint64(b, v)
				default:
					return nil, fmt.Errorf("mutable global %d of type 0x%x cannot be captured", i, g.valType)
				}
				b = append(b, 0x0b)
			}
			b = append(b, 0x7f, 1, 0x41) // the fuel counter: mutable i32 jsFuel
			b = appendS64(b, jsFuel)
			b = append(b, 0x0b)
			writeSection(&out, s.id, b)
		default:
			writeSection(&out, s.id, s.body)
		}
	}
	if !sawCode || !sawExport || !sawGlobal {
		return nil, errors.New("the engine has no code, export or global section")
	}
	return out.Bytes(), nil
}

func writeSection(w *bytes.Buffer, id byte, body []byte) {
	w.WriteByte(id)
	w.Write(appendU32(nil, uint32(len(body))))
	w.Write(body)
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

type wasmReader struct {
	b   []byte
	off int
	err error
}

func (r *wasmReader) fail(msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("malformed wasm at %d: %s", r.off, msg)
	}
}

func (r *wasmReader) byte() byte {
	if r.err != nil || r.off >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *wasmReader) bytes(n int) []byte {
	if r.err != nil || n < 0 || r.off+n > len(r.b) {
		r.fail("unexpected end")
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *wasmReader) u32() uint32 {
	var v uint64
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > math.MaxUint32 {
				r.fail("u32 overflow")
			}
			return uint32(v)
		}
	}
	r.fail("u32 too long")
	return 0
}

func (r *wasmReader) sleb() {
	for i := 0; i < 10; i++ {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	r.fail("sleb too long")
}

func (r *wasmReader) limits() {
	flags := r.byte()
	r.u32()
	if flags&1 != 0 {
		r.u32()
	}
}

// skipConstExpr reads a constant expression through its end opcode.
func (r *wasmReader) skipConstExpr() error {
	for r.err == nil {
		switch op := r.byte(); op {
		case 0x0b:
			return nil
		case 0x41, 0x42: // i32.const, i64.const
			r.sleb()
		case 0x43:
			r.bytes(4)
		case 0x44:
			r.bytes(8)
		case 0x23, 0xd2: // global.get, ref.func
			r.u32()
		case 0xd0: // ref.null
			r.byte()
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended const arithmetic
		default:
			return fmt.Errorf("unsupported opcode 0x%x in a constant expression", op)
		}
	}
	return r.err
}
