// leash JS prelude: the Workers module API and the WinterTC minimum common
// API on top of QuickJS. Evaluated once, before the snapshot; the shim calls
// this function with the host object (natives in engine/shim.c) and keeps
// the hooks it returns. Nothing here is reachable by the worker except the
// globals it installs.
(function (host) {
  'use strict';

  const G = globalThis;
  // The intrinsics the prelude calls, captured before any worker runs: a
  // worker that deletes or replaces a built-in (Array.prototype.includes,
  // Promise.resolve, Object.prototype.then, an accessor on
  // Array.prototype) does not change what the dispatch, Headers, bodies
  // and the response path do. Names shadow the globals on purpose.
  const Object = G.Object, Array = G.Array, String = G.String, Number = G.Number, Promise = G.Promise;
  const Map = G.Map, Set = G.Set, Symbol = G.Symbol, Reflect = G.Reflect, RegExp = G.RegExp;
  const Uint8Array = G.Uint8Array, ArrayBuffer = G.ArrayBuffer, Error = G.Error;
  const TypeError = G.TypeError, RangeError = G.RangeError;
  const ReflectApply = Reflect.apply, ReflectOwnKeys = Reflect.ownKeys;
  const ReflectGetOwnPropertyDescriptor = Reflect.getOwnPropertyDescriptor;
  const ObjectDefineProperty = Object.defineProperty, ObjectKeys = Object.keys, ObjectFreeze = Object.freeze;
  const ObjectGetPrototypeOf = Object.getPrototypeOf, ObjectSetPrototypeOf = Object.setPrototypeOf;
  const ObjectEntries = Object.entries, ObjectHasOwn = Object.hasOwn, ObjectIs = Object.is;
  const ArrayIsArray = Array.isArray, ArrayFrom = Array.from, ArrayBufferIsView = ArrayBuffer.isView;
  const NumberIsInteger = Number.isInteger, MathMax = G.Math.max, MathMin = G.Math.min, MathCeil = G.Math.ceil, MathFloor = G.Math.floor;
  const StringFromCharCode = String.fromCharCode;
  const uncurry = f => (self, ...args) => ReflectApply(f, self, args);
  const getter = (proto, name) => uncurry(ReflectGetOwnPropertyDescriptor(proto, name).get);
  const promiseThen = uncurry(Promise.prototype.then);
  const PromiseResolve = Promise.resolve, PromiseReject = Promise.reject;
  const resolved = v => ReflectApply(PromiseResolve, Promise, [v]);
  const rejectedWith = e => ReflectApply(PromiseReject, Promise, [e]);
  const mapGet = uncurry(Map.prototype.get), mapSet = uncurry(Map.prototype.set), mapHas = uncurry(Map.prototype.has);
  const mapDelete = uncurry(Map.prototype.delete), mapForEach = uncurry(Map.prototype.forEach);
  const mapSize = getter(Map.prototype, 'size'), mapClear = uncurry(Map.prototype.clear);
  const setAdd = uncurry(Set.prototype.add), setHas = uncurry(Set.prototype.has), setDelete = uncurry(Set.prototype.delete);
  const setForEach = uncurry(Set.prototype.forEach), setSize = getter(Set.prototype, 'size');
  const arraySort = uncurry(Array.prototype.sort), arrayJoin = uncurry(Array.prototype.join);
  const stringSlice = uncurry(String.prototype.slice), stringToLowerCase = uncurry(String.prototype.toLowerCase);
  const stringToWellFormed = uncurry(String.prototype.toWellFormed), stringCharCodeAt = uncurry(String.prototype.charCodeAt);
  const stringIndexOf = uncurry(String.prototype.indexOf), stringToUpperCase = uncurry(String.prototype.toUpperCase);
  const regExpExec = uncurry(RegExp.prototype.exec);
  const reTest = (re, s) => { re.lastIndex = 0; return regExpExec(re, s) !== null; };
  const TypedArrayPrototype = ObjectGetPrototypeOf(Uint8Array.prototype);
  const taSet = uncurry(TypedArrayPrototype.set), taByteLength = getter(TypedArrayPrototype, 'byteLength');
  const taByteOffset = getter(TypedArrayPrototype, 'byteOffset'), taBuffer = getter(TypedArrayPrototype, 'buffer');
  const taLength = getter(TypedArrayPrototype, 'length');
  const abByteLength = getter(ArrayBuffer.prototype, 'byteLength'), abTransfer = uncurry(ArrayBuffer.prototype.transfer);
  const sabByteLength = getter(G.SharedArrayBuffer.prototype, 'byteLength');
  const dvByteLength = getter(G.DataView.prototype, 'byteLength'), dvByteOffset = getter(G.DataView.prototype, 'byteOffset');
  const dvBuffer = getter(G.DataView.prototype, 'buffer');
  const IteratorPrototype = ObjectGetPrototypeOf(ObjectGetPrototypeOf([][Symbol.iterator]()));
  // push(a, v) defines the element: an accessor a worker put on
  // Array.prototype is never called
  const push = (a, v) => { ObjectDefineProperty(a, a.length, { __proto__: null, value: v, writable: true, enumerable: true, configurable: true }); };
  const has = (list, v) => { for (let i = 0; i < list.length; i++) if (list[i] === v) return true; return false; };
  const hostLog = host.log, hostNow = host.now, hostRandom = host.random;
  const hostDigest = host.digest, hostURL = host.urlParse, hostURLSet = host.urlSet, hostFetch = host.fetch;
  const hostRespond = host.respond, hostFail = host.fail, hostDecode = host.decode, hostDetach = host.detach;
  const utf8Encode = host.utf8Encode, utf8Decode = host.utf8Decode, hostKV = host.kv;
  const JSONparse = G.JSON.parse, JSONstringify = G.JSON.stringify;
  const internal = Symbol('leash.internal');
  const noInit = ObjectFreeze({ __proto__: null });
  // set by the classes' static blocks: brand checks and private state,
  // not reachable by the worker
  let searchPairs, formPairs, sortedHeaders, isStream, isRequest, requestHeaders, responseHeaders, bodyHeaders, isSignal;

  function defineGlobal(name, value) {
    Object.defineProperty(G, name, { value, writable: true, configurable: true, enumerable: false });
  }
  function tag(cls, name) {
    Object.defineProperty(cls.prototype, Symbol.toStringTag, { value: name, configurable: true });
  }
  function isArrayBuffer(v) {
    try { abByteLength(v); return true; } catch { return false; }
  }
  function isSharedArrayBuffer(v) {
    try { sabByteLength(v); return true; } catch { return false; }
  }
  function isBufferSource(v) {
    return isArrayBuffer(v) || ArrayBufferIsView(v);
  }
  // WebIDL's AllowSharedBufferSource (TextDecoder's input): a
  // SharedArrayBuffer too
  function isSharedBufferSource(v) {
    return isBufferSource(v) || isSharedArrayBuffer(v);
  }
  // viewBytes(v): a Uint8Array over v's bytes (no copy), through the
  // captured accessors
  function viewBytes(v) {
    if (isArrayBuffer(v)) return new Uint8Array(v);
    if (ArrayBufferIsView(v)) {
      let buf, off, len;
      try { buf = taBuffer(v); off = taByteOffset(v); len = taByteLength(v); } catch {
        buf = dvBuffer(v); off = dvByteOffset(v); len = dvByteLength(v);
      }
      return new Uint8Array(buf, off, len);
    }
    throw new TypeError('not a BufferSource');
  }
  function copyBytes(b) { // a copy of a Uint8Array
    const out = new Uint8Array(taLength(b));
    taSet(out, b);
    return out;
  }
  function toBytes(v) { return copyBytes(viewBytes(v)); } // a copy as Uint8Array
  function concatBytes(chunks) {
    let n = 0;
    for (let i = 0; i < chunks.length; i++) n += taByteLength(chunks[i]);
    const out = new Uint8Array(n);
    let o = 0;
    for (let i = 0; i < chunks.length; i++) { taSet(out, chunks[i], o); o += taByteLength(chunks[i]); }
    return out;
  }
  // a FIFO for the prelude's own queues (no Array.prototype method)
  class Queue {
    #items = []; #head = 0;
    get length() { return this.#items.length - this.#head; }
    push(v) { push(this.#items, v); }
    unshift(v) {
      if (this.#head > 0) { this.#items[--this.#head] = v; return; }
      const items = [v];
      for (let i = 0; i < this.#items.length; i++) push(items, this.#items[i]);
      this.#items = items;
    }
    shift() {
      const v = this.#items[this.#head];
      this.#items[this.#head++] = undefined;
      if (this.#head > 64 && this.#head * 2 > this.#items.length) { this.#items = this.toArray(); this.#head = 0; }
      return v;
    }
    toArray() { const out = []; for (let i = this.#head; i < this.#items.length; i++) push(out, this.#items[i]); return out; }
    clear() { const out = this.toArray(); this.#items = []; this.#head = 0; return out; }
  }
  function encode(s) { return new Uint8Array(utf8Encode(stringToWellFormed(String(s)))); }
  function decode(b) { return utf8Decode(b, false); }

  // ---- DOMException, Event, EventTarget, AbortController ----

  const domCodes = {
    IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4, InvalidCharacterError: 5,
    NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9, InvalidStateError: 11,
    SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14, InvalidAccessError: 15,
    TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20, URLMismatchError: 21,
    QuotaExceededError: 22, TimeoutError: 23, InvalidNodeTypeError: 24, DataCloneError: 25,
  };
  class DOMException extends Error {
    #name; #code;
    constructor(message = '', name = 'Error') {
      super(message);
      this.#name = String(name);
      this.#code = domCodes[this.#name] || 0;
    }
    get name() { return this.#name; }
    get code() { return this.#code; }
  }
  tag(DOMException, 'DOMException');
  for (const [k, v] of Object.entries(domCodes)) {
    const c = k.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase().replace(/_ERROR$/, '_ERR');
    Object.defineProperty(DOMException, c, { value: v, enumerable: true });
  }

  // Event and EventTarget as the DOM standard has them for a target with
  // no parent: capture listeners run first, then the others; passive
  // listeners cannot cancel; a listener removed during a dispatch is not
  // called; the flags reset when the dispatch ends.
  let eventInternals; // e -> {set target, phase, stop flags, passive}
  class Event {
    #type; #bubbles = false; #cancelable = false; #composed = false; #canceled = false;
    #target = null; #currentTarget = null; #phase = 0; #stop = false; #stopImmediate = false;
    #dispatching = false; #initialized = true; #inPassive = false; #timeStamp; #trusted = false;
    static {
      eventInternals = {
        begin(e, target) { e.#dispatching = true; e.#target = target; },
        at(e, target, phase) { e.#currentTarget = target; e.#phase = phase; },
        end(e) { e.#dispatching = false; e.#currentTarget = null; e.#phase = 0; e.#stop = false; e.#stopImmediate = false; },
        dispatching: e => e.#dispatching,
        initialized: e => e.#initialized,
        stopped: e => e.#stop,
        immediate: e => e.#stopImmediate,
        passive(e, on) { e.#inPassive = on; },
        canceled: e => e.#canceled,
        is: e => e !== null && typeof e === 'object' && #type in e,
        type: e => e.#type,
        trusted(e) { e.#trusted = true; return e; },
      };
    }
    constructor(type, init = undefined) {
      if (arguments.length === 0) throw new TypeError("Failed to construct 'Event': 1 argument required, but only 0 present.");
      this.#type = String(type);
      if (init !== undefined && init !== null) {
        if (typeof init !== 'object' && typeof init !== 'function') throw new TypeError("Failed to construct 'Event': The provided value is not of type 'EventInit'.");
        this.#bubbles = !!init.bubbles;
        this.#cancelable = !!init.cancelable;
        this.#composed = !!init.composed;
      }
      this.#timeStamp = performanceNow();
    }
    get type() { return this.#type; }
    get target() { return this.#target; }
    get srcElement() { return this.#target; }
    get currentTarget() { return this.#currentTarget; }
    get eventPhase() { return this.#phase; }
    get bubbles() { return this.#bubbles; }
    get cancelable() { return this.#cancelable; }
    get composed() { return this.#composed; }
    get defaultPrevented() { return this.#canceled; }
    get returnValue() { return !this.#canceled; }
    set returnValue(v) { if (!v && this.#cancelable && !this.#inPassive) this.#canceled = true; }
    get cancelBubble() { return this.#stop; }
    set cancelBubble(v) { if (v) this.#stop = true; }
    get isTrusted() { return this.#trusted; }
    get timeStamp() { return this.#timeStamp; }
    composedPath() { return this.#dispatching && this.#currentTarget ? [this.#currentTarget] : []; }
    preventDefault() { if (this.#cancelable && !this.#inPassive) this.#canceled = true; }
    stopImmediatePropagation() { this.#stop = true; this.#stopImmediate = true; }
    stopPropagation() { this.#stop = true; }
    initEvent(type, bubbles = false, cancelable = false) {
      if (arguments.length === 0) throw new TypeError("Failed to execute 'initEvent' on 'Event': 1 argument required, but only 0 present.");
      if (this.#dispatching) return;
      this.#initialized = true;
      this.#stop = false; this.#stopImmediate = false; this.#canceled = false;
      this.#target = null;
      this.#type = String(type);
      this.#bubbles = !!bubbles;
      this.#cancelable = !!cancelable;
    }
  }
  for (const [k, v] of [['NONE', 0], ['CAPTURING_PHASE', 1], ['AT_TARGET', 2], ['BUBBLING_PHASE', 3]]) {
    ObjectDefineProperty(Event, k, { value: v, enumerable: true });
    ObjectDefineProperty(Event.prototype, k, { value: v, enumerable: true });
  }
  tag(Event, 'Event');

  class CustomEvent extends Event {
    #detail = null;
    constructor(type, init = undefined) {
      if (arguments.length === 0) throw new TypeError("Failed to construct 'CustomEvent': 1 argument required, but only 0 present.");
      super(type, init);
      if (init !== undefined && init !== null && init.detail !== undefined) this.#detail = init.detail;
    }
    get detail() { return this.#detail; }
    initCustomEvent(type, bubbles = false, cancelable = false, detail = null) {
      if (arguments.length === 0) throw new TypeError("Failed to execute 'initCustomEvent' on 'CustomEvent': 1 argument required, but only 0 present.");
      if (eventInternals.dispatching(this)) return;
      this.initEvent(type, bubbles, cancelable);
      this.#detail = detail;
    }
  }
  tag(CustomEvent, 'CustomEvent');

  // the options of addEventListener/removeEventListener
  function listenerOptions(options, method) {
    const o = { __proto__: null, capture: false, once: false, passive: false, signal: undefined };
    if (typeof options === 'boolean') o.capture = options;
    else if (options !== null && (typeof options === 'object' || typeof options === 'function')) {
      o.capture = !!options.capture;
      if (method === 'add') {
        o.once = !!options.once;
        o.passive = !!options.passive;
        const signal = options.signal;
        if (signal !== undefined && !isSignal(signal)) {
          throw new TypeError("Failed to execute 'addEventListener' on 'EventTarget': Failed to read the 'signal' property from 'AddEventListenerOptions': member signal is not of type AbortSignal.");
        }
        o.signal = signal;
      }
    }
    return o;
  }
  class EventTarget {
    // type -> [capture listeners, other listeners], each a Map(callback ->
    // entry) in the order they were added: one lookup per add or remove
    #listeners = new Map();
    addEventListener(type, listener, options = undefined) {
      if (arguments.length < 2) throw new TypeError(`Failed to execute 'addEventListener' on 'EventTarget': 2 arguments required, but only ${arguments.length} present.`);
      const o = listenerOptions(options, 'add');
      if (listener === null || listener === undefined) return;
      if (typeof listener !== 'function' && typeof listener !== 'object') throw new TypeError("Failed to execute 'addEventListener' on 'EventTarget': parameter 2 is not of type 'Object'.");
      type = String(type);
      if (o.signal !== undefined && o.signal.aborted) return;
      let lists = mapGet(this.#listeners, type);
      if (!lists) mapSet(this.#listeners, type, lists = [new Map(), new Map()]);
      const list = lists[o.capture ? 0 : 1];
      if (mapHas(list, listener)) return;
      mapSet(list, listener, { __proto__: null, listener, once: o.once, passive: o.passive, removed: false });
      if (o.signal !== undefined) {
        const capture = o.capture;
        signalAlgorithm(o.signal, () => this.#remove(type, listener, capture));
      }
    }
    removeEventListener(type, listener, options = undefined) {
      if (arguments.length < 2) throw new TypeError(`Failed to execute 'removeEventListener' on 'EventTarget': 2 arguments required, but only ${arguments.length} present.`);
      const o = listenerOptions(options, 'remove');
      this.#remove(String(type), listener, o.capture);
    }
    #remove(type, listener, capture) {
      const lists = mapGet(this.#listeners, type);
      const list = lists && lists[capture ? 0 : 1];
      const entry = list && mapGet(list, listener);
      if (!entry) return;
      entry.removed = true;
      mapDelete(list, listener);
    }
    #invoke(event, type, list, capture) {
      // the listeners as this phase starts; one removed meanwhile is not
      // called (DOM "inner invoke")
      const entries = [];
      mapForEach(list, e => push(entries, e));
      eventInternals.at(event, this, 2); // AT_TARGET: a target with no parent
      for (let i = 0; i < entries.length; i++) {
        const l = entries[i];
        if (l.removed) continue;
        if (l.once) this.#remove(type, l.listener, capture);
        try {
          if (l.passive) eventInternals.passive(event, true);
          if (typeof l.listener === 'function') ReflectApply(l.listener, this, [event]);
          else {
            const h = l.listener.handleEvent;
            if (typeof h !== 'function') throw new TypeError("'handleEvent' property of event listener should be callable");
            ReflectApply(h, l.listener, [event]);
          }
        } catch (e) {
          reportError(e);
        } finally {
          eventInternals.passive(event, false);
        }
        if (eventInternals.immediate(event)) return;
      }
    }
    dispatchEvent(event) {
      if (arguments.length === 0) throw new TypeError("Failed to execute 'dispatchEvent' on 'EventTarget': 1 argument required, but only 0 present.");
      if (!eventInternals.is(event)) throw new TypeError("Failed to execute 'dispatchEvent' on 'EventTarget': parameter 1 is not of type 'Event'.");
      if (eventInternals.dispatching(event) || !eventInternals.initialized(event)) {
        throw new DOMException("Failed to execute 'dispatchEvent' on 'EventTarget': The event is already being dispatched.", 'InvalidStateError');
      }
      eventInternals.begin(event, this);
      try {
        const type = eventInternals.type(event);
        const lists = mapGet(this.#listeners, type);
        if (lists) {
          if (!eventInternals.stopped(event)) this.#invoke(event, type, lists[0], true);
          if (!eventInternals.stopped(event)) this.#invoke(event, type, lists[1], false);
        }
      } finally {
        eventInternals.end(event);
      }
      return !eventInternals.canceled(event);
    }
  }
  tag(EventTarget, 'EventTarget');

  // AbortSignal as the DOM standard orders it: "signal abort" sets the
  // reason on the signal and on its dependent signals (AbortSignal.any)
  // first, then runs the signal's abort algorithms (fetch's) and fires
  // its abort event, then does the same for each dependent. onabort is an
  // event handler: a listener in the list from the moment it is first set.
  let signalAlgorithm; // (signal, fn): an abort algorithm, not reachable by the worker
  class AbortSignal extends EventTarget {
    #aborted = false; #reason; #algorithms = []; #dependents = []; #sources = null;
    #onabort = null; #handler = null;
    static {
      signalAlgorithm = (s, fn) => { push(s.#algorithms, fn); };
      isSignal = s => s !== null && typeof s === 'object' && #aborted in s;
    }
    constructor(key) {
      if (key !== internal) throw new TypeError('Illegal constructor');
      super();
    }
    get aborted() { return this.#aborted; }
    get reason() { return this.#reason; }
    get onabort() { return this.#onabort; }
    set onabort(v) {
      this.#onabort = typeof v === 'function' || (v !== null && typeof v === 'object') ? v : null;
      if (this.#onabort === null) {
        if (this.#handler) { this.removeEventListener('abort', this.#handler); this.#handler = null; }
      } else if (!this.#handler) {
        this.#handler = e => { const h = this.#onabort; if (typeof h === 'function') h.call(this, e); };
        this.addEventListener('abort', this.#handler);
      }
    }
    throwIfAborted() { if (this.#aborted) throw this.#reason; }
    #steps() {
      const algorithms = this.#algorithms;
      this.#algorithms = [];
      for (const fn of algorithms) {
        try { fn(); } catch (e) { reportError(e); }
      }
      this.dispatchEvent(eventInternals.trusted(new Event('abort'))); // fired by the platform: trusted
    }
    [internal](reason) {
      if (this.#aborted) return;
      this.#aborted = true;
      this.#reason = reason === undefined ? new DOMException('The operation was aborted', 'AbortError') : reason;
      const toAbort = [];
      for (const d of this.#dependents) {
        if (!d.#aborted) { d.#aborted = true; d.#reason = this.#reason; push(toAbort, d); }
      }
      this.#dependents = [];
      this.#steps();
      for (const d of toAbort) d.#steps();
    }
    static abort(reason) {
      const s = new AbortSignal(internal);
      s[internal](reason);
      return s;
    }
    static timeout(ms) {
      const s = new AbortSignal(internal);
      setTimeout(() => s[internal](new DOMException('The operation timed out.', 'TimeoutError')), ms);
      return s;
    }
    static any(signals) {
      const s = new AbortSignal(internal);
      const list = [...signals];
      for (const x of list) {
        if (!isSignal(x)) throw new TypeError("Failed to execute 'any' on 'AbortSignal': parameter 1 is not of type 'AbortSignal'.");
      }
      for (const x of list) {
        if (x.#aborted) { s.#aborted = true; s.#reason = x.#reason; return s; }
      }
      s.#sources = new Set();
      for (const x of list) {
        for (const src of x.#sources || [x]) s.#sources.add(src);
      }
      for (const src of s.#sources) push(src.#dependents, s);
      return s;
    }
  }
  tag(AbortSignal, 'AbortSignal');

  class AbortController {
    #signal = new AbortSignal(internal);
    get signal() { return this.#signal; }
    abort(reason) { this.#signal[internal](reason); }
  }
  tag(AbortController, 'AbortController');

  // ---- timers, microtasks, performance ----

  let timeOrigin = hostNow();
  function performanceNow() { return hostNow() - timeOrigin; }
  const timers = new Map(); // id -> {due, fn, args, interval}
  let nextTimerId = 1;
  // As in workerd, the module's top level may not do I/O, set timers or
  // draw random values: those belong to a request.
  let inRequest = false;
  function checkScope() {
    if (!inRequest) {
      throw new Error('Disallowed operation called within global scope. Asynchronous I/O (ex: fetch() or connect()), setting a timeout, and generating random values are not allowed within global scope. To fix this error, perform this operation within a handler.');
    }
  }
  function addTimer(fn, ms, args, repeat) {
    checkScope();
    if (typeof fn !== 'function') {
      throw new TypeError("The first argument to setTimeout() must be a function");
    }
    ms = Number(ms);
    if (!(ms >= 0)) ms = 0;
    const id = nextTimerId++;
    mapSet(timers, id, { __proto__: null, due: hostNow() + ms, seq: id, fn, args, interval: repeat ? MathMax(ms, 1) : 0 });
    return id;
  }
  function setTimeout(fn, ms, ...args) { return addTimer(fn, ms, args, false); }
  function setInterval(fn, ms, ...args) { return addTimer(fn, ms, args, true); }
  function clearTimeout(id) { mapDelete(timers, Number(id)); }
  function queueMicrotask(fn) {
    if (typeof fn !== 'function') throw new TypeError("The argument to queueMicrotask() must be a function");
    promiseThen(resolved(), () => { try { fn(); } catch (e) { reportError(e); } });
  }
  function reportError(e) {
    hostLog(4, 'Uncaught ' + describeError(e));
  }

  // ---- console ----

  function inspect(v, depth, seen) {
    switch (typeof v) {
      case 'string': return depth === 0 ? v : "'" + v.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n') + "'";
      case 'number': return Object.is(v, -0) ? '-0' : String(v);
      case 'bigint': return v + 'n';
      case 'symbol': return v.toString();
      case 'undefined': return 'undefined';
      case 'boolean': return String(v);
      case 'function': {
        const n = v.name;
        const kind = /^class\b/.test(Function.prototype.toString.call(v)) ? 'class' : 'Function';
        return n ? `[${kind}: ${n}]` : `[${kind} (anonymous)]`;
      }
    }
    if (v === null) return 'null';
    if (seen.includes(v)) return '[Circular *1]';
    if (v instanceof Error) return v.stack ? describeError(v) : String(v);
    if (v instanceof Date) return isNaN(v) ? 'Invalid Date' : v.toISOString();
    if (v instanceof RegExp) return String(v);
    if (depth > 2) return Array.isArray(v) ? '[Array]' : '[Object]';
    seen = seen.concat([v]);
    const d = depth + 1;
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      const parts = v.slice(0, 100).map(x => inspect(x, d, seen));
      if (v.length > 100) push(parts, `... ${v.length - 100} more items`);
      return '[ ' + parts.join(', ') + ' ]';
    }
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
      const parts = Array.from(v.slice(0, 100), x => inspect(x, d, seen));
      if (v.length > 100) push(parts, `... ${v.length - 100} more items`);
      return `${v.constructor.name}(${v.length}) [ ${parts.join(', ')} ]`;
    }
    if (v instanceof ArrayBuffer) {
      const hex = Array.from(new Uint8Array(v, 0, Math.min(v.byteLength, 50)), b => b.toString(16).padStart(2, '0')).join(' ');
      return `ArrayBuffer { [Uint8Contents]: <${hex}${v.byteLength > 50 ? ' ...' : ''}>, byteLength: ${v.byteLength} }`;
    }
    if (v instanceof Map) {
      if (v.size === 0) return 'Map(0) {}';
      return `Map(${v.size}) { ` + Array.from(v, ([k, x]) => inspect(k, d, seen) + ' => ' + inspect(x, d, seen)).join(', ') + ' }';
    }
    if (v instanceof Set) {
      if (v.size === 0) return 'Set(0) {}';
      return `Set(${v.size}) { ` + Array.from(v, x => inspect(x, d, seen)).join(', ') + ' }';
    }
    if (v instanceof Promise) return 'Promise {}';
    const proto = Object.getPrototypeOf(v);
    let prefix = '';
    if (proto === null) prefix = '[Object: null prototype] ';
    else if (proto !== Object.prototype && proto.constructor && proto.constructor.name) prefix = proto.constructor.name + ' ';
    const keys = Object.keys(v);
    if (keys.length === 0) return prefix + '{}';
    const parts = keys.map(k => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : inspect(k, 1, seen)) + ': ' + inspect(v[k], d, seen));
    return prefix + '{ ' + parts.join(', ') + ' }';
  }
  function format(args) {
    let out = '';
    let i = 0;
    if (typeof args[0] === 'string' && args.length > 1 && args[0].includes('%')) {
      i = 1;
      out = args[0].replace(/%[sdifjoOc%]/g, m => {
        if (m === '%%') return '%';
        if (i >= args.length) return m;
        const a = args[i++];
        switch (m) {
          case '%s': return typeof a === 'string' ? a : inspect(a, 1, []);
          case '%d': case '%i': return typeof a === 'bigint' ? a + 'n' : String(m === '%i' ? parseInt(a) : Number(a));
          case '%f': return String(parseFloat(a));
          case '%j': try { return JSONstringify(a); } catch { return '[Circular]'; }
          case '%c': return '';
          default: return inspect(a, 1, []);
        }
      });
    } else if (args.length > 0) {
      out = inspect(args[0], 0, []);
      i = 1;
    }
    for (; i < args.length; i++) out += ' ' + inspect(args[i], 0, []);
    return out;
  }
  const counts = new Map(), clocks = new Map();
  let groupIndent = '';
  const logAt = level => (...args) => hostLog(level, groupIndent + format(args));
  const console = {
    debug: logAt(0), log: logAt(1), info: logAt(2), warn: logAt(3), error: logAt(4),
    trace: (...args) => hostLog(0, groupIndent + 'Trace: ' + format(args) + '\n' + (new Error().stack || '')),
    dir: (v) => hostLog(1, groupIndent + inspect(v, 1, [])),
    table: logAt(1),
    assert: (cond, ...args) => { if (!cond) hostLog(4, groupIndent + 'Assertion failed' + (args.length ? ': ' + format(args) : '')); },
    count: (label = 'default') => { const n = (counts.get(label) || 0) + 1; counts.set(label, n); hostLog(1, `${groupIndent}${label}: ${n}`); },
    countReset: (label = 'default') => { counts.delete(label); },
    time: (label = 'default') => { clocks.set(label, performanceNow()); },
    timeLog: (label = 'default', ...args) => { const t = clocks.get(label); if (t !== undefined) hostLog(1, `${groupIndent}${label}: ${(performanceNow() - t).toFixed(3)}ms${args.length ? ' ' + format(args) : ''}`); },
    timeEnd: (label = 'default') => { const t = clocks.get(label); if (t !== undefined) { clocks.delete(label); hostLog(1, `${groupIndent}${label}: ${(performanceNow() - t).toFixed(3)}ms`); } },
    group: (...args) => { if (args.length) hostLog(1, groupIndent + format(args)); groupIndent += '  '; },
    groupCollapsed: (...args) => { if (args.length) hostLog(1, groupIndent + format(args)); groupIndent += '  '; },
    groupEnd: () => { groupIndent = groupIndent.slice(2); },
  };

  // An error's text as the host shows and keeps it: name, message and
  // stack, each cut at maxErrorPart characters (the host cuts the whole
  // at its own bound too), so a huge message costs no copy of it.
  const maxErrorPart = 8192;
  function cut(v) {
    const s = String(v);
    return s.length > maxErrorPart ? stringSlice(s, 0, maxErrorPart) + `… [truncated ${s.length - maxErrorPart} characters]` : s;
  }
  function describeError(e) {
    try {
      if (e instanceof Error || (e && typeof e === 'object' && 'message' in e && 'name' in e)) {
        let s = `${cut(e.name)}: ${cut(e.message)}`;
        const st = e.stack;
        if (typeof st === 'string' && st) {
          let c = cut(st);
          if (c.length && stringCharCodeAt(c, c.length - 1) === 10) c = stringSlice(c, 0, c.length - 1);
          s += '\n' + c;
        }
        return s;
      }
      return cut(inspect(e, 1, []));
    } catch {
      return 'exception';
    }
  }

  // ---- encoding ----

  class TextEncoder {
    get encoding() { return 'utf-8'; }
    encode(input = '') { return encode(input); }
    encodeInto(source, dest) {
      if (!(dest instanceof Uint8Array)) throw new TypeError('The "dest" argument must be a Uint8Array');
      source = String(source).toWellFormed();
      let read = 0, written = 0;
      for (const ch of source) {
        const b = encode(ch);
        if (written + b.length > dest.length) break;
        dest.set(b, written);
        written += b.length;
        read += ch.length;
      }
      return { read, written };
    }
  }
  tag(TextEncoder, 'TextEncoder');

  // TextDecoder: the Encoding Standard's labels and decoders. UTF-8 is
  // decoded by the shim, UTF-16 here, every legacy encoding by the host
  // (sandbox/jsweb.go: webencoding's decoders).
  const decodeFatal = 1, decodeStream = 2, decodeNameOnly = 4;
  class TextDecoder {
    #enc; #fatal; #ignoreBOM; #pending = null; #bomSeen = false; #state = 0;
    constructor(label = 'utf-8', options = undefined) {
      const name = hostDecode(String(label), null, decodeNameOnly);
      if (name === null) throw new RangeError(`Failed to construct 'TextDecoder': The encoding label provided ('${String(label)}') is invalid.`);
      this.#enc = name;
      if (options !== undefined && options !== null) {
        if (typeof options !== 'object' && typeof options !== 'function') throw new TypeError("Failed to construct 'TextDecoder': The provided value is not of type 'TextDecoderOptions'.");
        this.#fatal = !!options.fatal;
        this.#ignoreBOM = !!options.ignoreBOM;
      } else {
        this.#fatal = false;
        this.#ignoreBOM = false;
      }
    }
    get encoding() { return this.#enc; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    #bom(s, stream) {
      if (!this.#ignoreBOM && !this.#bomSeen && s.length) {
        this.#bomSeen = true;
        if (stringCharCodeAt(s, 0) === 0xfeff) s = stringSlice(s, 1);
      }
      if (!stream) this.#bomSeen = false;
      return s;
    }
    #invalid() { return new TypeError(`Failed to execute 'decode' on 'TextDecoder': The encoded data was not valid for encoding ${this.#enc}`); }
    decode(input = undefined, options = undefined) {
      const stream = options !== undefined && options !== null && !!options.stream;
      let bytes;
      if (input === undefined || input === null) bytes = new Uint8Array(0);
      else if (isBufferSource(input)) bytes = viewBytes(input);
      else if (isSharedArrayBuffer(input)) bytes = new Uint8Array(input);
      else throw new TypeError("Failed to execute 'decode' on 'TextDecoder': parameter 1 is not of type 'ArrayBuffer or ArrayBufferView'.");
      if (this.#pending) { bytes = concatBytes([this.#pending, bytes]); this.#pending = null; }
      const n = taLength(bytes);
      const enc = this.#enc;
      if (enc === 'utf-16le' || enc === 'utf-16be') {
        const be = enc === 'utf-16be';
        let end = n - (n % 2);
        // a lead surrogate at the end waits for its trail
        if (stream && end >= 2) {
          const last = be ? (bytes[end - 2] << 8) | bytes[end - 1] : bytes[end - 2] | (bytes[end - 1] << 8);
          if (last >= 0xd800 && last <= 0xdbff) end -= 2;
        }
        if (stream && end < n) this.#pending = copyBytes(new Uint8Array(taBuffer(bytes), taByteOffset(bytes) + end, n - end));
        let s = '', chunk = [];
        for (let i = 0; i + 1 < end; i += 2) {
          push(chunk, be ? (bytes[i] << 8) | bytes[i + 1] : bytes[i] | (bytes[i + 1] << 8));
          if (chunk.length === 8192) { s += ReflectApply(StringFromCharCode, null, chunk); chunk = []; }
        }
        s += ReflectApply(StringFromCharCode, null, chunk);
        if (!stream && n % 2) s += '\ufffd';
        const w = stringToWellFormed(s);
        if (this.#fatal && (w !== s || (!stream && n % 2))) { this.#bomSeen = false; throw this.#invalid(); }
        return this.#bom(w, stream);
      }
      if (enc === 'utf-8') {
        if (stream) {
          // keep an incomplete trailing sequence for the next call
          let i = n - 1, k = 0;
          while (i >= 0 && k < 3 && (bytes[i] & 0xc0) === 0x80) { i--; k++; }
          if (i >= 0) {
            const b = bytes[i];
            const need = b >= 0xf0 && b <= 0xf4 ? 4 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xc2 && b < 0xe0 ? 2 : 1;
            if (need > 1 && n - i < need && validPrefix(bytes, i, n)) {
              this.#pending = copyBytes(new Uint8Array(taBuffer(bytes), taByteOffset(bytes) + i, n - i));
              bytes = new Uint8Array(taBuffer(bytes), taByteOffset(bytes), i);
            }
          }
        }
        const s = utf8Decode(bytes, this.#fatal);
        if (s === null) { this.#pending = null; this.#bomSeen = false; throw this.#invalid(); }
        return this.#bom(s, stream);
      }
      // the host keeps no decoder between calls: each call consumes its
      // input and returns the decoder's state, which the next call passes
      // back; calls of at most 256 KiB, so that none runs long past the
      // task's CPU limit (host calls are not interrupted)
      const parts = [], fatal = this.#fatal ? decodeFatal : 0;
      let state = this.#state, off = 0;
      this.#state = 0;
      do {
        const len = MathMin(n - off, 262144), last = off + len === n;
        const r = hostDecode(enc, new Uint8Array(taBuffer(bytes), taByteOffset(bytes) + off, len), fatal | (last && !stream ? 0 : decodeStream) | (state << 8));
        if (r === null) throw this.#invalid();
        push(parts, r[0]);
        state = r[1];
        off += len;
      } while (off < n);
      if (stream) this.#state = state;
      return parts.length === 1 ? parts[0] : arrayJoin(parts, '');
    }
  }
  // validPrefix: bytes[i..n) can still begin a valid UTF-8 sequence
  function validPrefix(bytes, i, n) {
    const b = bytes[i];
    if (n - i < 2) return true;
    const c = bytes[i + 1];
    if (b === 0xe0 && c < 0xa0) return false;
    if (b === 0xed && c > 0x9f) return false;
    if (b === 0xf0 && c < 0x90) return false;
    if (b === 0xf4 && c > 0x8f) return false;
    return true;
  }
  tag(TextDecoder, 'TextDecoder');

  const b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const b64rev = new Int16Array(128).fill(-1);
  for (let i = 0; i < 64; i++) b64rev[b64.charCodeAt(i)] = i;
  function btoa(s) {
    if (arguments.length === 0) throw new TypeError("Failed to execute 'btoa': 1 argument required, but only 0 present.");
    s = String(s);
    let out = '';
    for (let i = 0; i < s.length; i += 3) {
      const a = s.charCodeAt(i), b = s.charCodeAt(i + 1), c = s.charCodeAt(i + 2);
      if (a > 255 || b > 255 || c > 255) throw new DOMException('Invalid character', 'InvalidCharacterError');
      const n = (a << 16) | ((b || 0) << 8) | (c || 0);
      out += b64[n >> 18] + b64[(n >> 12) & 63] + (i + 1 < s.length ? b64[(n >> 6) & 63] : '=') + (i + 2 < s.length ? b64[n & 63] : '=');
    }
    return out;
  }
  function atob(s) {
    if (arguments.length === 0) throw new TypeError("Failed to execute 'atob': 1 argument required, but only 0 present.");
    s = String(s).replace(/[\t\n\f\r ]/g, '');
    if (s.length % 4 === 0) s = s.replace(/==?$/, '');
    if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) {
      throw new DOMException('The string to be decoded is not correctly encoded.', 'InvalidCharacterError');
    }
    let out = '', buf = 0, bits = 0;
    for (let i = 0; i < s.length; i++) {
      buf = (buf << 6) | b64rev[s.charCodeAt(i)];
      bits += 6;
      if (bits >= 8) { bits -= 8; out += String.fromCharCode((buf >> bits) & 255); }
    }
    return out;
  }

  // ---- structuredClone ----

  function structuredClone(value, options) {
    if (arguments.length === 0) throw new TypeError("Failed to execute 'structuredClone': 1 argument required, but only 0 present.");
    const memo = new Map();
    const fail = v => { throw new DOMException(`${typeof v === 'function' ? (v.name || 'function') + '() {}' : String(v)} could not be cloned.`, 'DataCloneError'); };
    function clone(v) {
      if (typeof v === 'symbol' || typeof v === 'function') fail(v);
      if (v === null || typeof v !== 'object') return v;
      if (memo.has(v)) return memo.get(v);
      let out;
      if (Array.isArray(v)) {
        out = new Array(v.length);
        memo.set(v, out);
        for (const k of Object.keys(v)) out[k] = clone(v[k]);
        return out;
      }
      if (v instanceof Date) out = new Date(v.getTime());
      else if (v instanceof RegExp) out = new RegExp(v.source, v.flags);
      else if (v instanceof ArrayBuffer) out = v.slice(0);
      else if (ArrayBuffer.isView(v)) {
        const buf = clone(v.buffer);
        out = v instanceof DataView ? new DataView(buf, v.byteOffset, v.byteLength) : new v.constructor(buf, v.byteOffset, v.length);
      } else if (v instanceof Map) {
        out = new Map();
        memo.set(v, out);
        for (const [k, x] of v) out.set(clone(k), clone(x));
        return out;
      } else if (v instanceof Set) {
        out = new Set();
        memo.set(v, out);
        for (const x of v) out.add(clone(x));
        return out;
      } else if (v instanceof Error) {
        const ctors = { EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };
        const C = ctors[v.name] || Error;
        out = new C(v.message);
        if (typeof v.stack === 'string') Object.defineProperty(out, 'stack', { value: v.stack, writable: true, configurable: true });
        if ('cause' in v) out.cause = clone(v.cause);
      } else if (v instanceof Boolean) out = new Boolean(v.valueOf());
      else if (v instanceof Number) out = new Number(v.valueOf());
      else if (v instanceof String) out = new String(v.valueOf());
      else if (v instanceof BigInt) out = Object(v.valueOf());
      else if (v instanceof Blob) out = v.slice(0, v.size, v.type);
      else if (v instanceof Promise || v instanceof WeakMap || v instanceof WeakSet || v instanceof WeakRef || v instanceof Request || v instanceof Response || v instanceof ReadableStream) fail(v);
      else {
        out = {};
        memo.set(v, out);
        for (const k of Object.keys(v)) out[k] = clone(v[k]);
        return out;
      }
      memo.set(v, out);
      return out;
    }
    // transfer: ArrayBuffers only (there are no ports or streams to
    // transfer between tasks); each moves into the clone, the original is
    // detached once the clone is made
    const moved = [];
    if (options !== undefined && options !== null && options.transfer !== undefined) {
      for (const b of options.transfer) {
        if (!isArrayBuffer(b)) throw new DOMException('Value not transferable', 'DataCloneError');
        if (has(moved, b)) throw new DOMException('ArrayBuffer at index 1 is a duplicate of an earlier ArrayBuffer. Duplicates are not allowed.', 'DataCloneError');
        if (isDetached(b)) throw new DOMException('An ArrayBuffer is detached and could not be cloned.', 'DataCloneError');
        push(moved, b);
      }
      for (let i = 0; i < moved.length; i++) mapSet(memo, moved[i], taBuffer(copyBytes(new Uint8Array(moved[i]))));
    }
    const out = clone(value);
    for (let i = 0; i < moved.length; i++) hostDetach(moved[i]);
    return out;
  }

  // ArrayBuffer transfer and Atomics are the engine's (upstream QuickJS;
  // Atomics for one agent: engine/quickjs-wasi.patch)

  // detached: an ArrayBuffer no view can be made on
  function isDetached(b) {
    if (abByteLength(b) !== 0) return false;
    try { new Uint8Array(b); return false; } catch { return true; }
  }

  // Atomics.waitAsync (ES2024) for one agent: a waiter is a promise that
  // Atomics.notify on the same location resolves with "ok" (in the order
  // they waited), or its timeout with "timed-out". The engine has no
  // waitAsync; notify is replaced with one that also wakes these waiters
  // (the engine's wakes only blocked agents, and nothing here blocks).
  {
    const AtomicsObj = G.Atomics, PromiseCtor = Promise, BigIntAsIntN = G.BigInt.asIntN;
    const TypedArrayTag = getter(TypedArrayPrototype, Symbol.toStringTag);
    const isShared = isSharedArrayBuffer;
    const waiters = new Map(); // SharedArrayBuffer -> [{ pos, resolve, timer }] in waiting order
    // ValidateIntegerTypedArray(ta, waitable) and ValidateAtomicAccess: the
    // length is read before the index is converted
    function waitable(ta) {
      const tag = TypedArrayTag(ta);
      if (tag !== 'Int32Array' && tag !== 'BigInt64Array') {
        throw new TypeError(tag === undefined ? 'not a typed array' : 'invalid array type');
      }
      const buf = taBuffer(ta);
      if (!isShared(buf) && isDetached(buf)) throw new TypeError('ArrayBuffer is detached');
      return tag;
    }
    function atomicIndex(ta, index) {
      const len = taLength(ta);
      let n = +index;
      n = n !== n ? 0 : n < 0 ? -MathFloor(-n) : MathFloor(n);
      if (n < 0 || n > 9007199254740991 || n >= len) throw new RangeError('out-of-bound access');
      return n;
    }
    const result = (async, value) => ({ async, value });
    const methods = {
      waitAsync(typedArray, index, value, timeout) {
        const tag = waitable(typedArray);
        const buf = taBuffer(typedArray);
        if (!isShared(buf)) throw new TypeError('not a SharedArrayBuffer TypedArray');
        const i = atomicIndex(typedArray, index);
        const v = tag === 'BigInt64Array' ? BigIntAsIntN(64, value) : value | 0;
        let t = +timeout;
        t = t !== t ? Infinity : MathMax(t, 0);
        if (typedArray[i] !== v) return result(false, 'not-equal');
        if (t === 0) return result(false, 'timed-out');
        let list = mapGet(waiters, buf);
        if (!list) mapSet(waiters, buf, list = []);
        const w = { __proto__: null, pos: taByteOffset(typedArray) + i * (tag === 'Int32Array' ? 4 : 8), resolve: null, timer: 0 };
        const p = new PromiseCtor(r => { w.resolve = r; });
        push(list, w);
        if (t !== Infinity) {
          const id = nextTimerId++;
          w.timer = id;
          mapSet(timers, id, { __proto__: null, due: hostNow() + t, seq: id, interval: 0, args: [], fn: () => {
            const l = mapGet(waiters, buf);
            for (let k = 0; l && k < l.length; k++) {
              if (l[k] === w) { removeAt(l, k); w.resolve('timed-out'); break; }
            }
          } });
        }
        return result(true, p);
      },
      notify(typedArray, index, count) {
        const tag = waitable(typedArray);
        const i = atomicIndex(typedArray, index);
        let c = Infinity;
        if (count !== undefined) {
          c = +count;
          c = c !== c ? 0 : MathMax(c < 0 ? -MathFloor(-c) : MathFloor(c), 0);
        }
        const buf = taBuffer(typedArray);
        if (!isShared(buf)) return 0;
        const l = mapGet(waiters, buf);
        if (!l) return 0;
        const pos = taByteOffset(typedArray) + i * (tag === 'Int32Array' ? 4 : 8);
        let n = 0;
        for (let k = 0; k < l.length && n < c;) {
          const w = l[k];
          if (w.pos !== pos) { k++; continue; }
          removeAt(l, k);
          if (w.timer) mapDelete(timers, w.timer);
          w.resolve('ok');
          n++;
        }
        return n;
      },
    };
    function removeAt(l, k) {
      for (let j = k; j + 1 < l.length; j++) l[j] = l[j + 1];
      l.length--;
    }
    for (const k of ['waitAsync', 'notify']) {
      ObjectDefineProperty(AtomicsObj, k, { value: methods[k], writable: true, configurable: true });
    }
  }

  // Array.fromAsync (ES2026), the one built-in of ES2025 and ES2026 the
  // engine lacks: async and sync iterables (a sync iterator's values are
  // awaited, and it is closed when one rejects, as CreateAsyncFromSyncIterator
  // does) and array-likes; an abrupt mapping or definition closes the
  // iterator. Not a constructor; this is the result's constructor when it
  // is one.
  {
    const ArrayCtor = Array, ProxyCtor = G.Proxy, ObjectCtor = Object;
    const SymbolAsyncIterator = Symbol.asyncIterator, SymbolIterator = Symbol.iterator;
    const isObject = v => v !== null && (typeof v === 'object' || typeof v === 'function');
    const trap = { __proto__: null, construct() { return trap; } };
    const isConstructor = f => {
      if (typeof f !== 'function') return false;
      try { new (new ProxyCtor(f, trap))(); return true; } catch { return false; }
    };
    const getMethod = (o, k) => {
      const f = o[k];
      if (f === undefined || f === null) return undefined;
      if (typeof f !== 'function') throw new TypeError('Array.fromAsync: the iterator method is not a function');
      return f;
    };
    const define = (a, k, v) => {
      ObjectDefineProperty(a, k, { __proto__: null, value: v, writable: true, enumerable: true, configurable: true });
    };
    async function closeAsync(iter) {
      try {
        const ret = iter.return;
        if (ret !== undefined && ret !== null) await ReflectApply(ret, iter, []);
      } catch { /* the first error stands */ }
    }
    function closeSync(iter) {
      try {
        const ret = iter.return;
        if (ret !== undefined && ret !== null) ReflectApply(ret, iter, []);
      } catch { /* the first error stands */ }
    }
    async function fromAsync(C, asyncItems, mapfn, thisArg) {
      const mapping = mapfn !== undefined;
      if (mapping && typeof mapfn !== 'function') throw new TypeError('Array.fromAsync: the mapper is not a function');
      const usingAsync = getMethod(asyncItems, SymbolAsyncIterator);
      const usingSync = usingAsync === undefined ? getMethod(asyncItems, SymbolIterator) : undefined;
      if (usingAsync !== undefined || usingSync !== undefined) {
        const sync = usingAsync === undefined;
        const A = isConstructor(C) ? new C() : [];
        const iter = ReflectApply(sync ? usingSync : usingAsync, asyncItems, []);
        if (!isObject(iter)) throw new TypeError('Array.fromAsync: the iterator is not an object');
        const next = iter.next;
        for (let k = 0; ; k++) {
          let r = ReflectApply(next, iter, []);
          if (!sync) r = await r;
          if (!isObject(r)) throw new TypeError('Array.fromAsync: an iterator result is not an object');
          const done = !!r.done;
          let v = r.value;
          if (sync) {
            try { v = await v; } catch (e) { if (!done) closeSync(iter); throw e; }
          }
          if (done) { A.length = k; return A; }
          if (mapping) {
            try { v = await ReflectApply(mapfn, thisArg, [v, k]); } catch (e) { await closeAsync(iter); throw e; }
          }
          try { define(A, k, v); } catch (e) { await closeAsync(iter); throw e; }
        }
      }
      const arrayLike = ObjectCtor(asyncItems);
      let len = +arrayLike.length;
      len = len !== len || len <= 0 ? 0 : MathMin(MathFloor(len), 9007199254740991);
      const A = isConstructor(C) ? new C(len) : new ArrayCtor(len);
      for (let k = 0; k < len; k++) {
        let v = await arrayLike[k];
        if (mapping) v = await ReflectApply(mapfn, thisArg, [v, k]);
        define(A, k, v);
      }
      A.length = len;
      return A;
    }
    const methods = {
      fromAsync(asyncItems, mapfn = undefined, thisArg = undefined) { return fromAsync(this, asyncItems, mapfn, thisArg); },
    };
    if (typeof ArrayCtor.fromAsync !== 'function') {
      ObjectDefineProperty(ArrayCtor, 'fromAsync', { value: methods.fromAsync, writable: true, configurable: true });
    }
  }

  // ---- crypto ----

  const digestIds = { 'SHA-1': 1, 'SHA-256': 2, 'SHA-384': 3, 'SHA-512': 4, 'MD5': 5 };
  function getRandomValues(a) {
    if (!(a instanceof Int8Array || a instanceof Uint8Array || a instanceof Uint8ClampedArray || a instanceof Int16Array ||
      a instanceof Uint16Array || a instanceof Int32Array || a instanceof Uint32Array || a instanceof BigInt64Array || a instanceof BigUint64Array)) {
      throw new DOMException('The data argument must be an integer-type TypedArray', 'TypeMismatchError');
    }
    checkScope();
    if (a.byteLength > 65536) {
      throw new DOMException(`The ArrayBufferView's byte length (${a.byteLength}) exceeds the number of bytes of entropy available via this API (65536)`, 'QuotaExceededError');
    }
    hostRandom(a);
    return a;
  }
  function randomUUID() {
    checkScope();
    const b = new Uint8Array(16);
    hostRandom(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, x => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  function algName(alg) {
    const name = typeof alg === 'string' ? alg : alg && alg.name;
    if (typeof name !== 'string') throw new TypeError('Algorithm: name: Missing or not a string');
    return name.toUpperCase();
  }
  const notSupported = what => () => rejectedWith(new DOMException(`crypto.subtle.${what} is not supported by leash`, 'NotSupportedError'));
  class SubtleCrypto {
    constructor(key) { if (key !== internal) throw new TypeError('Illegal constructor'); }
    digest(alg, data) {
      try {
        const id = digestIds[algName(alg)];
        if (!id) throw new DOMException('Unrecognized name.', 'NotSupportedError');
        if (!isBufferSource(data)) throw new TypeError("Failed to execute 'digest' on 'SubtleCrypto': parameter 2 is not of type 'ArrayBuffer or ArrayBufferView'.");
        return resolved(hostDigest(id, viewBytes(data)));
      } catch (e) {
        return rejectedWith(e);
      }
    }
    timingSafeEqual(a, b) {
      const x = viewBytes(a), y = viewBytes(b);
      if (x.byteLength !== y.byteLength) throw new TypeError('Input buffers must have the same byte length');
      let d = 0;
      for (let i = 0; i < x.length; i++) d |= x[i] ^ y[i];
      return d === 0;
    }
  }
  for (const m of ['encrypt', 'decrypt', 'sign', 'verify', 'generateKey', 'deriveKey', 'deriveBits', 'importKey', 'exportKey', 'wrapKey', 'unwrapKey']) {
    SubtleCrypto.prototype[m] = notSupported(m);
  }
  tag(SubtleCrypto, 'SubtleCrypto');
  class Crypto {
    #subtle = new SubtleCrypto(internal);
    constructor(key) { if (key !== internal) throw new TypeError('Illegal constructor'); }
    get subtle() { return this.#subtle; }
    getRandomValues(a) { return getRandomValues(a); }
    randomUUID() { return randomUUID(); }
  }
  tag(Crypto, 'Crypto');

  // ---- URL, URLSearchParams ----

  const hexd = '0123456789ABCDEF';
  function formEncode(s) {
    const b = encode(s);
    let out = '';
    for (const c of b) {
      if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2a || c === 0x2d || c === 0x2e || c === 0x5f) out += String.fromCharCode(c);
      else if (c === 0x20) out += '+';
      else out += '%' + hexd[c >> 4] + hexd[c & 15];
    }
    return out;
  }
  function percentDecode(s) {
    if (!s.includes('%')) return s;
    const b = encode(s);
    const out = new Uint8Array(b.length);
    let o = 0;
    const hv = c => (c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 70 ? c - 55 : c >= 97 && c <= 102 ? c - 87 : -1);
    for (let i = 0; i < b.length; i++) {
      if (b[i] === 0x25 && i + 2 < b.length && hv(b[i + 1]) >= 0 && hv(b[i + 2]) >= 0) {
        out[o++] = hv(b[i + 1]) * 16 + hv(b[i + 2]);
        i += 2;
      } else out[o++] = b[i];
    }
    return decode(out.subarray(0, o));
  }
  function parseForm(s) {
    const list = [];
    for (const part of s.split('&')) {
      if (part === '') continue;
      const i = part.indexOf('=');
      const k = i >= 0 ? part.slice(0, i) : part, v = i >= 0 ? part.slice(i + 1) : '';
      push(list, [percentDecode(k.replace(/\+/g, ' ')), percentDecode(v.replace(/\+/g, ' '))]);
    }
    return list;
  }

  // WebIDL pair iterators: one prototype per interface ("Headers
  // Iterator"), inheriting from %IteratorPrototype%; next() reads the live
  // list at the iterator's index, as the standard's iterators do.
  function pairIterator(name, pairsOf) {
    let make;
    class It {
      #target; #kind = 0; #index = 0;
      static { make = (t, k) => { const i = new It(); i.#target = t; i.#kind = k; return i; }; }
      next() {
        if (!(this !== null && typeof this === 'object' && #target in this)) throw new TypeError(`next() called on an object that is not a ${name} Iterator`);
        const pairs = pairsOf(this.#target);
        if (this.#index >= pairs.length) return { value: undefined, done: true };
        const p = pairs[this.#index++];
        return { value: this.#kind === 1 ? p[0] : this.#kind === 2 ? p[1] : [p[0], p[1]], done: false };
      }
    }
    ObjectSetPrototypeOf(It.prototype, IteratorPrototype);
    delete It.prototype.constructor;
    ObjectDefineProperty(It.prototype, 'next', { enumerable: true });
    ObjectDefineProperty(It.prototype, Symbol.toStringTag, { value: name + ' Iterator', configurable: true });
    return make;
  }

  function need(args, n, cls, method) {
    if (args.length < n) {
      throw new TypeError(`Failed to execute '${method}' on '${cls}': ${n} argument${n > 1 ? 's' : ''} required, but only ${args.length} present.`);
    }
  }
  // An ordered multimap: the entries in order, and per name its live
  // entries, so get, has, set and delete of a name cost that name's
  // entries, not the whole list. Removed entries are marked and the list
  // is compacted when half of it is dead.
  class EntryList {
    #list = []; #byName = new Map(); #dead = 0; #live = null;
    constructor(pairs) { if (pairs) for (let i = 0; i < pairs.length; i++) this.append(pairs[i][0], pairs[i][1]); }
    get size() { return this.#list.length - this.#dead; }
    append(k, v) {
      const e = [k, v];
      push(this.#list, e);
      const a = mapGet(this.#byName, k);
      if (a) push(a, e); else mapSet(this.#byName, k, [e]);
      this.#live = null;
    }
    #kill(e) { e.dead = true; this.#dead++; this.#live = null; }
    #compact() {
      if (this.#dead > 32 && this.#dead * 2 > this.#list.length) {
        const out = [];
        for (let i = 0; i < this.#list.length; i++) if (!this.#list[i].dead) push(out, this.#list[i]);
        this.#list = out;
        this.#dead = 0;
      }
    }
    delete(k, pred) {
      const a = mapGet(this.#byName, k);
      if (!a) return;
      const keep = [];
      for (let i = 0; i < a.length; i++) { const e = a[i]; if (!pred || pred(e[1])) this.#kill(e); else push(keep, e); }
      if (keep.length) mapSet(this.#byName, k, keep); else mapDelete(this.#byName, k);
      this.#compact();
    }
    get(k) { const a = mapGet(this.#byName, k); return a ? a[0][1] : null; }
    getAll(k) {
      const a = mapGet(this.#byName, k), out = [];
      if (a) for (let i = 0; i < a.length; i++) push(out, a[i][1]);
      return out;
    }
    has(k, pred) {
      const a = mapGet(this.#byName, k);
      if (!a) return false;
      if (!pred) return true;
      for (let i = 0; i < a.length; i++) if (pred(a[i][1])) return true;
      return false;
    }
    set(k, v) {
      const a = mapGet(this.#byName, k);
      if (!a) { this.append(k, v); return; }
      a[0][1] = v;
      for (let i = 1; i < a.length; i++) this.#kill(a[i]);
      a.length = 1;
      this.#compact();
    }
    // pairs: the live entries in order (cached until the next change;
    // callers do not modify it)
    pairs() {
      if (this.#live) return this.#live;
      const out = [];
      for (let i = 0; i < this.#list.length; i++) if (!this.#list[i].dead) push(out, this.#list[i]);
      return (this.#live = out);
    }
    replace(pairs) {
      this.#list = []; this.#byName = new Map(); this.#dead = 0; this.#live = null;
      for (let i = 0; i < pairs.length; i++) this.append(pairs[i][0], pairs[i][1]);
    }
  }

  class URLSearchParams {
    #list = new EntryList(); #url = null;
    constructor(init = '') {
      if (init !== null && typeof init === 'object' && #list in init && init[Symbol.iterator] === searchEntries) this.#list = new EntryList(init.#list.pairs());
      else if (init !== null && (typeof init === 'object' || typeof init === 'function')) {
        if (typeof init[Symbol.iterator] === 'function') {
          for (const pair of init) {
            const p = Array.from(pair);
            if (p.length !== 2) throw new TypeError('Each query pair must be an iterable [name, value] tuple');
            this.#list.append(String(p[0]).toWellFormed(), String(p[1]).toWellFormed());
          }
        } else {
          for (const k of Object.keys(init)) this.#list.append(k.toWellFormed(), String(init[k]).toWellFormed());
        }
      } else {
        let s = String(init);
        if (s[0] === '?') s = s.slice(1);
        this.#list = new EntryList(parseForm(s));
      }
    }
    static [internal](params, url, query) {
      params.#url = url;
      if (query !== undefined) params.#list = new EntryList(parseForm(query));
    }
    #update() {
      if (this.#url) this.#url[internal](this.#serialize());
    }
    #serialize() {
      const pairs = this.#list.pairs();
      let out = '';
      for (let i = 0; i < pairs.length; i++) out += (i ? '&' : '') + formEncode(pairs[i][0]) + '=' + formEncode(pairs[i][1]);
      return out;
    }
    static { searchPairs = p => p.#list.pairs(); }
    get size() { return this.#list.size; }
    append(name, value) { need(arguments, 2, 'URLSearchParams', 'append'); this.#list.append(String(name).toWellFormed(), String(value).toWellFormed()); this.#update(); }
    delete(name, value) {
      need(arguments, 1, 'URLSearchParams', 'delete');
      name = String(name);
      if (value === undefined) this.#list.delete(name);
      else { value = String(value); this.#list.delete(name, v => v === value); }
      this.#update();
    }
    get(name) { need(arguments, 1, 'URLSearchParams', 'get'); return this.#list.get(String(name)); }
    getAll(name) { need(arguments, 1, 'URLSearchParams', 'getAll'); return this.#list.getAll(String(name)); }
    has(name, value) {
      need(arguments, 1, 'URLSearchParams', 'has');
      if (value === undefined) return this.#list.has(String(name));
      value = String(value);
      return this.#list.has(String(name), v => v === value);
    }
    set(name, value) {
      need(arguments, 2, 'URLSearchParams', 'set');
      this.#list.set(String(name).toWellFormed(), String(value).toWellFormed());
      this.#update();
    }
    sort() {
      const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
      this.#list.replace(this.#list.pairs().map((p, i) => [p, i]).sort((x, y) => cmp(x[0][0], y[0][0]) || x[1] - y[1]).map(x => x[0]));
      this.#update();
    }
    forEach(cb, thisArg = undefined) {
      if (typeof cb !== 'function') throw new TypeError("Failed to execute 'forEach' on 'URLSearchParams': parameter 1 is not of type 'Function'.");
      const pairs = this.#list.pairs();
      for (let i = 0; i < pairs.length; i++) { ReflectApply(cb, thisArg, [pairs[i][1], pairs[i][0], this]); }
    }
    entries() { return searchIterator(this, 0); }
    keys() { return searchIterator(this, 1); }
    values() { return searchIterator(this, 2); }
    toString() { return this.#serialize(); }
  }
  const searchIterator = pairIterator('URLSearchParams', p => searchPairs(p));
  const searchEntries = URLSearchParams.prototype.entries;
  ObjectDefineProperty(URLSearchParams.prototype, Symbol.iterator, { value: searchEntries, writable: true, configurable: true });
  tag(URLSearchParams, 'URLSearchParams');

  function parseURL(input, base) {
    const r = hostURL(String(input), base === undefined ? undefined : String(base));
    return r === null ? null : JSONparse(r);
  }
  class URL {
    #u; #params = null;
    constructor(url, base = undefined) {
      if (arguments.length === 0) throw new TypeError("Failed to construct 'URL': 1 argument required, but only 0 present.");
      const u = parseURL(url, base);
      if (!u) throw new TypeError('Invalid URL string.');
      this.#u = u;
    }
    static canParse(url, base) { return parseURL(url, base) !== null; }
    static parse(url, base) { try { return new URL(url, base); } catch { return null; } }
    // the URL Standard's setters, applied by the host's parser (the one
    // weburl wraps): a value the standard refuses leaves the URL as it is
    #set(which, v) {
      const r = hostURLSet(this.#u.href, which, String(v));
      if (r === null) return;
      const u = JSONparse(r);
      this.#u = u;
      if (this.#params && which === 7) URLSearchParams[internal](this.#params, this, stringSlice(u.search, 1));
    }
    [internal](query) { // from searchParams: the query as serialised, or none
      const r = hostURLSet(this.#u.href, 7, query);
      if (r !== null) this.#u = JSONparse(r);
    }
    get href() { return this.#u.href; }
    set href(v) {
      const u = parseURL(v);
      if (!u) throw new TypeError('Invalid URL string.');
      this.#u = u;
      if (this.#params) URLSearchParams[internal](this.#params, this, stringSlice(u.search, 1));
    }
    get origin() { return this.#u.origin; }
    get protocol() { return this.#u.protocol; }
    set protocol(v) { this.#set(0, v); }
    get username() { return this.#u.username; }
    set username(v) { this.#set(1, v); }
    get password() { return this.#u.password; }
    set password(v) { this.#set(2, v); }
    get host() { return this.#u.host; }
    set host(v) { this.#set(3, v); }
    get hostname() { return this.#u.hostname; }
    set hostname(v) { this.#set(4, v); }
    get port() { return this.#u.port; }
    set port(v) { this.#set(5, v); }
    get pathname() { return this.#u.pathname; }
    set pathname(v) { this.#set(6, v); }
    get search() { return this.#u.search; }
    set search(v) { this.#set(7, v); }
    get hash() { return this.#u.hash; }
    set hash(v) { this.#set(8, v); }
    get searchParams() {
      if (!this.#params) {
        this.#params = new URLSearchParams(this.#u.search);
        URLSearchParams[internal](this.#params, this);
      }
      return this.#params;
    }
    toString() { return this.#u.href; }
    toJSON() { return this.#u.href; }
  }
  tag(URL, 'URL');
  // ---- Blob, FormData ----

  class Blob {
    #bytes; #type;
    constructor(parts = [], options = {}) {
      const chunks = [];
      for (const p of parts) {
        if (p instanceof Blob) push(chunks, p.#bytes);
        else if (isBufferSource(p)) push(chunks, toBytes(p));
        else push(chunks, encode(p));
      }
      this.#bytes = concatBytes(chunks);
      const t = options && options.type !== undefined ? String(options.type) : '';
      this.#type = /^[\x20-\x7e]*$/.test(t) ? t.toLowerCase() : '';
    }
    static [internal](b) { return b.#bytes; }
    get size() { return this.#bytes.length; }
    get type() { return this.#type; }
    slice(start = 0, end = this.size, type = '') {
      const n = this.size;
      const s = start < 0 ? Math.max(n + start, 0) : Math.min(start, n);
      const e = end < 0 ? Math.max(n + end, 0) : Math.min(end, n);
      return new Blob([this.#bytes.slice(s, Math.max(s, e))], { type });
    }
    arrayBuffer() { return resolved(this.#bytes.slice().buffer); }
    bytes() { return resolved(this.#bytes.slice()); }
    text() { return resolved(decode(this.#bytes)); }
    stream() { return streamOf(this.#bytes.slice()); }
  }
  tag(Blob, 'Blob');
  class File extends Blob {
    #name; #lastModified;
    constructor(parts, name, options = {}) {
      super(parts, options);
      this.#name = String(name);
      this.#lastModified = options && options.lastModified !== undefined ? Number(options.lastModified) : Date.now();
    }
    get name() { return this.#name; }
    get lastModified() { return this.#lastModified; }
  }
  tag(File, 'File');

  class FormData {
    #list = new EntryList();
    #entry(name, value, filename) {
      name = String(name);
      if (value instanceof Blob) {
        if (!(value instanceof File) || filename !== undefined) value = new File([value], filename !== undefined ? filename : 'blob', { type: value.type });
      } else value = String(value);
      return [name, value];
    }
    append(name, value, filename) { const e = this.#entry(name, value, filename); this.#list.append(e[0], e[1]); }
    delete(name) { this.#list.delete(String(name)); }
    get(name) { return this.#list.get(String(name)); }
    getAll(name) { return this.#list.getAll(String(name)); }
    has(name) { return this.#list.has(String(name)); }
    set(name, value, filename) { const e = this.#entry(name, value, filename); this.#list.set(e[0], e[1]); }
    forEach(cb, thisArg = undefined) {
      if (typeof cb !== 'function') throw new TypeError("Failed to execute 'forEach' on 'FormData': parameter 1 is not of type 'Function'.");
      const pairs = this.#list.pairs();
      for (let i = 0; i < pairs.length; i++) ReflectApply(cb, thisArg, [pairs[i][1], pairs[i][0], this]);
    }
    entries() { return formIterator(this, 0); }
    keys() { return formIterator(this, 1); }
    values() { return formIterator(this, 2); }
    static { formPairs = f => f.#list.pairs(); }
  }
  const formIterator = pairIterator('FormData', f => formPairs(f));
  ObjectDefineProperty(FormData.prototype, Symbol.iterator, { value: FormData.prototype.entries, writable: true, configurable: true });
  tag(FormData, 'FormData');
  function multipart(fd) {
    const b = new Uint8Array(16);
    hostRandom(b);
    const boundary = '----formdata-leash-' + Array.from(b, x => x.toString(16).padStart(2, '0')).join('');
    const esc = s => s.replace(/\n/g, '%0A').replace(/\r/g, '%0D').replace(/"/g, '%22');
    const chunks = [];
    const pairs = formPairs(fd);
    for (let i = 0; i < pairs.length; i++) {
      const k = pairs[i][0], v = pairs[i][1];
      let head = `--${boundary}\r\nContent-Disposition: form-data; name="${esc(k)}"`;
      if (v instanceof File) {
        head += `; filename="${esc(v.name)}"\r\nContent-Type: ${v.type || 'application/octet-stream'}\r\n\r\n`;
        push(chunks, encode(head)); push(chunks, Blob[internal](v)); push(chunks, encode('\r\n'));
      } else {
        push(chunks, encode(head + '\r\n\r\n' + v.replace(/\r(?!\n)|(?<!\r)\n/g, '\r\n') + '\r\n'));
      }
    }
    push(chunks, encode(`--${boundary}--\r\n`));
    return [concatBytes(chunks), 'multipart/form-data; boundary=' + boundary];
  }
  function parseMultipart(bytes, contentType) {
    const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
    if (!m) throw new TypeError('Missing boundary in multipart/form-data');
    const boundary = encode('--' + (m[1] || m[2]).trim());
    const fd = new FormData();
    const find = (from, pat) => {
      outer: for (let i = from; i + pat.length <= bytes.length; i++) {
        for (let j = 0; j < pat.length; j++) if (bytes[i + j] !== pat[j]) continue outer;
        return i;
      }
      return -1;
    };
    let pos = find(0, boundary);
    if (pos < 0) throw new TypeError('Failed to parse body as FormData.');
    const delim = encode('\r\n--' + (m[1] || m[2]).trim());
    pos += boundary.length;
    while (bytes[pos] !== 0x2d || bytes[pos + 1] !== 0x2d) {
      pos += 2; // CRLF
      const headEnd = find(pos, encode('\r\n\r\n'));
      if (headEnd < 0) throw new TypeError('Failed to parse body as FormData.');
      const head = decode(bytes.subarray(pos, headEnd));
      const end = find(headEnd + 4, delim);
      if (end < 0) throw new TypeError('Failed to parse body as FormData.');
      const data = bytes.slice(headEnd + 4, end);
      const disp = /content-disposition:[^\r\n]*?\bname="([^"]*)"/i.exec(head);
      const fname = /content-disposition:[^\r\n]*?\bfilename="([^"]*)"/i.exec(head);
      const ctype = /content-type:\s*([^\r\n]*)/i.exec(head);
      if (disp) {
        if (fname) fd.append(disp[1], new File([data], fname[1], { type: ctype ? ctype[1] : '' }));
        else fd.append(disp[1], decode(data));
      }
      pos = end + delim.length;
    }
    return fd;
  }

  // ---- streams (a small, buffered subset) ----

  // The prelude's own reads (a body read whole, tee, pipeTo) settle with
  // null-prototype records, so an Object.prototype.then a worker defines
  // never sees them; a worker's reader.read() gets ordinary objects.
  const record = (value, done) => ({ __proto__: null, value, done });
  let acquireReader; // (stream) -> reader, not through getReader
  class ReadableStream {
    #queue = new Queue(); #state = 'readable'; #error; #reader = null; #waiters = new Queue();
    #source; #controller; #started = false; #pulling = false; #pullAgain = false;
    #closeRequested = false; #disturbed = false; #hwm; #bytes;
    static { acquireReader = s => s.#acquire(); isStream = s => s !== null && typeof s === 'object' && #queue in s; }
    constructor(source = undefined, strategy = undefined) {
      this.#source = source || noInit;
      // a byte stream (type "bytes", and every body the prelude makes) has
      // BYOB readers; its chunks are kept as Uint8Arrays over the
      // enqueued views' bytes and its controller's byobRequest is always
      // null (a read into a view is filled from the queue)
      this.#bytes = this.#source.type === 'bytes';
      this.#hwm = strategy && strategy.highWaterMark !== undefined ? Number(strategy.highWaterMark) : this.#bytes ? 0 : 1;
      const self = this;
      this.#controller = {
        enqueue(chunk) {
          if (self.#bytes) {
            if (!ArrayBufferIsView(chunk)) throw new TypeError('The chunk of a byte stream must be an ArrayBufferView.');
            chunk = viewBytes(chunk);
          }
          self.#enqueue(chunk);
        },
        get byobRequest() { return null; },
        close() { self.#closeReq(); },
        error(e) { self.#fail(e); },
        get desiredSize() { return self.#state === 'readable' ? self.#hwm - self.#queue.length : self.#state === 'closed' ? 0 : null; },
      };
      let r;
      try {
        r = typeof this.#source.start === 'function' ? this.#source.start(this.#controller) : undefined;
      } catch (e) { this.#fail(e); throw e; }
      promiseThen(resolved(r), () => { this.#started = true; this.#pullIfNeeded(); }, e => this.#fail(e));
    }
    #enqueue(chunk) {
      if (this.#closeRequested || this.#state !== 'readable') throw new TypeError('This ReadableStream is closed.');
      if (this.#waiters.length) this.#waiters.shift().resolve(record(chunk, false));
      else this.#queue.push(chunk);
      this.#pullIfNeeded();
    }
    #closeReq() {
      if (this.#closeRequested || this.#state !== 'readable') throw new TypeError('This ReadableStream is closed.');
      this.#closeRequested = true;
      if (this.#queue.length === 0) this.#finish();
    }
    #finish() {
      this.#state = 'closed';
      const ws = this.#waiters.clear();
      for (let i = 0; i < ws.length; i++) ws[i].resolve(record(undefined, true));
    }
    #fail(e) {
      if (this.#state !== 'readable') return;
      this.#state = 'errored';
      this.#error = e;
      this.#queue.clear();
      const ws = this.#waiters.clear();
      for (let i = 0; i < ws.length; i++) ws[i].reject(e);
    }
    #pullIfNeeded() {
      if (!this.#started || this.#state !== 'readable' || this.#closeRequested || typeof this.#source.pull !== 'function') return;
      if (this.#waiters.length === 0 && this.#queue.length >= this.#hwm) return;
      if (this.#pulling) { this.#pullAgain = true; return; }
      this.#pulling = true;
      let r;
      try { r = this.#source.pull(this.#controller); } catch (e) { this.#fail(e); return; }
      promiseThen(resolved(r), () => {
        this.#pulling = false;
        if (this.#pullAgain) { this.#pullAgain = false; this.#pullIfNeeded(); }
      }, e => this.#fail(e));
    }
    // #read: a promise of a null-prototype {value, done}
    #read() {
      this.#disturbed = true;
      if (this.#queue.length) {
        const value = this.#queue.shift();
        if (this.#closeRequested && this.#queue.length === 0) this.#finish();
        else this.#pullIfNeeded();
        return resolved(record(value, false));
      }
      if (this.#state === 'closed') return resolved(record(undefined, true));
      if (this.#state === 'errored') return rejectedWith(this.#error);
      return new Promise((resolve, reject) => { this.#waiters.push({ __proto__: null, resolve, reject }); this.#pullIfNeeded(); });
    }
    [internal](op) {
      if (op === 'disturbed') return this.#disturbed;
      if (op === 'state') return this.#state;
      if (op === 'error') return this.#error;
      // Streams' ShouldCallPull, less started and closing: a read waits
      // or the queue is below its high-water mark
      if (op === 'wants') return this.#waiters.length > 0 || this.#queue.length < this.#hwm;
    }
    get locked() { return this.#reader !== null; }
    cancel(reason = undefined) {
      if (this.#reader) return rejectedWith(new TypeError('This ReadableStream is currently locked to a reader.'));
      return this.#cancel(reason);
    }
    #cancel(reason) {
      this.#disturbed = true;
      if (this.#state === 'closed') return resolved();
      if (this.#state === 'errored') return rejectedWith(this.#error);
      this.#queue.clear();
      this.#finish();
      try {
        return promiseThen(resolved(typeof this.#source.cancel === 'function' ? this.#source.cancel(reason) : undefined), () => undefined);
      } catch (e) { return rejectedWith(e); }
    }
    getReader(options = undefined) {
      if (options && options.mode !== undefined) {
        if (String(options.mode) === 'byob') {
          if (!this.#bytes) throw new TypeError("Failed to execute 'getReader' on 'ReadableStream': Cannot get a BYOB reader for a stream that is not a byte stream.");
          return this.#acquireBYOB();
        }
        throw new TypeError(`Failed to execute 'getReader' on 'ReadableStream': The provided value '${String(options.mode)}' is not a valid enum value of type ReadableStreamReaderMode.`);
      }
      return this.#acquire();
    }
    #acquire() {
      if (this.#reader) throw new TypeError('This ReadableStream is currently locked to a reader.');
      const stream = this;
      let released = false, closedP = null;
      const reader = {
        read() {
          if (released) return rejectedWith(new TypeError('This ReadableStream reader has been released.'));
          return promiseThen(stream.#read(), r => ({ value: r.value, done: r.done }));
        },
        [internal]() { // the prelude's read: null-prototype records
          if (released) return rejectedWith(new TypeError('This ReadableStream reader has been released.'));
          return stream.#read();
        },
        releaseLock() { if (!released) { released = true; stream.#reader = null; } },
        cancel(reason) {
          if (released) return rejectedWith(new TypeError('This ReadableStream reader has been released.'));
          return stream.#cancel(reason);
        },
        get closed() {
          if (closedP) return closedP;
          const st = stream.#state;
          if (st === 'closed') return (closedP = resolved());
          if (st === 'errored') return (closedP = rejectedWith(stream.#error));
          return (closedP = new Promise((res, rej) => {
            const check = () => { const s = stream.#state; if (s === 'closed') res(); else if (s === 'errored') rej(stream.#error); else setTimeout(check, 1); };
            check();
          }));
        },
      };
      this.#reader = reader;
      return reader;
    }
    #closedPromise() {
      const st = this.#state;
      if (st === 'closed') return resolved();
      if (st === 'errored') return rejectedWith(this.#error);
      return new Promise((res, rej) => {
        const check = () => { const s = this.#state; if (s === 'closed') res(); else if (s === 'errored') rej(this.#error); else setTimeout(check, 1); };
        check();
      });
    }
    // #readInto fills target (a Uint8Array) from the queue, waiting for a
    // chunk when it is empty, with a whole number of elems bytes: a
    // promise of the count filled, 0 at the end.
    #readInto(target, elems) {
      this.#disturbed = true;
      const len = taLength(target);
      let n = 0;
      const step = () => {
        while (this.#queue.length && n < len) {
          const c = this.#queue.shift(), cn = taLength(c), take = MathMin(len - n, cn);
          taSet(target, take === cn ? c : new Uint8Array(taBuffer(c), taByteOffset(c), take), n);
          n += take;
          if (take < cn) this.#queue.unshift(new Uint8Array(taBuffer(c), taByteOffset(c) + take, cn - take));
        }
        if (this.#closeRequested && this.#queue.length === 0 && this.#state === 'readable') this.#finish();
        if (n > 0 && n % elems === 0) { this.#pullIfNeeded(); return resolved(n); }
        if (this.#state === 'errored') return rejectedWith(this.#error);
        if (this.#state === 'closed') {
          if (n % elems) return rejectedWith(new TypeError('Insufficient bytes to fill elements in the given buffer'));
          return resolved(n);
        }
        return new Promise((resolve, reject) => {
          this.#waiters.push({ __proto__: null, resolve: r => { if (!r.done) this.#queue.unshift(r.value); resolve(step()); }, reject });
          this.#pullIfNeeded();
        });
      };
      return step();
    }
    #acquireBYOB() {
      if (this.#reader) throw new TypeError('This ReadableStream is currently locked to a reader.');
      const stream = this;
      let released = false, closedP = null;
      const reader = {
        read(view = undefined) {
          if (released) return rejectedWith(new TypeError('This ReadableStream reader has been released.'));
          if (!ArrayBufferIsView(view)) return rejectedWith(new TypeError("Failed to execute 'read' on 'ReadableStreamBYOBReader': parameter 1 is not of type 'ArrayBufferView'."));
          let buf, off, len, dv = false;
          try { buf = taBuffer(view); off = taByteOffset(view); len = taByteLength(view); } catch {
            buf = dvBuffer(view); off = dvByteOffset(view); len = dvByteLength(view); dv = true;
          }
          if (len === 0) return rejectedWith(new TypeError("Failed to execute 'read' on 'ReadableStreamBYOBReader': This readable stream reader cannot be used to read as the view has byte length equal to 0"));
          const Ctor = dv ? G.DataView : ObjectGetPrototypeOf(view).constructor, elems = dv ? 1 : Ctor.BYTES_PER_ELEMENT;
          // the view's buffer moves into the stream (Streams: TransferArrayBuffer)
          let moved;
          try { moved = abTransfer(buf); } catch (e) { return rejectedWith(new TypeError("Failed to execute 'read' on 'ReadableStreamBYOBReader': the view's buffer cannot be transferred")); }
          return promiseThen(stream.#readInto(new Uint8Array(moved, off, len), elems), n => ({
            value: dv ? new Ctor(moved, off, n) : new Ctor(moved, off, n / elems), done: n === 0 && stream.#state === 'closed',
          }));
        },
        releaseLock() { if (!released) { released = true; stream.#reader = null; } },
        cancel(reason) {
          if (released) return rejectedWith(new TypeError('This ReadableStream reader has been released.'));
          return stream.#cancel(reason);
        },
        get closed() { return closedP || (closedP = stream.#closedPromise()); },
      };
      this.#reader = reader;
      return reader;
    }
    async *values(options = undefined) {
      const reader = this.#acquire();
      try {
        for (;;) {
          const r = await reader[internal]();
          if (r.done) return;
          yield r.value;
        }
      } finally {
        if (!(options && options.preventCancel)) reader.cancel();
        reader.releaseLock();
      }
    }
    tee() {
      const reader = this.#acquire();
      let c1, c2;
      const pump = () => promiseThen(reader[internal](), r => {
        if (r.done) { try { c1.close(); } catch {} try { c2.close(); } catch {} return; }
        try { c1.enqueue(r.value); } catch {}
        try { c2.enqueue(r.value); } catch {}
      }, e => { c1.error(e); c2.error(e); });
      const a = new ReadableStream({ start(c) { c1 = c; }, pull: pump });
      const b = new ReadableStream({ start(c) { c2 = c; }, pull: pump });
      return [a, b];
    }
    pipeTo(dest, options = undefined) {
      const reader = this.#acquire();
      const writer = dest.getWriter();
      const preventClose = !!(options && options.preventClose);
      const loop = () => promiseThen(reader[internal](), r => {
        if (r.done) { reader.releaseLock(); writer.releaseLock(); return preventClose ? undefined : dest[internal]('close'); }
        return promiseThen(writer.write(r.value), loop);
      });
      return loop();
    }
    pipeThrough(pair, options = undefined) {
      promiseThen(this.pipeTo(pair.writable, options), undefined, () => {});
      return pair.readable;
    }
    static from(iterable) {
      const it = iterable[Symbol.asyncIterator] ? iterable[Symbol.asyncIterator]() : iterable[Symbol.iterator]();
      return new ReadableStream({
        async pull(c) {
          const { value, done } = await it.next();
          if (done) c.close(); else c.enqueue(value);
        },
      });
    }
  }
  ObjectDefineProperty(ReadableStream.prototype, Symbol.asyncIterator, { value: ReadableStream.prototype.values, writable: true, configurable: true });
  tag(ReadableStream, 'ReadableStream');
  function streamOf(bytes) {
    return new ReadableStream({ type: 'bytes', start(c) { if (taLength(bytes)) c.enqueue(bytes); c.close(); } });
  }
  // readAll(stream[, limit]): a null-prototype {bytes} of the stream's
  // bytes, or {over: n} past limit bytes (it stops reading there).
  async function readAll(stream, limit = Infinity) {
    const reader = acquireReader(stream);
    const chunks = [];
    let n = 0;
    for (;;) {
      const r = await reader[internal]();
      if (r.done) break;
      const value = r.value;
      if (typeof value === 'string') throw new TypeError('This TransformStream is being used as a byte stream, but received a string on its writable side. If you wish to write a string, you\'ll probably want to explicitly UTF-8-encode it with TextEncoder.');
      if (!isBufferSource(value)) throw new TypeError('This ReadableStream did not return bytes.');
      const b = viewBytes(value);
      n += taByteLength(b);
      if (n > limit) return { __proto__: null, over: n };
      push(chunks, b);
    }
    return { __proto__: null, bytes: concatBytes(chunks) };
  }

  class WritableStream {
    #sink; #chain; #state = 'writable'; #writer = null; #error;
    constructor(sink = {}) {
      this.#sink = sink || {};
      const controller = { error: e => { this.#state = 'errored'; this.#error = e; } };
      this.#chain = resolved(typeof this.#sink.start === 'function' ? this.#sink.start(controller) : undefined);
    }
    get locked() { return this.#writer !== null; }
    [internal](op, arg) {
      if (this.#state === 'errored') return rejectedWith(this.#error);
      if (op === 'write') {
        if (this.#state !== 'writable') return rejectedWith(new TypeError('This WritableStream has been closed.'));
        this.#chain = this.#chain.then(() => (typeof this.#sink.write === 'function' ? this.#sink.write(arg) : undefined));
      } else if (op === 'close') {
        if (this.#state !== 'writable') return rejectedWith(new TypeError('This WritableStream has been closed.'));
        this.#state = 'closed';
        this.#chain = this.#chain.then(() => (typeof this.#sink.close === 'function' ? this.#sink.close() : undefined));
      } else if (op === 'abort') {
        this.#state = 'errored';
        this.#error = arg;
        return resolved(typeof this.#sink.abort === 'function' ? this.#sink.abort(arg) : undefined);
      }
      this.#chain.catch(e => { this.#state = 'errored'; this.#error = e; });
      return this.#chain.then(() => undefined);
    }
    getWriter() {
      if (this.#writer) throw new TypeError('This WritableStream is currently locked to a writer.');
      const s = this;
      const w = {
        write: chunk => s[internal]('write', chunk),
        close: () => s[internal]('close'),
        abort: reason => s[internal]('abort', reason),
        releaseLock() { s.#writer = null; },
        get ready() { return resolved(); },
        get closed() { return s.#chain.then(() => undefined); },
        get desiredSize() { return 1; },
      };
      this.#writer = w;
      return w;
    }
    close() { return this[internal]('close'); }
    abort(reason) { return this[internal]('abort', reason); }
  }
  tag(WritableStream, 'WritableStream');

  class TransformStream {
    #readable; #writable;
    constructor(transformer = {}, writableStrategy = undefined, readableStrategy = undefined) {
      transformer = transformer || {};
      let rc;
      // backpressure (Streams: TransformStreamSetBackpressure): a write
      // waits until the readable side is pulled, i.e. read from while its
      // queue is at its high-water mark (0 unless given)
      let backpressure = true, relieve = null, relieved = null;
      const setBackpressure = on => {
        if (on === backpressure) return;
        backpressure = on;
        if (!on && relieve) { const r = relieve; relieve = relieved = null; r(); }
      };
      const whenRelieved = () => {
        if (!backpressure) return resolved();
        if (!relieved) relieved = new Promise(r => { relieve = r; });
        return relieved;
      };
      const hwm = readableStrategy && readableStrategy.highWaterMark !== undefined ? readableStrategy.highWaterMark : 0;
      // a cancelled or errored readable side lets waiting writes through,
      // to fail on it rather than wait for ever
      this.#readable = new ReadableStream({ start(c) { rc = c; }, pull() { setBackpressure(false); }, cancel() { setBackpressure(false); } }, { highWaterMark: hwm });
      const tc = {
        enqueue: chunk => { rc.enqueue(chunk); if (!this.#readable[internal]('wants')) setBackpressure(true); },
        error: e => { rc.error(e); setBackpressure(false); },
        terminate: () => { rc.close(); setBackpressure(false); },
        get desiredSize() { return rc.desiredSize; },
      };
      if (typeof transformer.start === 'function') transformer.start(tc);
      // a transform or flush that throws or rejects errors the readable
      // side too (Streams: TransformStreamDefaultControllerError)
      const fail = e => { try { rc.error(e); } catch {} setBackpressure(false); throw e; };
      const guard = f => {
        try { return promiseThen(resolved(f()), undefined, fail); } catch (e) { return fail(e); }
      };
      this.#writable = new WritableStream({
        write: chunk => promiseThen(whenRelieved(), () => guard(() => (typeof transformer.transform === 'function' ? transformer.transform(chunk, tc) : tc.enqueue(chunk)))),
        close: () => promiseThen(guard(() => (typeof transformer.flush === 'function' ? transformer.flush(tc) : undefined)), () => rc.close()),
        abort: e => rc.error(e),
      });
    }
    get readable() { return this.#readable; }
    get writable() { return this.#writable; }
  }
  tag(TransformStream, 'TransformStream');

  // TextDecoderStream and TextEncoderStream: a TextDecoder (streaming) and
  // UTF-8 encoding over a TransformStream
  class TextDecoderStream {
    #decoder; #transform;
    constructor(label = 'utf-8', options = undefined) {
      const d = this.#decoder = new TextDecoder(label, options);
      this.#transform = new TransformStream({
        transform(chunk, c) {
          if (!isSharedBufferSource(chunk)) throw new TypeError("Failed to execute 'write' on 'TextDecoderStream': the chunk is not an ArrayBuffer or ArrayBufferView");
          const s = d.decode(chunk, { stream: true });
          if (s) c.enqueue(s);
        },
        flush(c) { const s = d.decode(); if (s) c.enqueue(s); },
      });
    }
    get encoding() { return this.#decoder.encoding; }
    get fatal() { return this.#decoder.fatal; }
    get ignoreBOM() { return this.#decoder.ignoreBOM; }
    get readable() { return this.#transform.readable; }
    get writable() { return this.#transform.writable; }
  }
  tag(TextDecoderStream, 'TextDecoderStream');
  class TextEncoderStream {
    #transform;
    constructor() {
      let lead = ''; // a lead surrogate at the end of a chunk waits for its trail
      this.#transform = new TransformStream({
        transform(chunk, c) {
          let s = lead + String(chunk);
          lead = '';
          const last = s.length ? stringCharCodeAt(s, s.length - 1) : 0;
          if (last >= 0xd800 && last <= 0xdbff) { lead = stringSlice(s, s.length - 1); s = stringSlice(s, 0, s.length - 1); }
          if (s.length) c.enqueue(encode(s));
        },
        flush(c) { if (lead) c.enqueue(new Uint8Array([0xef, 0xbf, 0xbd])); },
      });
    }
    get encoding() { return 'utf-8'; }
    get readable() { return this.#transform.readable; }
    get writable() { return this.#transform.writable; }
  }
  tag(TextEncoderStream, 'TextEncoderStream');

  // ---- Headers ----

  // workerd accepts any byte above 0x7f in a header name too
  const headerNameRe = /^[!#$%&'*+\-.^_`|~0-9A-Za-z\x80-\xff]+$/;
  // WebIDL ByteString: a code unit above 0xff is a TypeError
  function byteString(v, what) {
    if (typeof v === 'symbol') throw new TypeError(`Cannot convert a Symbol value to a string (${what})`);
    v = String(v);
    for (let i = 0; i < v.length; i++) {
      if (stringCharCodeAt(v, i) > 0xff) throw new TypeError(`Failed to execute on 'Headers': ${what} is not a valid ByteString.`);
    }
    return v;
  }
  const isHTTPSpace = c => c === 0x09 || c === 0x0a || c === 0x0d || c === 0x20;
  function normalizeValue(v) {
    v = byteString(v, 'Value');
    let a = 0, b = v.length;
    while (a < b && isHTTPSpace(stringCharCodeAt(v, a))) a++;
    while (b > a && isHTTPSpace(stringCharCodeAt(v, b - 1))) b--;
    v = stringSlice(v, a, b);
    for (let i = 0; i < v.length; i++) {
      const c = stringCharCodeAt(v, i);
      if (c === 0 || c === 0x0a || c === 0x0d) throw new TypeError('Invalid header value.');
    }
    return v;
  }
  function checkName(n) {
    n = byteString(n, 'Name');
    if (!reTest(headerNameRe, n)) throw new TypeError(`Invalid header name.`);
    return stringToLowerCase(n);
  }
  // Headers: name -> [values] in a Map (lower-case names; the order that
  // matters is the sorted one, cached until the next change), so each
  // operation is one lookup.
  let headerPairs, headersHas, headersSet, headersGet; // not reachable by the worker
  class Headers {
    #map = new Map(); #guard = 'none'; #sorted = null;
    static {
      headerPairs = h => {
        const out = [];
        mapForEach(h.#map, (vs, k) => { for (let i = 0; i < vs.length; i++) push(out, [k, vs[i]]); });
        return out;
      };
      headersHas = (h, n) => mapHas(h.#map, n);
      headersGet = (h, n) => { const vs = mapGet(h.#map, n); return vs ? arrayJoin(vs, ', ') : null; };
      headersSet = (h, n, v) => { mapSet(h.#map, n, [v]); h.#sorted = null; };
    }
    constructor(init = undefined) {
      if (init === undefined) return;
      if (init !== null && (typeof init === 'object' || typeof init === 'function')) {
        // another Headers copies as it is, unless it was given an
        // iterator of its own (WebIDL converts through @@iterator)
        if (#map in init && init[Symbol.iterator] === headersEntries) {
          mapForEach(init.#map, (vs, k) => { const c = []; for (let i = 0; i < vs.length; i++) push(c, vs[i]); mapSet(this.#map, k, c); });
          return;
        }
        const it = init[Symbol.iterator];
        if (it !== undefined && it !== null) {
          if (typeof it !== 'function') throw new TypeError("Failed to construct 'Headers': The object's @@iterator property is not callable.");
          for (const pair of { [Symbol.iterator]: () => ReflectApply(it, init, []) }) {
            if (pair === null || (typeof pair !== 'object' && typeof pair !== 'function')) {
              throw new TypeError("Failed to construct 'Headers': The provided value cannot be converted to a sequence.");
            }
            const p = ArrayFrom(pair);
            if (p.length !== 2) throw new TypeError('Invalid value for header entry: each entry must have exactly two elements, name and value.');
            this.#append(p[0], p[1]);
          }
          return;
        }
        // record<ByteString, ByteString>: own enumerable keys, in order
        const keys = ReflectOwnKeys(init);
        for (let i = 0; i < keys.length; i++) {
          const k = keys[i];
          const d = ReflectGetOwnPropertyDescriptor(init, k);
          if (d === undefined || !d.enumerable) continue;
          const name = byteString(k, 'Name');
          this.#append(name, init[k]);
        }
        return;
      }
      throw new TypeError("Failed to construct 'Headers': The provided value is not of type '(record<ByteString, ByteString> or sequence<sequence<ByteString>>)'.");
    }
    static [internal](h, guard, list) {
      if (list) {
        h.#map = new Map();
        h.#sorted = null;
        for (let i = 0; i < list.length; i++) {
          const k = list[i][0], v = list[i][1];
          const a = mapGet(h.#map, k);
          if (a) push(a, v); else mapSet(h.#map, k, [v]);
        }
      }
      if (guard) h.#guard = guard;
      return headerPairs(h);
    }
    #check() { if (this.#guard === 'immutable') throw new TypeError("Can't modify immutable headers."); }
    #append(name, value) {
      name = checkName(name);
      value = normalizeValue(value);
      this.#check();
      const a = mapGet(this.#map, name);
      if (a) push(a, value); else mapSet(this.#map, name, [value]);
      this.#sorted = null;
    }
    append(name, value) { need(arguments, 2, 'Headers', 'append'); this.#append(name, value); }
    delete(name) {
      need(arguments, 1, 'Headers', 'delete');
      name = checkName(name);
      this.#check();
      if (mapDelete(this.#map, name)) this.#sorted = null;
    }
    get(name) { need(arguments, 1, 'Headers', 'get'); return headersGet(this, checkName(name)); }
    getAll(name) {
      name = checkName(name);
      if (name !== 'set-cookie') throw new TypeError('getAll() can only be used with the header name "Set-Cookie".');
      return this.getSetCookie();
    }
    getSetCookie() {
      const vs = mapGet(this.#map, 'set-cookie');
      const out = [];
      if (vs) for (let i = 0; i < vs.length; i++) push(out, vs[i]);
      return out;
    }
    has(name) { need(arguments, 1, 'Headers', 'has'); return mapHas(this.#map, checkName(name)); }
    set(name, value) {
      need(arguments, 2, 'Headers', 'set');
      name = checkName(name);
      value = normalizeValue(value);
      this.#check();
      headersSet(this, name, value);
    }
    static { sortedHeaders = h => h.#sortedList(); }
    #sortedList() {
      if (this.#sorted) return this.#sorted;
      const names = [];
      mapForEach(this.#map, (_, k) => push(names, k));
      arraySort(names, (a, b) => (a < b ? -1 : a > b ? 1 : 0));
      const out = [];
      for (let i = 0; i < names.length; i++) {
        const n = names[i];
        const vs = mapGet(this.#map, n);
        if (n === 'set-cookie') for (let j = 0; j < vs.length; j++) push(out, [n, vs[j]]);
        else push(out, [n, arrayJoin(vs, ', ')]);
      }
      return (this.#sorted = out);
    }
    forEach(cb, thisArg = undefined) {
      if (typeof cb !== 'function') throw new TypeError("Failed to execute 'forEach' on 'Headers': parameter 1 is not of type 'Function'.");
      // live, as the standard's iteration: a change during forEach shows
      for (let i = 0; i < this.#sortedList().length; i++) {
        const p = this.#sortedList()[i];
        ReflectApply(cb, thisArg, [p[1], p[0], this]);
      }
    }
    entries() { return headersIterator(this, 0); }
    keys() { return headersIterator(this, 1); }
    values() { return headersIterator(this, 2); }
  }
  const headersIterator = pairIterator('Headers', h => sortedHeaders(h));
  const headersEntries = Headers.prototype.entries;
  ObjectDefineProperty(Headers.prototype, Symbol.iterator, { value: headersEntries, writable: true, configurable: true });
  tag(Headers, 'Headers');
  const headerList = h => headerPairs(h);
  function immutableHeaders(list) {
    const h = new Headers();
    Headers[internal](h, 'immutable', list);
    return h;
  }

  // ---- Body, Request, Response ----

  // extract(body) -> [Uint8Array | ReadableStream | null, contentType | null]
  function extractBody(body) {
    if (body === undefined || body === null) return [null, null];
    if (typeof body === 'string') return [encode(body), 'text/plain;charset=UTF-8'];
    if (isBufferSource(body)) return [toBytes(body), null];
    if (body instanceof URLSearchParams) return [encode(body.toString()), 'application/x-www-form-urlencoded;charset=UTF-8'];
    if (body instanceof Blob) return [copyBytes(Blob[internal](body)), body.type || null];
    if (body instanceof FormData) return multipart(body);
    if (isStream(body)) {
      if (body.locked || body[internal]('disturbed')) throw new TypeError('The ReadableStream is locked or has been read from; it cannot be a body.');
      return [body, null];
    }
    return [encode(String(body)), 'text/plain;charset=UTF-8'];
  }
  const usedMsg = 'Body has already been used. It can only be used once. Use tee() first if you need to read it twice.';
  const lockedMsg = 'This ReadableStream is currently locked to a reader.';
  let bodyRaw, bodyUsed, bodyLocked; // not reachable by the worker
  // A body is bytes until a worker asks for its stream (body); reading it
  // disturbs and locks that stream, as the Fetch standard's bodies do.
  class Body {
    #body = null; #stream = null; #used = false;
    static {
      bodyRaw = b => b.#body;
      bodyUsed = b => b.#used || (isStream(b.#body) && b.#body[internal]('disturbed')) ||
        (b.#stream !== null && b.#stream[internal]('disturbed'));
      bodyLocked = b => { const st = isStream(b.#body) ? b.#body : b.#stream; return st !== null && st.locked; };
    }
    [internal](op, arg) {
      switch (op) {
        case 'set': this.#body = arg; this.#stream = null; this.#used = false; return;
        case 'raw': return this.#body;
        case 'take': { const b = this.#stream || this.#body; if (b !== null) this.#used = true; return b; }
        case 'used': return bodyUsed(this);
      }
    }
    get body() {
      if (this.#body === null) return null;
      if (isStream(this.#body)) return this.#body;
      if (!this.#stream) {
        this.#stream = streamOf(this.#body);
        if (this.#used) { // read already: a disturbed, locked stream
          const r = acquireReader(this.#stream);
          r[internal]();
        }
      }
      return this.#stream;
    }
    get bodyUsed() { return bodyUsed(this); }
    // #consume: a promise of a null-prototype {bytes}
    #consume() {
      if (bodyUsed(this)) return rejectedWith(new TypeError(usedMsg));
      if (bodyLocked(this)) return rejectedWith(new TypeError(lockedMsg));
      const b = this.#stream || this.#body;
      // a null body stays unused (Fetch: "fully read" of no body)
      if (b === null) return resolved({ __proto__: null, bytes: new Uint8Array(0) });
      this.#used = true;
      if (isStream(b)) return readAll(b);
      return resolved({ __proto__: null, bytes: b });
    }
    #contentType() { return headersGet(bodyHeaders(this), 'content-type'); }
    arrayBuffer() {
      return promiseThen(this.#consume(), r => {
        const b = r.bytes;
        const buf = taBuffer(b);
        return abByteLength(buf) === taByteLength(b) && taByteOffset(b) === 0 ? buf : taBuffer(copyBytes(b));
      });
    }
    bytes() { return promiseThen(this.arrayBuffer(), buf => new Uint8Array(buf)); }
    text() { return promiseThen(this.#consume(), r => decode(r.bytes)); }
    json() { return promiseThen(this.#consume(), r => JSONparse(decode(r.bytes))); }
    blob() { return promiseThen(this.#consume(), r => new Blob([r.bytes], { type: this.#contentType() || '' })); }
    formData() {
      return promiseThen(this.#consume(), r => {
        const ct = this.#contentType() || '';
        const b = r.bytes;
        if (reTest(/^multipart\/form-data/i, ct)) return parseMultipart(b, ct);
        if (reTest(/^application\/x-www-form-urlencoded/i, ct)) {
          const fd = new FormData();
          const list = parseForm(decode(b));
          for (let i = 0; i < list.length; i++) fd.append(list[i][0], list[i][1]);
          return fd;
        }
        throw new TypeError('Unrecognized Content-Type header value. FormData can only parse the following MIME types: multipart/form-data, application/x-www-form-urlencoded.');
      });
    }
  }
  function cloneBody(src, dst) {
    const raw = src[internal]('raw');
    if (bodyUsed(src)) throw new TypeError(usedMsg);
    if (isStream(raw)) {
      const ab = raw.tee();
      src[internal]('set', ab[0]);
      dst[internal]('set', ab[1]);
    } else dst[internal]('set', raw);
  }

  // workerd knows these methods (any case) and refuses others
  const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'PURGE', 'OPTIONS', 'TRACE', 'COPY', 'LOCK', 'MKCOL', 'MOVE',
    'PROPFIND', 'PROPPATCH', 'SEARCH', 'UNLOCK', 'ACL', 'REPORT', 'MKACTIVITY', 'CHECKOUT', 'MERGE', 'M-SEARCH', 'NOTIFY',
    'SUBSCRIBE', 'UNSUBSCRIBE', 'QUERY'];
  class Request extends Body {
    #method = 'GET'; #url; #headers; #redirect = 'follow'; #signal; #cf;
    constructor(input, init = {}) {
      super();
      if (arguments.length === 0) throw new TypeError("Failed to construct 'Request': 1 argument required, but only 0 present.");
      init = init || noInit;
      let src = null;
      if (isRequest(input)) {
        src = input;
        this.#url = input.#url;
        this.#method = input.#method;
        this.#redirect = input.#redirect;
        this.#signal = input.#signal;
        this.#cf = input.#cf;
      } else if (input !== null && typeof input === 'object' && internal in input) {
        this.#url = input[internal]; // the host's request: parsed already
      } else {
        const u = parseURL(String(input));
        if (!u) throw new TypeError(`Invalid URL: ${String(input)}`);
        this.#url = u.href;
      }
      if (init.method !== undefined) {
        const m = String(init.method);
        const up = stringToUpperCase(m);
        if (!has(methods, up)) throw new TypeError(`Invalid HTTP method string: ${m}`);
        this.#method = up;
      }
      if (init.redirect !== undefined) {
        if (!has(['follow', 'manual', 'error'], init.redirect)) throw new TypeError(`Invalid redirect value, must be one of "follow" or "manual" ("error" won't be implemented since it does not make sense at the edge; use "manual" and check the response status code).`);
        this.#redirect = init.redirect;
      }
      if (init.signal !== undefined && init.signal !== null) {
        if (!isSignal(init.signal)) throw new TypeError("Failed to construct 'Request': member signal is not of type AbortSignal.");
        this.#signal = init.signal;
      }
      if (init.cf !== undefined) this.#cf = init.cf;
      this.#headers = new Headers(init.headers !== undefined ? init.headers : src ? src.#headers : undefined);
      let body = null, ctype = null;
      if (init.body !== undefined && init.body !== null) {
        const eb = extractBody(init.body);
        body = eb[0]; ctype = eb[1];
      } else if (src) {
        if (bodyUsed(src)) throw new TypeError(usedMsg);
        body = src[internal]('take'); // the new request takes the body
      }
      if (body !== null && (this.#method === 'GET' || this.#method === 'HEAD')) {
        throw new TypeError('Request with a GET or HEAD method cannot have a body.');
      }
      if (ctype && !headersHas(this.#headers, 'content-type')) headersSet(this.#headers, 'content-type', ctype);
      this[internal]('set', body);
    }
    static {
      isRequest = r => r !== null && typeof r === 'object' && #method in r;
      requestHeaders = r => r.#headers;
    }
    get method() { return this.#method; }
    get url() { return this.#url; }
    get headers() { return this.#headers; }
    get redirect() { return this.#redirect; }
    get signal() { return this.#signal || (this.#signal = new AbortSignal(internal)); }
    get cf() { return this.#cf; }
    get integrity() { return ''; }
    get keepalive() { return false; }
    clone() {
      if (bodyUsed(this)) throw new TypeError(usedMsg);
      const r = new Request(this.#url, { __proto__: null, method: this.#method, headers: this.#headers, redirect: this.#redirect, signal: this.signal, cf: this.#cf });
      cloneBody(this, r);
      return r;
    }
    static [internal](r, guard) { Headers[internal](r.#headers, guard); return r; }
  }
  tag(Request, 'Request');

  const nullBodyStatus = [101, 204, 205, 304];
  const redirectStatus = [301, 302, 303, 307, 308];
  let responseState; // r -> [status, statusText, headers, type]; throws for a non-Response
  class Response extends Body {
    #status = 200; #statusText = ''; #headers; #type = 'default'; #url = ''; #redirected = false;
    static {
      responseState = r => ({ __proto__: null, status: r.#status, statusText: r.#statusText, headers: r.#headers, type: r.#type });
      responseHeaders = r => r.#headers;
    }
    constructor(body = null, init = undefined) {
      super();
      init = init || noInit;
      if (init.status !== undefined) {
        const s = Number(init.status);
        if (!(s === 101 || (s >= 200 && s <= 599)) || !NumberIsInteger(s)) throw new RangeError(`Invalid status code: ${init.status}. Status code must be between 200 and 599, inclusive.`);
        this.#status = s;
      }
      if (init.statusText !== undefined) {
        const t = String(init.statusText);
        if (reTest(/[^\t\x20-\x7e\x80-\xff]/, t)) throw new TypeError('Invalid statusText');
        this.#statusText = t;
      }
      this.#headers = new Headers(init.headers);
      if (body !== null && body !== undefined) {
        if (has(nullBodyStatus, this.#status)) throw new TypeError('Response with null body status (101, 204, 205, or 304) cannot have a body.');
        const eb = extractBody(body);
        if (eb[1] && !headersHas(this.#headers, 'content-type')) headersSet(this.#headers, 'content-type', eb[1]);
        this[internal]('set', eb[0]);
      }
    }
    static error() {
      const r = new Response(null, noInit);
      r.#status = 0;
      r.#type = 'error';
      Headers[internal](r.#headers, 'immutable');
      return r;
    }
    static redirect(url, status = 302) {
      const u = parseURL(String(url));
      if (!u) throw new TypeError(`Invalid URL: ${String(url)}`);
      status = Number(status);
      if (!has(redirectStatus, status)) throw new RangeError(`Invalid status code: ${status}. Status code must be one of 301, 302, 303, 307, or 308.`);
      const r = new Response(null, { __proto__: null, status });
      headersSet(r.#headers, 'location', u.href);
      Headers[internal](r.#headers, 'immutable');
      return r;
    }
    static json(data, init = undefined) {
      const s = JSONstringify(data);
      if (s === undefined) throw new TypeError('The data is not JSON serializable');
      const r = new Response(encode(s), init);
      if (!headersHas(r.#headers, 'content-type')) headersSet(r.#headers, 'content-type', 'application/json');
      return r;
    }
    static [internal](r, meta) {
      r.#url = meta.url || '';
      r.#redirected = !!meta.redirected;
      r.#statusText = meta.statusText || '';
      r.#status = meta.status;
      Headers[internal](r.#headers, 'immutable');
      return r;
    }
    get status() { return this.#status; }
    get statusText() { return this.#statusText; }
    get ok() { return this.#status >= 200 && this.#status <= 299; }
    get headers() { return this.#headers; }
    get type() { return this.#type; }
    get url() { return this.#url; }
    get redirected() { return this.#redirected; }
    get webSocket() { return null; }
    clone() {
      if (bodyUsed(this)) throw new TypeError(usedMsg);
      const r = new Response(null, { __proto__: null, headers: this.#headers });
      r.#status = this.#status;
      r.#statusText = this.#statusText;
      r.#type = this.#type;
      r.#url = this.#url;
      r.#redirected = this.#redirected;
      cloneBody(this, r);
      return r;
    }
  }
  bodyHeaders = b => (isRequest(b) ? requestHeaders(b) : responseHeaders(b));
  tag(Response, 'Response');

  // ---- fetch ----

  const inflight = new Map(); // id -> {resolve, reject}
  function fetch(input, init) {
    checkScope();
    return new Promise((resolve, reject) => {
      const req = new Request(input, init);
      if (req.signal.aborted) { reject(req.signal.reason); return; }
      const u = parseURL(req.url);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') {
        reject(new TypeError(`Fetch API cannot load: ${req.url}`));
        return;
      }
      const raw = req[internal]('raw');
      const send = bytes => {
        const meta = '{"method":' + JSONstringify(req.method) + ',"url":' + JSONstringify(req.url) +
          ',"headers":' + jsonPairs(headerList(requestHeaders(req))) + ',"redirect":' + JSONstringify(req.redirect) + '}';
        const id = hostFetch(meta, bytes);
        mapSet(inflight, id, { __proto__: null, resolve, reject });
        signalAlgorithm(req.signal, () => {
          if (mapDelete(inflight, id)) reject(req.signal.reason);
        });
      };
      if (isStream(raw)) promiseThen(readAll(raw), r => send(r.bytes), reject);
      else send(raw);
    });
  }
  function deliver(id, ok, meta, body) {
    const p = mapGet(inflight, id);
    if (!p) return;
    mapDelete(inflight, id);
    const m = JSONparse(meta);
    if (!ok) {
      p.reject(new TypeError(m.message));
      return;
    }
    const headers = m.headers;
    const r = new Response(null, noInit);
    if (!has(nullBodyStatus, m.status)) r[internal]('set', new Uint8Array(body));
    Headers[internal](responseHeaders(r), null, headers);
    p.resolve(Response[internal](r, m));
  }

  // ---- the session KV: env.SESSION (the profile's kv.binding) ----

  // Workers KV's API; every operation is one host call (sandbox/jskv.go)
  // that the node checks against the lease and meters. The request is
  // written out here, so no toJSON a worker defines is called but its
  // metadata's own. A refusal is an Error whose message starts with the
  // stable code (kv_quota_exceeded: ...).
  const kvMaxValue = 2 << 20;
  function kvError(code, message) { return new Error(code + ': ' + message); }
  function kvKey(k, what) {
    const s = String(k);
    if (stringToWellFormed(s) !== s) throw kvError('invalid_kv_key', what + ' is not valid UTF-8 (it has a lone surrogate)');
    return s;
  }
  function kvOption(o, name) {
    if (o === undefined || o === null) return undefined;
    if (typeof o !== 'object') throw new TypeError('KV options must be an object');
    return o[name];
  }
  // kvCall makes the host call: the reply's header and, for a get, the
  // value's bytes
  function kvCall(req, value) {
    const buf = hostKV(req, value);
    const all = new Uint8Array(buf);
    const n = all[0] | (all[1] << 8) | (all[2] << 16) | (all[3] << 24);
    const h = JSONparse(decode(new Uint8Array(buf, 4, n)));
    const err = own(h, 'error');
    if (err !== undefined) throw kvError(own(err, 'code'), own(err, 'message'));
    return { __proto__: null, found: own(h, 'found') === true, metadata: own(h, 'metadata'), list: own(h, 'list'),
      value: new Uint8Array(buf, 4 + n, taLength(all) - 4 - n) };
  }
  // own(o, k): o's own property k (the host's JSON), never an inherited one
  function own(o, k) { return ObjectHasOwn(o, k) ? o[k] : undefined; }
  function kvType(type) {
    const t = type === undefined || type === null ? 'text' : typeof type === 'string' ? type : kvOption(type, 'type');
    if (t === undefined) return 'text';
    if (t !== 'text' && t !== 'json' && t !== 'arrayBuffer' && t !== 'stream') {
      throw new TypeError('Unknown response type. Possible types are "text", "arrayBuffer", "json", and "stream".');
    }
    return t;
  }
  function kvValue(bytes, t) {
    switch (t) {
      case 'json': return JSONparse(decode(bytes));
      case 'arrayBuffer': return taBuffer(copyBytes(bytes));
      case 'stream': return streamOf(copyBytes(bytes));
      default: return decode(bytes);
    }
  }
  function kvGet(key, type) {
    const t = kvType(type);
    const h = kvCall('{"op":"get","key":' + JSONstringify(kvKey(key, 'a key')) + '}', undefined);
    if (!h.found) return { __proto__: null, value: null, metadata: null };
    return { __proto__: null, value: kvValue(h.value, t), metadata: h.metadata === undefined ? null : h.metadata };
  }
  const kvNamespace = ObjectFreeze({
    async get(key, type) { return kvGet(key, type).value; },
    async getWithMetadata(key, type) {
      const r = kvGet(key, type);
      return { value: r.value, metadata: r.metadata, cacheStatus: null };
    },
    async put(key, value, options) {
      let req = '{"op":"put","key":' + JSONstringify(kvKey(key, 'a key'));
      let bytes;
      if (typeof value === 'string') bytes = encode(value);
      else if (isBufferSource(value)) bytes = viewBytes(value);
      else if (isStream(value)) {
        const r = await readAll(value, kvMaxValue);
        if (r.over !== undefined) throw kvError('kv_value_too_large', 'a value is at most ' + kvMaxValue + ' bytes');
        bytes = r.bytes;
      } else {
        throw new TypeError('KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as values.');
      }
      const ttlOpt = kvOption(options, 'expirationTtl'), expOpt = kvOption(options, 'expiration');
      let ttl = 0;
      if (ttlOpt !== undefined) ttl = Number(ttlOpt);
      else if (expOpt !== undefined) ttl = Number(expOpt) - MathFloor(hostNow() / 1000);
      if ((ttlOpt !== undefined || expOpt !== undefined) && !(NumberIsInteger(ttl) && ttl > 0)) {
        throw kvError('invalid_kv_ttl', 'expirationTtl must be a positive whole number of seconds (expiration a time in the future)');
      }
      if (ttl > 0) req += ',"ttl":' + ttl;
      const md = kvOption(options, 'metadata');
      if (md !== undefined && md !== null) {
        const j = JSONstringify(md);
        if (typeof j !== 'string') throw kvError('invalid_kv_argument', 'metadata must be serializable to JSON');
        req += ',"metadata":' + j;
      }
      kvCall(req + '}', bytes);
    },
    async delete(key) {
      kvCall('{"op":"delete","key":' + JSONstringify(kvKey(key, 'a key')) + '}', undefined);
    },
    async list(options) {
      let req = '{"op":"list"';
      const prefix = kvOption(options, 'prefix'), cursor = kvOption(options, 'cursor'), limit = kvOption(options, 'limit');
      if (prefix !== undefined && prefix !== null) req += ',"prefix":' + JSONstringify(kvKey(prefix, 'prefix'));
      if (cursor !== undefined && cursor !== null) req += ',"cursor":' + JSONstringify(kvKey(cursor, 'cursor'));
      if (limit !== undefined && limit !== null) {
        const l = Number(limit);
        if (!NumberIsInteger(l)) throw kvError('invalid_kv_argument', 'limit must be a whole number');
        req += ',"limit":' + l;
      }
      const l = kvCall(req + '}', undefined).list;
      const keys = own(l, 'keys'), complete = own(l, 'list_complete') === true;
      if (complete) return { keys, list_complete: true, cacheStatus: null };
      return { keys, list_complete: false, cursor: own(l, 'cursor'), cacheStatus: null };
    },
  });

  // ---- the Workers module API ----

  let worker = null;
  const waits = new Set();
  const unhandled = new Map(); // promise -> reason
  function checkWorker(def) {
    if (def !== null && (typeof def === 'object' || typeof def === 'function') && typeof def.fetch === 'function') {
      worker = def;
      return true;
    }
    hostFail('invalid_worker', 'the module has no default export with a fetch handler: export default { async fetch(request, env, ctx) { ... } }');
    return false;
  }
  let outputLimit = Infinity;
  function dispatch(meta, body) {
    const m = JSONparse(meta);
    if (m.output_limit > 0) outputLimit = m.output_limit;
    timeOrigin = hostNow();
    inRequest = true;
    const headers = immutableHeaders(m.headers);
    const req = new Request({ [internal]: m.url }, { __proto__: null, method: m.method, redirect: 'manual' });
    Headers[internal](requestHeaders(req), 'immutable', headerList(headers));
    if (abByteLength(body) > 0) req[internal]('set', new Uint8Array(body));
    // env is the client's vars as JSON.parse made them: own properties only
    const env = ObjectHasOwn(m, 'env') && m.env !== null && typeof m.env === 'object' ? m.env : {};
    // the session KV's binding, when the task has one (it wins over a
    // client variable of the same name)
    if (typeof m.kv_binding === 'string' && m.kv_binding !== '') {
      ObjectDefineProperty(env, m.kv_binding, { __proto__: null, value: kvNamespace, writable: true, enumerable: true, configurable: true });
    }
    const ctx = {
      waitUntil(p) {
        const pr = resolved(p);
        setAdd(waits, pr);
        const done = () => setDelete(waits, pr);
        promiseThen(pr, done, e => { done(); reportError(e); });
      },
      passThroughOnException() {},
      // leash's own values, apart from the client's env
      leash: ObjectFreeze({ attempt: m.attempt || 1, idempotencyKey: m.idempotency_key || null }),
    };
    let result;
    try {
      result = worker.fetch(req, env, ctx);
    } catch (e) {
      failWith(e);
      return;
    }
    promiseThen(promiseThen(resolved(result), respond), undefined, failWith);
  }
  // respond reads the Response's own state, never its (redefinable)
  // getters; a streamed body is bounded by output_bytes as it is read.
  async function respond(res) {
    let st;
    try { st = responseState(res); } catch {
      throw new TypeError("Incorrect type for Promise: the Promise did not resolve to 'Response'.");
    }
    const status = st.status, statusText = st.statusText, headers = st.headers, type = st.type;
    if (type === 'error') throw new TypeError('Return value from serve handler must not be an error response (like Response.error())');
    const raw = bodyRaw(res);
    let bytes = null;
    if (raw !== null && bodyUsed(res)) throw new TypeError(usedMsg);
    if (isStream(raw)) {
      const r = await readAll(raw, outputLimit);
      if (r.over !== undefined) {
        hostRespond('{"over":' + r.over + '}', null);
        return;
      }
      bytes = r.bytes;
    } else if (raw !== null) {
      bytes = raw;
    }
    // the meta is written out here: no toJSON a worker defines is called
    hostRespond('{"status":' + status + ',"statusText":' + JSONstringify(statusText) + ',"headers":' +
      jsonPairs(headerPairs(headers)) + ',"waits":' + setSize(waits) + '}', bytes);
  }
  function jsonPairs(pairs) {
    let out = '[';
    for (let i = 0; i < pairs.length; i++) out += (i ? ',[' : '[') + JSONstringify(pairs[i][0]) + ',' + JSONstringify(pairs[i][1]) + ']';
    return out + ']';
  }
  function failWith(e) {
    const s = describeError(e);
    hostLog(4, 'Uncaught ' + s);
    hostFail('uncaught_exception', s);
  }
  function tick() {
    if (mapSize(unhandled)) {
      const reasons = [];
      mapForEach(unhandled, r => push(reasons, r));
      mapClear(unhandled);
      for (let i = 0; i < reasons.length; i++) hostLog(4, 'Uncaught (in promise) ' + describeError(reasons[i]));
    }
    const now = hostNow();
    let best = null, bestId = 0;
    mapForEach(timers, (t, id) => {
      if (best === null || t.due < best.due || (t.due === best.due && t.seq < best.seq)) { best = t; bestId = id; }
    });
    if (best !== null && best.due <= now) {
      const t = best;
      if (t.interval) { t.due = now + t.interval; t.seq = nextTimerId++; } else mapDelete(timers, bestId);
      try { ReflectApply(t.fn, undefined, t.args); } catch (e) { reportError(e); }
      return [true];
    }
    return [false, best === null ? -1 : MathMax(0, MathCeil(best.due - now)), setSize(waits)];
  }
  function rejected(promise, reason, handled) {
    if (handled) mapDelete(unhandled, promise);
    else mapSet(unhandled, promise, reason);
  }

  // ---- globals ----

  const globals = {
    DOMException, Event, EventTarget, AbortController, AbortSignal,
    setTimeout, setInterval, clearTimeout, clearInterval: clearTimeout, queueMicrotask, reportError,
    console, TextEncoder, TextDecoder, TextEncoderStream, TextDecoderStream, atob, btoa, structuredClone, CustomEvent,
    crypto: new Crypto(internal), Crypto, SubtleCrypto,
    URL, URLSearchParams, Blob, File, FormData,
    ReadableStream, WritableStream, TransformStream,
    Headers, Request, Response, fetch,
    performance: { now: performanceNow, get timeOrigin() { return timeOrigin; } },
    navigator: { userAgent: 'Cloudflare-Workers', hardwareConcurrency: 1 },
    self: G,
  };
  for (const k of Object.keys(globals)) defineGlobal(k, globals[k]);

  return {
    dispatch, deliver, tick, worker: checkWorker, rejected,
    report: e => describeError(e),
  };
})
