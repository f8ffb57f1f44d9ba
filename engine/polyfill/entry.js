// The language built-ins QuickJS 2025-04-26 lacks that a library can give,
// from core-js (pinned in package-lock.json): engine/build.sh bundles this
// file with esbuild and the shim evaluates the bundle before the prelude,
// once, before the snapshot. Only what is missing is imported; core-js
// installs each one only where the engine has none. docs/javascript.md
// has the table and the cost ("Why core-js in the snapshot?").
// ES2025
import 'core-js/modules/es.iterator.constructor.js';
import 'core-js/modules/es.iterator.from.js';
import 'core-js/modules/es.iterator.drop.js';
import 'core-js/modules/es.iterator.every.js';
import 'core-js/modules/es.iterator.filter.js';
import 'core-js/modules/es.iterator.find.js';
import 'core-js/modules/es.iterator.flat-map.js';
import 'core-js/modules/es.iterator.for-each.js';
import 'core-js/modules/es.iterator.map.js';
import 'core-js/modules/es.iterator.reduce.js';
import 'core-js/modules/es.iterator.some.js';
import 'core-js/modules/es.iterator.take.js';
import 'core-js/modules/es.iterator.to-array.js';
import 'core-js/modules/es.set.difference.v2.js';
import 'core-js/modules/es.set.intersection.v2.js';
import 'core-js/modules/es.set.is-disjoint-from.v2.js';
import 'core-js/modules/es.set.is-subset-of.v2.js';
import 'core-js/modules/es.set.is-superset-of.v2.js';
import 'core-js/modules/es.set.symmetric-difference.v2.js';
import 'core-js/modules/es.set.union.v2.js';
import 'core-js/modules/es.promise.try.js';
import 'core-js/modules/es.regexp.escape.js';
import 'core-js/modules/es.math.f16round.js';
import 'core-js/modules/es.data-view.get-float16.js';
import 'core-js/modules/es.data-view.set-float16.js';
// ES2026
import 'core-js/modules/es.array.from-async.js';
import 'core-js/modules/es.error.is-error.js';
import 'core-js/modules/es.math.sum-precise.js';
import 'core-js/modules/es.iterator.concat.js';
import 'core-js/modules/es.uint8-array.from-base64.js';
import 'core-js/modules/es.uint8-array.from-hex.js';
import 'core-js/modules/es.uint8-array.set-from-base64.js';
import 'core-js/modules/es.uint8-array.set-from-hex.js';
import 'core-js/modules/es.uint8-array.to-base64.js';
import 'core-js/modules/es.uint8-array.to-hex.js';
import 'core-js/modules/es.map.get-or-insert.js';
import 'core-js/modules/es.map.get-or-insert-computed.js';
import 'core-js/modules/es.weak-map.get-or-insert.js';
import 'core-js/modules/es.weak-map.get-or-insert-computed.js';

// core-js keeps its shared state in a global; its modules hold it
// already, so the worker does not see it
delete globalThis['__core-js_shared__'];
