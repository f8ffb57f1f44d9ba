// The language built-ins the engine (QuickJS with engine/quickjs-upstream.patch)
// lacks that a library can give, from core-js (pinned in package-lock.json):
// engine/build.sh bundles this file with esbuild and the shim evaluates the
// bundle before the prelude, once, before the snapshot. Only what is missing
// is imported; core-js installs each one only where the engine has none.
// docs/javascript.md has the table and the cost ("Why core-js in the
// snapshot?"). The upstream engine has the rest natively (Iterator helpers
// and Iterator.concat, the Set methods, Promise.try, RegExp.escape,
// Float16Array, Error.isError, Math.sumPrecise, Uint8Array base64/hex, the
// Map/WeakMap upsert methods).
// ES2026
import 'core-js/modules/es.array.from-async.js';

// core-js keeps its shared state in a global; its modules hold it
// already, so the worker does not see it
delete globalThis['__core-js_shared__'];
