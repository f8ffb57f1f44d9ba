// leash JS prelude: the Workers module API and the WinterTC minimum common
// API on top of QuickJS. Evaluated once, before the snapshot; the shim calls
// this function with the host object (natives in engine/shim.c) and keeps
// the hooks it returns. Nothing here is reachable by the worker except the
// globals it installs.
(function (host) {
  'use strict';

  const G = globalThis;
  const hostLog = host.log, hostNow = host.now, hostRandom = host.random;
  const hostDigest = host.digest, hostURL = host.urlParse, hostFetch = host.fetch;
  const hostRespond = host.respond, hostFail = host.fail;
  const utf8Encode = host.utf8Encode, utf8Decode = host.utf8Decode;
  const JSONparse = JSON.parse, JSONstringify = JSON.stringify;
  const internal = Symbol('leash.internal');

  function defineGlobal(name, value) {
    Object.defineProperty(G, name, { value, writable: true, configurable: true, enumerable: false });
  }
  function tag(cls, name) {
    Object.defineProperty(cls.prototype, Symbol.toStringTag, { value: name, configurable: true });
  }
  function isBufferSource(v) {
    return v instanceof ArrayBuffer || ArrayBuffer.isView(v);
  }
  function toBytes(v) { // a copy as Uint8Array
    if (v instanceof ArrayBuffer) return new Uint8Array(v.slice(0));
    if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
    throw new TypeError('not a BufferSource');
  }
  function viewBytes(v) { // no copy
    if (v instanceof ArrayBuffer) return new Uint8Array(v);
    if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    throw new TypeError('not a BufferSource');
  }
  function concatBytes(chunks) {
    let n = 0;
    for (const c of chunks) n += c.byteLength;
    const out = new Uint8Array(n);
    let o = 0;
    for (const c of chunks) { out.set(c, o); o += c.byteLength; }
    return out;
  }
  function encode(s) { return new Uint8Array(utf8Encode(String(s).toWellFormed())); }
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

  class Event {
    #type; #opts; #stop = false; #canceled = false;
    constructor(type, init = {}) {
      if (arguments.length === 0) throw new TypeError("Failed to construct 'Event': 1 argument required, but only 0 present.");
      this.#type = String(type);
      this.#opts = init || {};
      this.target = null;
      this.currentTarget = null;
      this.timeStamp = performanceNow();
    }
    get type() { return this.#type; }
    get bubbles() { return !!this.#opts.bubbles; }
    get cancelable() { return !!this.#opts.cancelable; }
    get defaultPrevented() { return this.#canceled; }
    preventDefault() { if (this.cancelable) this.#canceled = true; }
    stopImmediatePropagation() { this.#stop = true; }
    stopPropagation() {}
    get [internal]() { return this.#stop; }
  }
  tag(Event, 'Event');

  class EventTarget {
    #listeners = new Map();
    // type -> Map(listener -> entry), in the order they were added: one
    // lookup per add or remove, whatever the count
    addEventListener(type, listener, options) {
      if (listener == null) return;
      type = String(type);
      const once = typeof options === 'object' && options !== null && !!options.once;
      const signal = typeof options === 'object' && options !== null ? options.signal : undefined;
      if (signal !== undefined && signal !== null && !(signal instanceof AbortSignal)) {
        throw new TypeError("Failed to execute 'addEventListener' on 'EventTarget': member signal is not of type AbortSignal.");
      }
      if (signal && signal.aborted) return;
      let list = this.#listeners.get(type);
      if (!list) this.#listeners.set(type, list = new Map());
      if (list.has(listener)) return;
      const entry = { listener, once, removed: false };
      list.set(listener, entry);
      if (signal) signalAlgorithm(signal, () => this.removeEventListener(type, listener));
    }
    removeEventListener(type, listener) {
      const list = this.#listeners.get(String(type));
      const entry = list && list.get(listener);
      if (!entry) return;
      entry.removed = true;
      list.delete(listener);
    }
    dispatchEvent(event) {
      if (!(event instanceof Event)) throw new TypeError('The event must be an Event');
      event.target = this;
      event.currentTarget = this;
      // the listeners as the dispatch starts; one removed meanwhile is
      // not called (DOM "inner invoke")
      const list = [...(this.#listeners.get(event.type) || new Map()).values()];
      for (const l of list) {
        if (l.removed) continue;
        if (l.once) this.removeEventListener(event.type, l.listener);
        try {
          if (typeof l.listener === 'function') l.listener.call(this, event);
          else if (l.listener && typeof l.listener.handleEvent === 'function') l.listener.handleEvent(event);
        } catch (e) {
          reportError(e);
        }
        if (event[internal]) break;
      }
      event.currentTarget = null;
      return !event.defaultPrevented;
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
    static { signalAlgorithm = (s, fn) => { s.#algorithms.push(fn); }; }
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
      this.dispatchEvent(new Event('abort'));
    }
    [internal](reason) {
      if (this.#aborted) return;
      this.#aborted = true;
      this.#reason = reason === undefined ? new DOMException('The operation was aborted', 'AbortError') : reason;
      const toAbort = [];
      for (const d of this.#dependents) {
        if (!d.#aborted) { d.#aborted = true; d.#reason = this.#reason; toAbort.push(d); }
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
        if (!(x instanceof AbortSignal)) throw new TypeError("Failed to execute 'any' on 'AbortSignal': parameter 1 is not of type 'AbortSignal'.");
        if (x.#aborted) { s.#aborted = true; s.#reason = x.#reason; return s; }
      }
      s.#sources = new Set();
      for (const x of list) {
        for (const src of x.#sources || [x]) s.#sources.add(src);
      }
      for (const src of s.#sources) src.#dependents.push(s);
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
    timers.set(id, { due: hostNow() + ms, seq: id, fn, args, interval: repeat ? Math.max(ms, 1) : 0 });
    return id;
  }
  function setTimeout(fn, ms, ...args) { return addTimer(fn, ms, args, false); }
  function setInterval(fn, ms, ...args) { return addTimer(fn, ms, args, true); }
  function clearTimeout(id) { timers.delete(Number(id)); }
  function queueMicrotask(fn) {
    if (typeof fn !== 'function') throw new TypeError("The argument to queueMicrotask() must be a function");
    Promise.resolve().then(() => { try { fn(); } catch (e) { reportError(e); } });
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
      if (v.length > 100) parts.push(`... ${v.length - 100} more items`);
      return '[ ' + parts.join(', ') + ' ]';
    }
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
      const parts = Array.from(v.slice(0, 100), x => inspect(x, d, seen));
      if (v.length > 100) parts.push(`... ${v.length - 100} more items`);
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
    return s.length > maxErrorPart ? s.slice(0, maxErrorPart) + `… [truncated ${s.length - maxErrorPart} characters]` : s;
  }
  function describeError(e) {
    try {
      if (e instanceof Error || (e && typeof e === 'object' && 'message' in e && 'name' in e)) {
        let s = `${cut(e.name)}: ${cut(e.message)}`;
        const st = e.stack;
        if (typeof st === 'string' && st) s += '\n' + cut(st).replace(/\n$/, '');
        return s;
      }
      return cut(inspect(e, 1, []));
    } catch {
      return 'exception';
    }
  }

  // ---- encoding ----

  const utf8Labels = ['utf-8', 'utf8', 'unicode-1-1-utf-8', 'unicode11utf8', 'unicode20utf8', 'x-unicode20utf8'];
  const utf16leLabels = ['utf-16le', 'utf-16', 'ucs-2', 'unicode', 'csunicode', 'iso-10646-ucs-2', 'unicodefeff'];
  const latin1Labels = ['windows-1252', 'latin1', 'iso-8859-1', 'ascii', 'us-ascii', 'l1', 'cp1252', 'x-cp1252', 'iso8859-1', 'iso_8859-1', 'cp819', 'ibm819', 'csisolatin1', 'iso-ir-100', 'ansi_x3.4-1968'];

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

  class TextDecoder {
    #enc; #fatal; #ignoreBOM; #pending = null; #bomSeen = false;
    constructor(label = 'utf-8', options = {}) {
      const l = String(label).trim().toLowerCase();
      if (utf8Labels.includes(l)) this.#enc = 'utf-8';
      else if (utf16leLabels.includes(l)) this.#enc = 'utf-16le';
      else if (latin1Labels.includes(l)) this.#enc = 'windows-1252';
      else throw new RangeError(`"${label}" is not a valid encoding.`);
      options = options || {};
      this.#fatal = !!options.fatal;
      this.#ignoreBOM = !!options.ignoreBOM;
    }
    get encoding() { return this.#enc; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    decode(input, options = {}) {
      const stream = !!(options && options.stream);
      let bytes = input === undefined ? new Uint8Array(0) : viewBytes(input);
      if (this.#pending) { bytes = concatBytes([this.#pending, bytes]); this.#pending = null; }
      if (this.#enc === 'windows-1252') {
        let s = '';
        for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
        return s;
      }
      if (this.#enc === 'utf-16le') {
        if (stream && bytes.length % 2) { this.#pending = bytes.slice(bytes.length - 1); bytes = bytes.subarray(0, bytes.length - 1); }
        let s = '';
        for (let i = 0; i + 1 < bytes.length; i += 2) s += String.fromCharCode(bytes[i] | (bytes[i + 1] << 8));
        if (!stream && bytes.length % 2) { if (this.#fatal) throw new TypeError('The encoded data was not valid for encoding utf-16le'); s += '\ufffd'; }
        if (!this.#ignoreBOM && !this.#bomSeen && s.length) { this.#bomSeen = true; if (s.charCodeAt(0) === 0xfeff) s = s.slice(1); }
        if (!stream) this.#bomSeen = false;
        return s.toWellFormed();
      }
      if (stream) {
        // keep an incomplete trailing sequence for the next call
        let i = bytes.length - 1, k = 0;
        while (i >= 0 && k < 3 && (bytes[i] & 0xc0) === 0x80) { i--; k++; }
        if (i >= 0) {
          const b = bytes[i];
          const need = b >= 0xf0 && b <= 0xf4 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 && b < 0xe0 ? 2 : 1;
          if (need > 1 && bytes.length - i < need) {
            this.#pending = bytes.slice(i);
            bytes = bytes.subarray(0, i);
          }
        }
      }
      const s = utf8Decode(bytes, this.#fatal);
      if (s === null) throw new TypeError('The encoded data was not valid for encoding utf-8');
      let out = s;
      if (!this.#ignoreBOM && !this.#bomSeen && out.length) {
        this.#bomSeen = true;
        if (out.charCodeAt(0) === 0xfeff) out = out.slice(1);
      }
      if (!stream) this.#bomSeen = false;
      return out;
    }
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
    if (options && options.transfer && options.transfer.length) {
      throw new DOMException('Transferring objects is not supported.', 'DataCloneError');
    }
    return clone(value);
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
  const notSupported = what => () => Promise.reject(new DOMException(`crypto.subtle.${what} is not supported by leash`, 'NotSupportedError'));
  class SubtleCrypto {
    constructor(key) { if (key !== internal) throw new TypeError('Illegal constructor'); }
    digest(alg, data) {
      try {
        const id = digestIds[algName(alg)];
        if (!id) throw new DOMException('Unrecognized name.', 'NotSupportedError');
        if (!isBufferSource(data)) throw new TypeError("Failed to execute 'digest' on 'SubtleCrypto': parameter 2 is not of type 'ArrayBuffer or ArrayBufferView'.");
        return Promise.resolve(hostDigest(id, viewBytes(data)));
      } catch (e) {
        return Promise.reject(e);
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
      list.push([percentDecode(k.replace(/\+/g, ' ')), percentDecode(v.replace(/\+/g, ' '))]);
    }
    return list;
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
    #list = []; #byName = new Map(); #dead = 0;
    constructor(pairs) { if (pairs) for (const [k, v] of pairs) this.append(k, v); }
    get size() { return this.#list.length - this.#dead; }
    append(k, v) {
      const e = [k, v];
      this.#list.push(e);
      const a = this.#byName.get(k);
      if (a) a.push(e); else this.#byName.set(k, [e]);
    }
    #kill(e) { e.dead = true; this.#dead++; }
    #compact() {
      if (this.#dead > 32 && this.#dead * 2 > this.#list.length) {
        this.#list = this.#list.filter(e => !e.dead);
        this.#dead = 0;
      }
    }
    delete(k, pred) {
      const a = this.#byName.get(k);
      if (!a) return;
      const keep = [];
      for (const e of a) { if (!pred || pred(e[1])) this.#kill(e); else keep.push(e); }
      if (keep.length) this.#byName.set(k, keep); else this.#byName.delete(k);
      this.#compact();
    }
    get(k) { const a = this.#byName.get(k); return a ? a[0][1] : null; }
    getAll(k) { const a = this.#byName.get(k); return a ? a.map(e => e[1]) : []; }
    has(k, pred) { const a = this.#byName.get(k); return !!a && (!pred || a.some(e => pred(e[1]))); }
    set(k, v) {
      const a = this.#byName.get(k);
      if (!a) { this.append(k, v); return; }
      a[0][1] = v;
      for (let i = 1; i < a.length; i++) this.#kill(a[i]);
      a.length = 1;
      this.#compact();
    }
    pairs() { return this.#list.filter(e => !e.dead); }
    replace(pairs) {
      this.#list = []; this.#byName = new Map(); this.#dead = 0;
      for (const [k, v] of pairs) this.append(k, v);
    }
  }

  class URLSearchParams {
    #list = new EntryList(); #url = null;
    constructor(init = '') {
      if (init instanceof URLSearchParams) this.#list = new EntryList(init.#list.pairs());
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
      if (this.#url) this.#url[internal](this.toString());
    }
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
    forEach(cb, thisArg) { for (const [k, v] of this.#list.pairs()) cb.call(thisArg, v, k, this); }
    *entries() { for (const p of this.#list.pairs()) yield [p[0], p[1]]; }
    *keys() { for (const p of this.#list.pairs()) yield p[0]; }
    *values() { for (const p of this.#list.pairs()) yield p[1]; }
    [Symbol.iterator]() { return this.entries(); }
    toString() { return this.#list.pairs().map(([k, v]) => formEncode(k) + '=' + formEncode(v)).join('&'); }
  }
  tag(URLSearchParams, 'URLSearchParams');

  const specialSchemes = ['http:', 'https:', 'ws:', 'wss:', 'ftp:', 'file:'];
  function parseURL(input, base) {
    const r = hostURL(String(input), base === undefined ? undefined : String(base));
    return r === null ? null : JSONparse(r);
  }
  class URL {
    #u; #params = null;
    constructor(url, base) {
      if (arguments.length === 0) throw new TypeError("Failed to construct 'URL': 1 argument required, but only 0 present.");
      const u = parseURL(url, base === undefined ? undefined : (base instanceof URL ? base.href : String(base)));
      if (!u) throw new TypeError('Invalid URL string.');
      this.#u = u;
    }
    static canParse(url, base) { return parseURL(url, base) !== null; }
    static parse(url, base) { try { return new URL(url, base); } catch { return null; } }
    #reparse(href) {
      const u = parseURL(href);
      if (u) {
        this.#u = u;
        if (this.#params) URLSearchParams[internal](this.#params, this, u.search.slice(1));
      }
    }
    [internal](query) { // from searchParams
      const u = this.#u;
      const href = u.href.slice(0, u.href.length - u.hash.length - u.search.length) + (query ? '?' + query : '') + u.hash;
      const p = parseURL(href);
      if (p) this.#u = p;
    }
    #rebuild(parts) {
      const u = Object.assign({}, this.#u, parts);
      const hasAuthority = this.#u.href.startsWith(this.#u.protocol + '//');
      let auth = '';
      if (hasAuthority) {
        const cred = u.username || u.password ? u.username + (u.password ? ':' + u.password : '') + '@' : '';
        auth = '//' + cred + u.hostname + (u.port ? ':' + u.port : '');
      }
      return u.protocol + auth + u.pathname + u.search + u.hash;
    }
    get href() { return this.#u.href; }
    set href(v) {
      const u = parseURL(v);
      if (!u) throw new TypeError('Invalid URL string.');
      this.#u = u;
      if (this.#params) URLSearchParams[internal](this.#params, this, u.search.slice(1));
    }
    get origin() { return this.#u.origin; }
    get protocol() { return this.#u.protocol; }
    set protocol(v) {
      let p = String(v);
      const i = p.indexOf(':');
      if (i >= 0) p = p.slice(0, i);
      p = p.toLowerCase() + ':';
      if (!/^[a-z][a-z0-9+.-]*:$/.test(p)) return;
      if (specialSchemes.includes(p) !== specialSchemes.includes(this.#u.protocol)) return;
      if (p === 'file:' && (this.#u.username || this.#u.password || this.#u.port)) return;
      const href = this.#u.href;
      const u = parseURL(p + href.slice(this.#u.protocol.length));
      if (u) this.#u = u;
    }
    get username() { return this.#u.username; }
    set username(v) { if (this.#u.hostname && this.#u.protocol !== 'file:') this.#reparse(this.#rebuild({ username: encodeUserinfo(String(v)) })); }
    get password() { return this.#u.password; }
    set password(v) { if (this.#u.hostname && this.#u.protocol !== 'file:') this.#reparse(this.#rebuild({ password: encodeUserinfo(String(v)) })); }
    get host() { return this.#u.host; }
    set host(v) {
      v = String(v);
      if (!this.#u.href.startsWith(this.#u.protocol + '//') || v === '') return;
      const m = /^(\[[^\]]*\]|[^:/?#\\]*)(?::(\d*))?/.exec(v);
      const parts = { hostname: m[1] };
      if (m[2] !== undefined && m[2] !== '') parts.port = m[2];
      const u = parseURL(this.#rebuild(parts));
      if (u) this.#u = u;
    }
    get hostname() { return this.#u.hostname; }
    set hostname(v) {
      v = String(v);
      if (!this.#u.href.startsWith(this.#u.protocol + '//') || v === '') return;
      const m = /^(\[[^\]]*\]|[^:/?#\\]*)/.exec(v);
      const u = parseURL(this.#rebuild({ hostname: m[1] }));
      if (u) this.#u = u;
    }
    get port() { return this.#u.port; }
    set port(v) {
      v = String(v);
      if (!this.#u.hostname || this.#u.protocol === 'file:') return;
      const m = /^\d*/.exec(v)[0];
      if (v !== '' && m === '') return;
      const u = parseURL(this.#rebuild({ port: m }));
      if (u) this.#u = u;
    }
    get pathname() { return this.#u.pathname; }
    set pathname(v) {
      if (!this.#u.pathname.startsWith('/') && !specialSchemes.includes(this.#u.protocol) && !this.#u.href.startsWith(this.#u.protocol + '//')) return; // opaque path
      let p = String(v).replace(/\?/g, '%3F').replace(/#/g, '%23');
      if (!p.startsWith('/') && (specialSchemes.includes(this.#u.protocol) || this.#u.host)) p = '/' + p;
      this.#reparse(this.#rebuild({ pathname: p }));
    }
    get search() { return this.#u.search; }
    set search(v) {
      let s = String(v).replace(/#/g, '%23');
      if (s[0] === '?') s = s.slice(1);
      this.#reparse(this.#rebuild({ search: s ? '?' + s : '' }));
      if (this.#params) URLSearchParams[internal](this.#params, this, this.#u.search.slice(1));
    }
    get hash() { return this.#u.hash; }
    set hash(v) {
      let s = String(v);
      if (s[0] === '#') s = s.slice(1);
      this.#reparse(this.#rebuild({ hash: s ? '#' + s : '' }));
    }
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
  function encodeUserinfo(s) {
    return Array.from(encode(s), c => {
      const ch = String.fromCharCode(c);
      return c > 0x20 && c < 0x7f && !'"#<>?`{}/:;=@[\\]^|'.includes(ch) ? ch : '%' + hexd[c >> 4] + hexd[c & 15];
    }).join('');
  }

  // ---- Blob, FormData ----

  class Blob {
    #bytes; #type;
    constructor(parts = [], options = {}) {
      const chunks = [];
      for (const p of parts) {
        if (p instanceof Blob) chunks.push(p.#bytes);
        else if (isBufferSource(p)) chunks.push(toBytes(p));
        else chunks.push(encode(p));
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
    arrayBuffer() { return Promise.resolve(this.#bytes.slice().buffer); }
    bytes() { return Promise.resolve(this.#bytes.slice()); }
    text() { return Promise.resolve(decode(this.#bytes)); }
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
    forEach(cb, thisArg) { for (const [k, v] of this.#list.pairs()) cb.call(thisArg, v, k, this); }
    *entries() { for (const p of this.#list.pairs()) yield [p[0], p[1]]; }
    *keys() { for (const p of this.#list.pairs()) yield p[0]; }
    *values() { for (const p of this.#list.pairs()) yield p[1]; }
    [Symbol.iterator]() { return this.entries(); }
  }
  tag(FormData, 'FormData');
  function multipart(fd) {
    const b = new Uint8Array(16);
    hostRandom(b);
    const boundary = '----formdata-leash-' + Array.from(b, x => x.toString(16).padStart(2, '0')).join('');
    const esc = s => s.replace(/\n/g, '%0A').replace(/\r/g, '%0D').replace(/"/g, '%22');
    const chunks = [];
    for (const [k, v] of fd) {
      let head = `--${boundary}\r\nContent-Disposition: form-data; name="${esc(k)}"`;
      if (v instanceof File) {
        head += `; filename="${esc(v.name)}"\r\nContent-Type: ${v.type || 'application/octet-stream'}\r\n\r\n`;
        chunks.push(encode(head), Blob[internal](v), encode('\r\n'));
      } else {
        chunks.push(encode(head + '\r\n\r\n' + v.replace(/\r(?!\n)|(?<!\r)\n/g, '\r\n') + '\r\n'));
      }
    }
    chunks.push(encode(`--${boundary}--\r\n`));
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

  class ReadableStream {
    #queue = []; #state = 'readable'; #error; #reader = null; #waiters = [];
    #source; #controller; #started = false; #pulling = false; #pullAgain = false;
    #closeRequested = false; #disturbed = false; #hwm;
    constructor(source = {}, strategy = {}) {
      this.#source = source || {};
      this.#hwm = strategy && strategy.highWaterMark !== undefined ? Number(strategy.highWaterMark) : 1;
      const self = this;
      this.#controller = {
        enqueue(chunk) { self.#enqueue(chunk); },
        close() { self.#closeReq(); },
        error(e) { self.#fail(e); },
        get desiredSize() { return self.#state === 'readable' ? self.#hwm - self.#queue.length : self.#state === 'closed' ? 0 : null; },
      };
      let r;
      try {
        r = typeof this.#source.start === 'function' ? this.#source.start(this.#controller) : undefined;
      } catch (e) { this.#fail(e); throw e; }
      Promise.resolve(r).then(() => { this.#started = true; this.#pullIfNeeded(); }, e => this.#fail(e));
    }
    #enqueue(chunk) {
      if (this.#closeRequested || this.#state !== 'readable') throw new TypeError('This ReadableStream is closed.');
      if (this.#waiters.length) this.#waiters.shift().resolve({ value: chunk, done: false });
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
      for (const w of this.#waiters.splice(0)) w.resolve({ value: undefined, done: true });
    }
    #fail(e) {
      if (this.#state !== 'readable') return;
      this.#state = 'errored';
      this.#error = e;
      this.#queue = [];
      for (const w of this.#waiters.splice(0)) w.reject(e);
    }
    #pullIfNeeded() {
      if (!this.#started || this.#state !== 'readable' || this.#closeRequested || typeof this.#source.pull !== 'function') return;
      if (this.#waiters.length === 0 && this.#queue.length >= this.#hwm) return;
      if (this.#pulling) { this.#pullAgain = true; return; }
      this.#pulling = true;
      let r;
      try { r = this.#source.pull(this.#controller); } catch (e) { this.#fail(e); return; }
      Promise.resolve(r).then(() => {
        this.#pulling = false;
        if (this.#pullAgain) { this.#pullAgain = false; this.#pullIfNeeded(); }
      }, e => this.#fail(e));
    }
    [internal](op) { // the reader's operations
      if (op === 'read') {
        this.#disturbed = true;
        if (this.#queue.length) {
          const value = this.#queue.shift();
          if (this.#closeRequested && this.#queue.length === 0) this.#finish();
          else this.#pullIfNeeded();
          return Promise.resolve({ value, done: false });
        }
        if (this.#state === 'closed') return Promise.resolve({ value: undefined, done: true });
        if (this.#state === 'errored') return Promise.reject(this.#error);
        return new Promise((resolve, reject) => { this.#waiters.push({ resolve, reject }); this.#pullIfNeeded(); });
      }
      if (op === 'disturbed') return this.#disturbed;
      if (op === 'state') return this.#state;
      if (op === 'error') return this.#error;
    }
    get locked() { return this.#reader !== null; }
    cancel(reason) {
      if (this.#reader) return Promise.reject(new TypeError('This ReadableStream is currently locked to a reader.'));
      return this.#cancel(reason);
    }
    #cancel(reason) {
      this.#disturbed = true;
      if (this.#state === 'closed') return Promise.resolve();
      if (this.#state === 'errored') return Promise.reject(this.#error);
      this.#queue = [];
      this.#finish();
      try {
        return Promise.resolve(typeof this.#source.cancel === 'function' ? this.#source.cancel(reason) : undefined).then(() => undefined);
      } catch (e) { return Promise.reject(e); }
    }
    getReader(options) {
      if (options && options.mode === 'byob') throw new TypeError('BYOB readers are not supported by leash');
      if (this.#reader) throw new TypeError('This ReadableStream is currently locked to a reader.');
      const stream = this;
      let released = false;
      const reader = {
        read() {
          if (released) return Promise.reject(new TypeError('This ReadableStream reader has been released.'));
          return stream[internal]('read');
        },
        releaseLock() { released = true; stream.#reader = null; },
        cancel(reason) { return stream.#cancel(reason); },
        get closed() {
          const st = stream.#state;
          if (st === 'closed') return Promise.resolve();
          if (st === 'errored') return Promise.reject(stream.#error);
          return new Promise((res, rej) => {
            const check = () => { const s = stream.#state; if (s === 'closed') res(); else if (s === 'errored') rej(stream.#error); else setTimeout(check, 1); };
            check();
          });
        },
      };
      this.#reader = reader;
      return reader;
    }
    async *values(options) {
      const reader = this.getReader();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          yield value;
        }
      } finally {
        if (!(options && options.preventCancel)) reader.cancel();
        reader.releaseLock();
      }
    }
    [Symbol.asyncIterator](options) { return this.values(options); }
    tee() {
      const reader = this.getReader();
      let c1, c2;
      const pump = () => reader.read().then(({ value, done }) => {
        if (done) { try { c1.close(); } catch {} try { c2.close(); } catch {} return; }
        try { c1.enqueue(value); } catch {}
        try { c2.enqueue(value); } catch {}
      }, e => { c1.error(e); c2.error(e); });
      const a = new ReadableStream({ start(c) { c1 = c; }, pull: pump });
      const b = new ReadableStream({ start(c) { c2 = c; }, pull: pump });
      return [a, b];
    }
    pipeTo(dest, options = {}) {
      const reader = this.getReader();
      const writer = dest.getWriter();
      const loop = () => reader.read().then(({ value, done }) => {
        if (done) { reader.releaseLock(); writer.releaseLock(); return options.preventClose ? undefined : dest[internal]('close'); }
        return writer.write(value).then(loop);
      });
      return loop();
    }
    pipeThrough(pair, options) {
      this.pipeTo(pair.writable, options).catch(() => {});
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
  tag(ReadableStream, 'ReadableStream');
  function streamOf(bytes) {
    return new ReadableStream({ start(c) { if (bytes.length) c.enqueue(bytes); c.close(); } });
  }
  // readAll(stream[, limit]): the stream's bytes; past limit bytes, it
  // stops reading and returns the count read so far (a number).
  async function readAll(stream, limit = Infinity) {
    const reader = stream.getReader();
    const chunks = [];
    let n = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (typeof value === 'string') throw new TypeError('This TransformStream is being used as a byte stream, but received a string on its writable side. If you wish to write a string, you\'ll probably want to explicitly UTF-8-encode it with TextEncoder.');
      if (!isBufferSource(value)) throw new TypeError('This ReadableStream did not return bytes.');
      const b = viewBytes(value);
      n += b.byteLength;
      if (n > limit) return n;
      chunks.push(b);
    }
    return concatBytes(chunks);
  }

  class WritableStream {
    #sink; #chain; #state = 'writable'; #writer = null; #error;
    constructor(sink = {}) {
      this.#sink = sink || {};
      const controller = { error: e => { this.#state = 'errored'; this.#error = e; } };
      this.#chain = Promise.resolve(typeof this.#sink.start === 'function' ? this.#sink.start(controller) : undefined);
    }
    get locked() { return this.#writer !== null; }
    [internal](op, arg) {
      if (this.#state === 'errored') return Promise.reject(this.#error);
      if (op === 'write') {
        if (this.#state !== 'writable') return Promise.reject(new TypeError('This WritableStream has been closed.'));
        this.#chain = this.#chain.then(() => (typeof this.#sink.write === 'function' ? this.#sink.write(arg) : undefined));
      } else if (op === 'close') {
        if (this.#state !== 'writable') return Promise.reject(new TypeError('This WritableStream has been closed.'));
        this.#state = 'closed';
        this.#chain = this.#chain.then(() => (typeof this.#sink.close === 'function' ? this.#sink.close() : undefined));
      } else if (op === 'abort') {
        this.#state = 'errored';
        this.#error = arg;
        return Promise.resolve(typeof this.#sink.abort === 'function' ? this.#sink.abort(arg) : undefined);
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
        get ready() { return Promise.resolve(); },
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
    constructor(transformer = {}) {
      transformer = transformer || {};
      let rc;
      this.#readable = new ReadableStream({ start(c) { rc = c; } });
      const tc = {
        enqueue: chunk => rc.enqueue(chunk),
        error: e => rc.error(e),
        terminate: () => rc.close(),
        get desiredSize() { return rc.desiredSize; },
      };
      if (typeof transformer.start === 'function') transformer.start(tc);
      this.#writable = new WritableStream({
        write: chunk => (typeof transformer.transform === 'function' ? transformer.transform(chunk, tc) : rc.enqueue(chunk)),
        close: async () => { if (typeof transformer.flush === 'function') await transformer.flush(tc); rc.close(); },
        abort: e => rc.error(e),
      });
    }
    get readable() { return this.#readable; }
    get writable() { return this.#writable; }
  }
  tag(TransformStream, 'TransformStream');

  // ---- Headers ----

  const tokenRe = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  // workerd accepts any byte above 0x7f in a header name too
  const headerNameRe = /^[!#$%&'*+\-.^_`|~0-9A-Za-z\x80-\xff]+$/;
  function normalizeValue(v) {
    v = String(v).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, '');
    if (/[\0\r\n]/.test(v)) throw new TypeError('Invalid header value.');
    return v;
  }
  function checkName(n) {
    n = String(n);
    if (!headerNameRe.test(n)) throw new TypeError(`Invalid header name.`);
    return n.toLowerCase();
  }
  // Headers: name -> [values] in a Map (lower-case names; the order that
  // matters is the sorted one), so each operation is one lookup.
  let headerPairs; // h -> [[name, value]...], not reachable by the worker
  class Headers {
    #map = new Map(); #guard = 'none';
    static {
      headerPairs = h => {
        const out = [];
        for (const [k, vs] of h.#map) for (const v of vs) out.push([k, v]);
        return out;
      };
    }
    constructor(init) {
      if (init === undefined || init === null) return;
      if (init instanceof Headers) { for (const [k, vs] of init.#map) this.#map.set(k, vs.slice()); return; }
      if (typeof init !== 'object' && typeof init !== 'function') throw new TypeError("Failed to construct 'Headers': The provided value is not of type '(record<ByteString, ByteString> or sequence<sequence<ByteString>>)'.");
      if (typeof init[Symbol.iterator] === 'function') {
        for (const pair of init) {
          const p = typeof pair === 'string' ? [pair] : Array.from(pair);
          if (p.length !== 2) throw new TypeError('Invalid value for header entry: each entry must have exactly two elements, name and value.');
          this.append(p[0], p[1]);
        }
      } else {
        for (const k of Object.keys(init)) this.append(k, init[k]);
      }
    }
    static [internal](h, guard, list) {
      if (list) {
        h.#map = new Map();
        for (const [k, v] of list) { const a = h.#map.get(k); if (a) a.push(v); else h.#map.set(k, [v]); }
      }
      if (guard) h.#guard = guard;
      return headerPairs(h);
    }
    #check() { if (this.#guard === 'immutable') throw new TypeError("Can't modify immutable headers."); }
    append(name, value) {
      this.#check();
      name = checkName(name);
      value = normalizeValue(value);
      const a = this.#map.get(name);
      if (a) a.push(value); else this.#map.set(name, [value]);
    }
    delete(name) { this.#check(); this.#map.delete(checkName(name)); }
    get(name) {
      const vs = this.#map.get(checkName(name));
      return vs ? vs.join(', ') : null;
    }
    getAll(name) {
      name = checkName(name);
      if (name !== 'set-cookie') throw new TypeError('getAll() can only be used with the header name "Set-Cookie".');
      return this.getSetCookie();
    }
    getSetCookie() { const vs = this.#map.get('set-cookie'); return vs ? vs.slice() : []; }
    has(name) { return this.#map.has(checkName(name)); }
    set(name, value) {
      this.#check();
      this.#map.set(checkName(name), [normalizeValue(value)]);
    }
    #sorted() {
      const names = [...this.#map.keys()].sort();
      const out = [];
      for (const n of names) {
        const vs = this.#map.get(n);
        if (n === 'set-cookie') for (const v of vs) out.push([n, v]);
        else out.push([n, vs.join(', ')]);
      }
      return out;
    }
    forEach(cb, thisArg) { for (const [k, v] of this.#sorted()) cb.call(thisArg, v, k, this); }
    *entries() { yield* this.#sorted(); }
    *keys() { for (const p of this.#sorted()) yield p[0]; }
    *values() { for (const p of this.#sorted()) yield p[1]; }
    [Symbol.iterator]() { return this.entries(); }
  }
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
    if (body instanceof Blob) return [Blob[internal](body).slice(), body.type || null];
    if (body instanceof FormData) return multipart(body);
    if (body instanceof ReadableStream) return [body, null];
    return [encode(String(body)), 'text/plain;charset=UTF-8'];
  }
  const usedMsg = 'Body has already been used. It can only be used once. Use tee() first if you need to read it twice.';
  let bodyRaw, bodyUsed; // not reachable by the worker
  class Body {
    #body = null; #stream = null; #used = false;
    static {
      bodyRaw = b => b.#body;
      bodyUsed = b => b.#used || (b.#body instanceof ReadableStream && b.#body[internal]('disturbed')) ||
        (b.#stream !== null && b.#stream[internal]('disturbed'));
    }
    [internal](op, arg) {
      switch (op) {
        case 'set': this.#body = arg; this.#stream = null; this.#used = false; return;
        case 'raw': return this.#body;
        case 'take': { const b = this.#stream || this.#body; if (b !== null) this.#used = true; return b; }
        case 'used': return this.#used || (this.#body instanceof ReadableStream && this.#body[internal]('disturbed')) ||
          (this.#stream !== null && this.#stream[internal]('disturbed'));
      }
    }
    get body() {
      if (this.#body === null) return null;
      if (this.#body instanceof ReadableStream) return this.#body;
      if (!this.#stream) this.#stream = streamOf(this.#body);
      return this.#stream;
    }
    get bodyUsed() { return this[internal]('used'); }
    async #consume() {
      if (this[internal]('used')) throw new TypeError(usedMsg);
      const b = this.#stream || this.#body;
      this.#used = true;
      if (b === null) return new Uint8Array(0);
      if (b instanceof ReadableStream) return readAll(b);
      return b;
    }
    async arrayBuffer() { const b = await this.#consume(); return b.buffer.byteLength === b.byteLength ? b.buffer : b.slice().buffer; }
    async bytes() { return new Uint8Array(await this.arrayBuffer()); }
    async text() { return decode(await this.#consume()); }
    async json() { return JSONparse(await this.text()); }
    async blob() { const b = await this.#consume(); return new Blob([b], { type: this.headers.get('content-type') || '' }); }
    async formData() {
      const ct = this.headers.get('content-type') || '';
      const b = await this.#consume();
      if (/^multipart\/form-data/i.test(ct)) return parseMultipart(b, ct);
      if (/^application\/x-www-form-urlencoded/i.test(ct)) {
        const fd = new FormData();
        for (const [k, v] of parseForm(decode(b))) fd.append(k, v);
        return fd;
      }
      throw new TypeError('Unrecognized Content-Type header value. FormData can only parse the following MIME types: multipart/form-data, application/x-www-form-urlencoded.');
    }
  }
  function cloneBody(src, dst) {
    const raw = src[internal]('raw');
    if (src[internal]('used')) throw new TypeError(usedMsg);
    if (raw instanceof ReadableStream) {
      const [a, b] = raw.tee();
      src[internal]('set', a);
      dst[internal]('set', b);
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
      init = init || {};
      let src = null;
      if (input instanceof Request) {
        src = input;
        this.#url = input.url;
        this.#method = input.method;
        this.#redirect = input.redirect;
        this.#signal = input.signal;
        this.#cf = input.cf;
      } else if (input !== null && typeof input === 'object' && internal in input) {
        this.#url = input[internal]; // the host's request: parsed already
      } else {
        const u = parseURL(String(input));
        if (!u) throw new TypeError(`Invalid URL: ${String(input)}`);
        this.#url = u.href;
      }
      if (init.method !== undefined) {
        const m = String(init.method);
        if (!methods.includes(m.toUpperCase())) throw new TypeError(`Invalid HTTP method string: ${m}`);
        this.#method = m.toUpperCase();
      }
      if (init.redirect !== undefined) {
        if (!['follow', 'manual', 'error'].includes(init.redirect)) throw new TypeError(`Invalid redirect value, must be one of "follow" or "manual" ("error" won't be implemented since it does not make sense at the edge; use "manual" and check the response status code).`);
        this.#redirect = init.redirect;
      }
      if (init.signal !== undefined && init.signal !== null) this.#signal = init.signal;
      if (init.cf !== undefined) this.#cf = init.cf;
      this.#headers = new Headers(init.headers !== undefined ? init.headers : src ? src.headers : undefined);
      let body = null, ctype = null;
      if (init.body !== undefined && init.body !== null) {
        [body, ctype] = extractBody(init.body);
      } else if (src) {
        if (src.bodyUsed) throw new TypeError(usedMsg);
        body = src[internal]('take'); // the new request takes the body
      }
      if (body !== null && (this.#method === 'GET' || this.#method === 'HEAD')) {
        throw new TypeError('Request with a GET or HEAD method cannot have a body.');
      }
      if (ctype && !this.#headers.has('content-type')) this.#headers.set('content-type', ctype);
      this[internal]('set', body);
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
      if (this.bodyUsed) throw new TypeError(usedMsg);
      const r = new Request(this.#url, { method: this.#method, headers: this.#headers, redirect: this.#redirect, signal: this.signal, cf: this.#cf });
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
    static { responseState = r => [r.#status, r.#statusText, r.#headers, r.#type]; }
    constructor(body = null, init = {}) {
      super();
      init = init || {};
      if (init.status !== undefined) {
        const s = Number(init.status);
        if (!(s === 101 || (s >= 200 && s <= 599)) || !Number.isInteger(s)) throw new RangeError(`Invalid status code: ${init.status}. Status code must be between 200 and 599, inclusive.`);
        this.#status = s;
      }
      if (init.statusText !== undefined) {
        const t = String(init.statusText);
        if (/[^\t\x20-\x7e\x80-\xff]/.test(t)) throw new TypeError('Invalid statusText');
        this.#statusText = t;
      }
      this.#headers = new Headers(init.headers);
      if (body !== null && body !== undefined) {
        if (nullBodyStatus.includes(this.#status)) throw new TypeError('Response with null body status (101, 204, 205, or 304) cannot have a body.');
        const [b, ctype] = extractBody(body);
        if (ctype && !this.#headers.has('content-type')) this.#headers.set('content-type', ctype);
        this[internal]('set', b);
      }
    }
    static error() {
      const r = new Response(null, { status: 200 });
      r.#status = 0;
      r.#type = 'error';
      Headers[internal](r.#headers, 'immutable');
      return r;
    }
    static redirect(url, status = 302) {
      const u = parseURL(String(url));
      if (!u) throw new TypeError(`Invalid URL: ${String(url)}`);
      status = Number(status);
      if (!redirectStatus.includes(status)) throw new RangeError(`Invalid status code: ${status}. Status code must be one of 301, 302, 303, 307, or 308.`);
      const r = new Response(null, { status, headers: { location: u.href } });
      Headers[internal](r.#headers, 'immutable');
      return r;
    }
    static json(data, init = {}) {
      const s = JSONstringify(data);
      if (s === undefined) throw new TypeError('The data is not JSON serializable');
      const headers = new Headers(init && init.headers);
      if (!headers.has('content-type')) headers.set('content-type', 'application/json');
      return new Response(s, Object.assign({}, init, { headers }));
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
      if (this.bodyUsed) throw new TypeError(usedMsg);
      const r = new Response(null, { headers: this.#headers });
      r.#status = this.#status;
      r.#statusText = this.#statusText;
      r.#type = this.#type;
      r.#url = this.#url;
      r.#redirected = this.#redirected;
      cloneBody(this, r);
      return r;
    }
  }
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
        const meta = JSONstringify({ method: req.method, url: req.url, headers: headerList(req.headers), redirect: req.redirect });
        const id = hostFetch(meta, bytes);
        inflight.set(id, { resolve, reject });
        signalAlgorithm(req.signal, () => {
          if (inflight.delete(id)) reject(req.signal.reason);
        });
      };
      if (raw instanceof ReadableStream) readAll(raw).then(send, reject);
      else send(raw);
    });
  }
  function deliver(id, ok, meta, body) {
    const p = inflight.get(id);
    if (!p) return;
    inflight.delete(id);
    const m = JSONparse(meta);
    if (!ok) {
      p.reject(new TypeError(m.message));
      return;
    }
    const headers = m.headers;
    const r = new Response(null);
    if (!nullBodyStatus.includes(m.status)) r[internal]('set', new Uint8Array(body));
    Headers[internal](r.headers, null, headers);
    p.resolve(Response[internal](r, m));
  }

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
    const req = new Request({ [internal]: m.url }, { method: m.method, redirect: 'manual' });
    Headers[internal](req.headers, 'immutable', headerList(headers));
    if (body.byteLength > 0) req[internal]('set', new Uint8Array(body));
    const env = Object.assign({}, m.env || {});
    const ctx = {
      waitUntil(p) {
        const pr = Promise.resolve(p);
        waits.add(pr);
        const done = () => waits.delete(pr);
        pr.then(done, e => { done(); reportError(e); });
      },
      passThroughOnException() {},
      // leash's own values, apart from the client's env
      leash: Object.freeze({ attempt: m.attempt || 1, idempotencyKey: m.idempotency_key || null }),
    };
    let result;
    try {
      result = worker.fetch(req, env, ctx);
    } catch (e) {
      failWith(e);
      return;
    }
    Promise.resolve(result).then(respond).catch(failWith);
  }
  // respond reads the Response's own state, never its (redefinable)
  // getters; a streamed body is bounded by output_bytes as it is read.
  async function respond(res) {
    let st;
    try { st = responseState(res); } catch {
      throw new TypeError("Incorrect type for Promise: the Promise did not resolve to 'Response'.");
    }
    const [status, statusText, headers, type] = st;
    if (type === 'error') throw new TypeError('Return value from serve handler must not be an error response (like Response.error())');
    const raw = bodyRaw(res);
    let bytes = null;
    if (raw !== null && bodyUsed(res)) throw new TypeError(usedMsg);
    if (raw instanceof ReadableStream) {
      bytes = await readAll(raw, outputLimit);
      if (typeof bytes === 'number') {
        hostRespond(JSONstringify({ over: bytes }), null);
        return;
      }
    } else if (raw !== null) {
      bytes = raw;
    }
    hostRespond(JSONstringify({ status, statusText, headers: headerPairs(headers), waits: waits.size }), bytes);
  }
  function failWith(e) {
    const s = describeError(e);
    hostLog(4, 'Uncaught ' + s);
    hostFail('uncaught_exception', s);
  }
  function tick() {
    for (const [p, reason] of unhandled) {
      unhandled.delete(p);
      hostLog(4, 'Uncaught (in promise) ' + describeError(reason));
    }
    const now = hostNow();
    let best = null;
    for (const [id, t] of timers) {
      if (best === null || t.due < best[1].due || (t.due === best[1].due && t.seq < best[1].seq)) best = [id, t];
    }
    if (best !== null && best[1].due <= now) {
      const [id, t] = best;
      if (t.interval) { t.due = now + t.interval; t.seq = nextTimerId++; } else timers.delete(id);
      try { t.fn.apply(undefined, t.args); } catch (e) { reportError(e); }
      return [true];
    }
    return [false, best === null ? -1 : Math.max(0, Math.ceil(best[1].due - now)), waits.size];
  }
  function rejected(promise, reason, handled) {
    if (handled) unhandled.delete(promise);
    else unhandled.set(promise, reason);
  }

  // ---- globals ----

  const globals = {
    DOMException, Event, EventTarget, AbortController, AbortSignal,
    setTimeout, setInterval, clearTimeout, clearInterval: clearTimeout, queueMicrotask, reportError,
    console, TextEncoder, TextDecoder, atob, btoa, structuredClone,
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
