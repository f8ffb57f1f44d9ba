#!/usr/bin/env bash
# engine/build.sh OUT_DIR [--check]
#
# Builds the leash JS engine, OUT_DIR/engine.wasm: QuickJS from Debian
# trixie's quickjs source package, our patch (engine/quickjs-wasi.patch),
# upstream fixes since the release (engine/quickjs-upstream.patch), our
# shim (engine/shim.c), prelude (engine/prelude.js) and the core-js
# modules of engine/polyfill (npm ci from its lockfile, bundled with
# esbuild), compiled for
# wasm32-wasi with Debian bookworm's clang-16, lld-16, wasi-libc and
# compiler-rt. Nothing it downloads is committed: the source lands in
# OUT_DIR/src.
#
# The source comes through apt's own source download in a private apt state
# dir (OUT_DIR/apt; the system's apt sources are never touched): apt checks
# the InRelease signature against Debian's archive keyring and the files
# against the signed Sources index; we then check the SHA-256 pins below and
# dpkg-source checks the .dsc's OpenPGP signature against debian-keyring.
#
# The build is reproducible: fixed flags, no debug info, file prefixes
# mapped. --check builds twice in two directories and compares, then
# compares with engine/SHA256SUMS (the value docs/javascript.md quotes).
set -euo pipefail

QJS_VERSION=2025.04.26-1
QJS_UPSTREAM=2025.04.26
QJS_DSC_SHA256=9dc1d44c9d68023ba42778f2263b25409e0037aefa32cd72a56420d2ed4fdc06
QJS_ORIG_SHA256=ec81da5b3249ed648dbc7df4a1654988910e66a118d9b71cb63534216efcfbbe
QJS_DEBIAN_SHA256=33e980d4737e83419ae2fb3c833a9d1813ee5edbf2e3da129a66f8bffac23862
MIRROR=${LEASH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEB_PACKAGES="clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32 dpkg-dev debian-keyring debian-archive-keyring patch"

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: engine/build.sh OUT_DIR [--check]}
mkdir -p "$out"
out=$(cd "$out" && pwd)

log() { echo "engine: $*" >&2; }

install_packages() {
	local missing="" p
	for p in $DEB_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		log "installing Debian packages:$missing"
		local sudo=""
		[ "$(id -u)" = 0 ] || sudo=sudo
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
	fi
}

sha_ok() { # file sha256
	[ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

fetch_source() {
	local src="$out/src" apt="$out/apt"
	local dsc="quickjs_${QJS_VERSION}.dsc" orig="quickjs_${QJS_UPSTREAM}.orig.tar.xz" deb="quickjs_${QJS_VERSION}.debian.tar.xz"
	mkdir -p "$src"
	if ! { sha_ok "$src/$dsc" $QJS_DSC_SHA256 && sha_ok "$src/$orig" $QJS_ORIG_SHA256 && sha_ok "$src/$deb" $QJS_DEBIAN_SHA256; }; then
		log "fetching quickjs $QJS_VERSION (trixie) with apt-get source, private state in $apt"
		mkdir -p "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/state/lists/partial" "$apt/cache/archives/partial"
		echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" >"$apt/etc/sources.list"
		local opts=(
			-o "Dir::Etc::SourceList=$apt/etc/sources.list"
			-o "Dir::Etc::SourceParts=$apt/etc/sources.list.d"
			-o "Dir::Etc::Preferences=$apt/etc/preferences"
			-o "Dir::Etc::PreferencesParts=$apt/etc/preferences.d"
			-o "Dir::State=$apt/state"
			-o "Dir::Cache=$apt/cache"
			-o "APT::Sandbox::User=root"
		)
		apt-get "${opts[@]}" -qq update
		(cd "$src" && apt-get "${opts[@]}" -qq source --download-only "quickjs=$QJS_VERSION" >/dev/null)
	fi
	sha_ok "$src/$dsc" $QJS_DSC_SHA256 || { log "checksum mismatch: $dsc"; exit 1; }
	sha_ok "$src/$orig" $QJS_ORIG_SHA256 || { log "checksum mismatch: $orig"; exit 1; }
	sha_ok "$src/$deb" $QJS_DEBIAN_SHA256 || { log "checksum mismatch: $deb"; exit 1; }
	rm -rf "$src/quickjs"
	# checks the .dsc's signature (debian-keyring) and the files' checksums
	(cd "$src" && dpkg-source --require-valid-signature -x "$dsc" quickjs >/dev/null)
}

# the core-js built-ins the engine lacks (engine/polyfill/entry.js), as one
# minified script: npm installs the lockfile's exact packages (integrity
# checked), esbuild bundles them; OUT_DIR/polyfill/polyfills.js
build_polyfill() {
	local pd="$out/polyfill"
	mkdir -p "$pd"
	if ! command -v npm >/dev/null; then
		log "npm is missing: install Node.js and npm (Debian: apt-get install npm)"
		exit 1
	fi
	if ! cmp -s "$here/polyfill/package-lock.json" "$pd/package-lock.json" || [ ! -x "$pd/node_modules/.bin/esbuild" ]; then
		log "installing engine/polyfill's packages with npm ci"
		cp "$here/polyfill/package.json" "$here/polyfill/package-lock.json" "$pd/"
		(cd "$pd" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
	fi
	cp "$here/polyfill/entry.js" "$pd/entry.js"
	(cd "$pd" && node_modules/.bin/esbuild entry.js --bundle --format=iife --minify --target=es2022 \
		--legal-comments=none --charset=utf8 --log-level=warning --outfile=polyfills.js)
}

# cbytes NAME FILE: FILE as a NUL-terminated C array NAME and NAME_len
# (not const: the shim clears it once evaluated)
cbytes() {
	echo "char $1[] = {"
	od -An -v -tx1 "$2" | sed -e 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'
	echo '0x00};'
	echo "const uint32_t $1_len = $(wc -c <"$2");"
}

# compile SRC_DIR OUT_WASM
compile() {
	local qjs="$1" dst="$2" work
	work=$(mktemp -d "$out/work.XXXXXX")
	mkdir -p "$work/src"
	local f
	for f in quickjs.c quickjs.h quickjs-atom.h quickjs-opcode.h libregexp.c libregexp.h libregexp-opcode.h \
		libunicode.c libunicode.h libunicode-table.h cutils.c cutils.h dtoa.c dtoa.h list.h VERSION; do
		cp "$qjs/$f" "$work/src/$f"
	done
	# upstream QuickJS from the release to a later commit (the patch's
	# header says which; docs/javascript.md lists what it brings), then
	# our own changes on top
	(cd "$work/src" && patch -s -p1 <"$here/quickjs-upstream.patch")
	(cd "$work/src" && patch -s -p1 <"$here/quickjs-wasi.patch")
	cp "$here/shim.c" "$work/src/shim.c"
	{
		echo '#include <stdint.h>'
		cbytes leash_prelude "$here/prelude.js"
		cbytes leash_polyfills "$out/polyfill/polyfills.js"
	} >"$work/src/prelude.c"
	local cflags=(
		--target=wasm32-wasi --sysroot=/usr -nostdlibinc -isystem /usr/include/wasm32-wasi
		-O2 -DNDEBUG -D_GNU_SOURCE "-DCONFIG_VERSION=\"$(cat "$work/src/VERSION")\""
		-mbulk-memory -msign-ext -mnontrapping-fptoint -mmutable-globals
		-fno-ident "-ffile-prefix-map=$work/src=." -funsigned-char -fwrapv
		-Wno-unused-parameter
	)
	local objs=()
	for f in quickjs libregexp libunicode cutils dtoa shim prelude; do
		(cd "$work/src" && clang-16 "${cflags[@]}" -c "$f.c" -o "$f.o")
		objs+=("$f.o")
	done
	# reactor: no main; _initialize runs the C constructors once (before
	# the snapshot). The shadow stack comes first in memory, so an overflow
	# traps instead of running into data.
	(cd "$work/src" && clang-16 --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor \
		-Wl,--stack-first -Wl,-z,stack-size=1048576 -Wl,--strip-debug -Wl,--no-entry \
		-o engine.wasm "${objs[@]}")
	mv "$work/src/engine.wasm" "$dst"
	rm -rf "$work"
}

install_packages
fetch_source
build_polyfill
qjs="$out/src/quickjs"

if [ "${2:-}" = "--check" ]; then
	compile "$qjs" "$out/check-a.wasm"
	compile "$qjs" "$out/check-b.wasm"
	a=$(sha256sum "$out/check-a.wasm" | cut -d' ' -f1)
	b=$(sha256sum "$out/check-b.wasm" | cut -d' ' -f1)
	rm -f "$out/check-a.wasm" "$out/check-b.wasm"
	[ "$a" = "$b" ] || { log "not reproducible: $a != $b"; exit 1; }
	want=$(awk '$2 == "engine.wasm" { print $1 }' "$here/SHA256SUMS")
	[ "$a" = "$want" ] || { log "two builds agree ($a) but engine/SHA256SUMS records $want"; exit 1; }
	log "reproducible: $a"
	exit 0
fi

compile "$qjs" "$out/engine.wasm.tmp"
mv "$out/engine.wasm.tmp" "$out/engine.wasm"
sum=$(sha256sum "$out/engine.wasm" | cut -d' ' -f1)
want=$(awk '$2 == "engine.wasm" { print $1 }' "$here/SHA256SUMS" 2>/dev/null || true)
if [ "$sum" != "$want" ]; then
	log "warning: engine.wasm sha256 $sum differs from engine/SHA256SUMS ($want): update it (and docs/javascript.md) when the change is intended"
fi
log "built $out/engine.wasm ($(wc -c <"$out/engine.wasm") bytes, sha256 $sum)"
