// The language built-ins the engine (QuickJS with engine/quickjs-upstream.patch)
// lacks that a library can give, from core-js (pinned in package-lock.json):
// engine/build.sh bundles this file with esbuild and the shim evaluates the
// bundle before the prelude, once, before the snapshot. Only what is missing
// is imported; core-js installs each one only where the engine has none.
// docs/javascript.md has the measurements ("Why upstream QuickJS, and no
// core-js module?").
//
// None at this revision: upstream QuickJS has the ES2025 and ES2026 library
// built-ins natively (Iterator helpers and Iterator.concat, the Set methods,
// Promise.try, RegExp.escape, Float16Array, Error.isError, Math.sumPrecise,
// Uint8Array base64/hex, the Map/WeakMap upsert methods), and the prelude
// adds Array.fromAsync (93 of test262's 93 where core-js's passed 85, and a
// 64 KiB page less in every instance).

// core-js keeps its shared state in a global; its modules hold it
// already, so the worker does not see it
delete globalThis['__core-js_shared__'];
