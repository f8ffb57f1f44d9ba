package sandbox

// The engine's fuel counter: a hard CPU, wall and cancellation bound for
// code the interrupt handler never sees.
//
// QuickJS polls its interrupt handler from the bytecode interpreter (and
// in regexp backtracking) only: a built-in that loops in C over
// user-sized data (TypedArray.prototype.sort, Array.prototype.indexOf,
// JSON.stringify, String.prototype.repeat, BigInt multiplication, ...)
// never asks. Worse, compiled wasm is no safe point for Go's scheduler:
// while such a loop runs, a garbage collection that must stop the world
// waits for it, and every goroutine of the node waits with it.
//
// So the snapshot module is rewritten: a new mutable i32 global (exported
// as leash_fuel) is decremented at the entry of every function and at the
// head of every loop; when it reaches zero the code calls the engine's own
// import leash.interrupt (a Go function: a safe point, and the host's
// answer to "must the task stop?"), traps (unreachable) on a nonzero
// answer, and refills the counter. The check is a load, a branch, a
// subtraction and a store; wazero's WithCloseOnContextDone calls a Go
// trampoline at every loop head instead, which costs several times more
// (docs/javascript.md, "Why a fuel counter in the engine's code?").
//
// One instruction is never split by a check, and memory.copy and
// memory.fill can move many MiB: each becomes a call of an added helper
// that does a large one in jsBulkChunk pieces, with the same checks.

import (
	"errors"
	"fmt"
)

// jsFuelExport names the counter's export; jsFuel is how many checks
// pass between two calls of leash.interrupt.
const (
	jsFuelExport = "leash_fuel"
	jsFuel       = 10000
)

// Wasm section id of the code section.
const wasmSecCode = 10

// fuelCheck is the instruction sequence inserted, for the counter global
// and the interrupt function:
//
//	if (fuel == 0) { if (interrupt()) unreachable; fuel = jsFuel } else fuel--
func fuelCheck(global, interrupt uint32) []byte {
	g := appendU32(nil, global)
	b := append([]byte{0x23}, g...)         // global.get fuel
	b = append(b, 0x45, 0x04, 0x40, 0x10)   // i32.eqz; if; call
	b = appendU32(b, interrupt)             // interrupt
	b = append(b, 0x04, 0x40, 0x00, 0x0b)   // if unreachable end
	b = append(b, 0x41)                     // i32.const
	b = appendS64(b, jsFuel)                // jsFuel
	b = append(append(b, 0x24), g...)       // global.set fuel
	b = append(append(b, 0x05, 0x23), g...) // else global.get fuel
	b = append(b, 0x41, 0x01, 0x6b, 0x24)   // i32.const 1; i32.sub; global.set
	return append(append(b, g...), 0x0b)    // fuel end
}

// bulkCalls are the helper functions that replace memory.copy and
// memory.fill: one bulk instruction over many MiB is never split by a
// check, so the helpers do large ones in checked chunks of jsBulkChunk.
type bulkCalls struct{ copy, fill uint32 }

const jsBulkChunk = 1 << 20

// bulkHelpers returns the bodies (with their size) of the copy and fill
// helpers, of type (i32 dst, i32 src|value, i32 n) -> (), instrumented
// with check. Out-of-range arguments trap before anything is written, as
// the instructions do.
func bulkHelpers(check []byte) [][]byte {
	c := appendS64([]byte{0x41}, jsBulkChunk) // i32.const jsBulkChunk
	get := func(i byte) []byte { return []byte{0x20, i} }
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	memCopy, memFill := []byte{0xfc, 0x0a, 0x00, 0x00}, []byte{0xfc, 0x0b, 0x00}
	small := func(op []byte) []byte { // if n <= chunk: op(d, x, n); return
		return cat(get(2), c, []byte{0x4d, 0x04, 0x40}, get(0), get(1), get(2), op, []byte{0x0f, 0x0b})
	}
	wrap := func(i byte) []byte { // if (p + n < p) unreachable
		return cat(get(i), get(2), []byte{0x6a}, get(i), []byte{0x49, 0x04, 0x40, 0x00, 0x0b})
	}
	advance := func(i byte) []byte { return cat(get(i), c, []byte{0x6a, 0x21, i}) }
	// n -= chunk; br_if (n > chunk)
	step := cat(get(2), c, []byte{0x6b, 0x22, 0x02}, c, []byte{0x4b, 0x0d, 0x00})
	loop := func(body []byte) []byte { return cat([]byte{0x03, 0x40}, check, body, []byte{0x0b}) }
	copyBody := cat([]byte{0x00}, check, small(memCopy), wrap(0), wrap(1),
		// a copy of nothing at the ends traps if either range is out
		get(0), get(2), []byte{0x6a}, get(1), get(2), []byte{0x6a, 0x41, 0x00}, memCopy,
		get(0), get(1), []byte{0x4d, 0x04, 0x40}, // if d <= s: forward
		loop(cat(get(0), get(1), c, memCopy, advance(0), advance(1), step)),
		get(0), get(1), get(2), memCopy,
		[]byte{0x05}, // else backward, top chunk first
		loop(cat(get(2), c, []byte{0x6b, 0x21, 0x02},
			get(0), get(2), []byte{0x6a}, get(1), get(2), []byte{0x6a}, c, memCopy,
			get(2), c, []byte{0x4b, 0x0d, 0x00})),
		get(0), get(1), get(2), memCopy,
		[]byte{0x0b, 0x0b})
	fillBody := cat([]byte{0x00}, check, small(memFill), wrap(0),
		get(0), get(2), []byte{0x6a}, get(1), []byte{0x41, 0x00}, memFill,
		loop(cat(get(0), get(1), c, memFill, advance(0), step)),
		get(0), get(1), get(2), memFill,
		[]byte{0x0b})
	return [][]byte{copyBody, fillBody}
}

// instrumentCode returns the code section body with check inserted at
// the entry of every function and at the head of every loop; with bulk,
// memory.copy and memory.fill become calls of its helpers, which are
// appended.
func instrumentCode(body []byte, check []byte, bulk ...bulkCalls) ([]byte, error) {
	r := &wasmReader{b: body}
	n := r.u32()
	var helpers [][]byte
	var calls *bulkCalls
	if len(bulk) > 0 {
		calls = &bulk[0]
		helpers = bulkHelpers(check)
	}
	out := appendU32(make([]byte, 0, len(body)+len(body)/8), n+uint32(len(helpers)))
	var fn []byte
	for i := uint32(0); i < n && r.err == nil; i++ {
		size := r.u32()
		code := r.bytes(int(size))
		if r.err != nil {
			break
		}
		var err error
		fn, err = instrumentFunction(fn[:0], code, check, calls)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.off != len(body) {
		return nil, errors.New("trailing bytes after the code section")
	}
	for _, h := range helpers {
		out = appendU32(out, uint32(len(h)))
		out = append(out, h...)
	}
	return out, nil
}

func instrumentFunction(out, code, check []byte, calls *bulkCalls) ([]byte, error) {
	r := &wasmReader{b: code}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		r.u32()  // count
		r.byte() // value type
	}
	if r.err != nil {
		return nil, r.err
	}
	out = append(out, code[:r.off]...)
	out = append(out, check...)
	last := r.off
	depth := 1 // the function body's own block
	for depth > 0 {
		if r.err != nil {
			return nil, r.err
		}
		if r.off >= len(code) {
			return nil, errors.New("function body ends inside a block")
		}
		pos := r.off
		op := r.byte()
		switch {
		case op == 0x02 || op == 0x04: // block, if
			r.sleb()
			depth++
		case op == 0x03: // loop
			r.sleb()
			depth++
			out = append(out, code[last:r.off]...)
			out = append(out, check...)
			last = r.off
		case op == 0x0b: // end
			depth--
		case op == 0x00, op == 0x01, op == 0x05, op == 0x0f, op == 0x1a, op == 0x1b, op == 0xd1:
			// unreachable, nop, else, return, drop, select, ref.is_null
		case op == 0x0c || op == 0x0d: // br, br_if
			r.u32()
		case op == 0x0e: // br_table
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				r.u32()
			}
			r.u32()
		case op == 0x10 || op == 0x12: // call, return_call
			r.u32()
		case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
			r.u32()
			r.u32()
		case op == 0x1c: // select t*
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				r.byte()
			}
		case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
			r.u32()
		case op >= 0x28 && op <= 0x3e: // loads and stores: memarg
			r.u32()
			r.u32()
		case op == 0x3f || op == 0x40: // memory.size, memory.grow
			r.byte()
		case op == 0x41 || op == 0x42: // i32.const, i64.const
			r.sleb()
		case op == 0x43:
			r.bytes(4)
		case op == 0x44:
			r.bytes(8)
		case op >= 0x45 && op <= 0xc4: // numeric, sign extension
		case op == 0xd0: // ref.null
			r.byte()
		case op == 0xd2: // ref.func
			r.u32()
		case op == 0xfc:
			switch sub := r.u32(); {
			case sub <= 7: // saturating truncation
			case sub == 8: // memory.init
				r.u32()
				r.byte()
			case sub == 9, sub == 13, sub == 15, sub == 16, sub == 17: // data.drop, elem.drop, table.grow/size/fill
				r.u32()
			case sub == 10: // memory.copy
				if r.byte() != 0 || r.byte() != 0 {
					return nil, errors.New("memory.copy of another memory")
				}
				if calls != nil {
					out = append(out, code[last:pos]...)
					out = appendU32(append(out, 0x10), calls.copy)
					last = r.off
				}
			case sub == 11: // memory.fill
				if r.byte() != 0 {
					return nil, errors.New("memory.fill of another memory")
				}
				if calls != nil {
					out = append(out, code[last:pos]...)
					out = appendU32(append(out, 0x10), calls.fill)
					last = r.off
				}
			case sub == 12, sub == 14: // table.init, table.copy
				r.u32()
				r.u32()
			default:
				return nil, fmt.Errorf("unsupported instruction 0xfc %d", sub)
			}
		default:
			return nil, fmt.Errorf("unsupported instruction 0x%02x at %d", op, r.off-1)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.off != len(code) {
		return nil, errors.New("bytes after the function body's end")
	}
	return append(out, code[last:]...), nil
}
