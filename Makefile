# leash — build, serve, test.
#
#   make serve   build what is needed and start a one-node cluster
#   make test    everything CI runs (.ci/run calls this)
#
# The C toolchain for wasm32-wasi (Debian's clang-16, lld-16, wasi-libc,
# compiler-rt for wasm32) is installed with apt when it is missing.

SHELL := /bin/bash
GO ?= go
BUILD := build
BIN := bin/leash
ENGINE := $(BUILD)/engine/engine.wasm
EMBEDDED_ENGINE := engine/image/data/engine.wasm
GOFLAGS_RACE := -race
FUZZTIME ?= 10s

CLANG := clang-16
WASM_CFLAGS := --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Werror -Wl,--strip-all
WASM_DEB_PACKAGES := clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32

.PHONY: all build serve test unit fuzz vet guests toolchain bench clean check engine nettools faults conformance tsdeps browser ui

all: build

build: $(BIN)

$(BIN): $(shell find . -name '*.go' -not -path './build/*' 2>/dev/null) go.mod go.sum policy/default.yaml $(EMBEDDED_ENGINE)
	$(GO) build -trimpath -o $(BIN) ./cmd/leash

# The binary carries its JS engine (engine/image): the built engine is
# copied beside the package that embeds it before the binary is compiled.
$(EMBEDDED_ENGINE): $(ENGINE)
	cp $(ENGINE) $@

serve: build guests engine
	./$(BIN) serve

# toolchain installs the Debian packages the wasm32-wasi builds need, once.
toolchain: $(BUILD)/.toolchain

$(BUILD)/.toolchain:
	@mkdir -p $(BUILD)
	@missing=""; for p in $(WASM_DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

# guests are the small C programs (wasm32-wasi) the tests and benchmarks run.
GUEST_SRC := $(wildcard testdata/guests/*.c)
GUEST_WASM := $(patsubst testdata/guests/%.c,$(BUILD)/guests/%.wasm,$(GUEST_SRC))

guests: $(GUEST_WASM)

$(BUILD)/guests/%.wasm: testdata/guests/%.c | toolchain
	@mkdir -p $(dir $@)
	$(CLANG) $(WASM_CFLAGS) -o $@ $<

# engine builds the JS engine (QuickJS for wasm32-wasi from Debian's source
# package, engine/build.sh; docs/javascript.md) and caches its snapshot and
# compiled code beside it (engine/warm).
engine: $(ENGINE) $(BUILD)/engine/.warm

$(ENGINE): engine/build.sh engine/shim.c engine/prelude.js engine/quickjs-wasi.patch engine/quickjs-upstream.patch engine/polyfill/entry.js engine/polyfill/package-lock.json | toolchain
	engine/build.sh $(BUILD)/engine

# conformance runs tc39/test262's built-ins and the web-platform-tests'
# .any.js files in leash, and the WPT files in workerd too when WORKERD is
# set (difftest/conformance; not part of `make test`). The suites are
# read from checkouts outside the repository.
TEST262 ?=
WPT ?=
WORKERD ?=
conformance: engine
	$(GO) test -tags conformance -count=1 -timeout 60m -v ./difftest/conformance/ -args \
	    -test262 "$(TEST262)" -wpt "$(WPT)" -workerd "$(WORKERD)"

$(BUILD)/engine/.warm: $(ENGINE) $(wildcard sandbox/js*.go)
	$(GO) run ./engine/warm $(ENGINE)
	@touch $@

vet:
	$(GO) vet ./...

unit: guests engine $(EMBEDDED_ENGINE) nettools tsdeps browser
	LEASH_REQUIRE_NODE=1 $(GO) test $(GOFLAGS_RACE) -count=1 -timeout 30m ./...

# tsdeps installs Node.js and npm (Debian packages) when they are missing,
# and the pinned npm dev dependencies (package-lock.json) of the TypeScript
# client and of the MCP SDK test client. The Go tests that run them with
# Node's test runner (clients/typescript, mcp) need it; under
# LEASH_REQUIRE_NODE=1 they fail rather than skip without it.
TS_DIRS := clients/typescript mcp/testdata/tsclient
tsdeps:
	@{ command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; } || { \
	  echo "installing Debian packages: nodejs npm"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends nodejs npm; }
	@for d in $(TS_DIRS); do \
	  if [ ! -f $$d/node_modules/.package-lock.json ] || [ $$d/package-lock.json -nt $$d/node_modules/.package-lock.json ]; then \
	    echo "npm ci in $$d"; (cd $$d && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	  fi; \
	done

# browser installs Debian's chromium when it is missing: the dashboard's
# browser test (e2e/dashboard_test.go, chromedp) drives it headless.
browser:
	@{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } || { \
	  echo "installing Debian package: chromium"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

# ui refreshes the dashboard's vendored chart.js (ui/static) from npm, at
# the version ui/package-lock.json pins. The copy is committed, so a build
# needs neither npm nor the network; TestVendoredChartJS checks the pin.
ui: tsdeps
	cd ui && npm ci --no-audit --no-fund --loglevel=error
	cp ui/node_modules/chart.js/dist/chart.umd.min.js ui/static/chart.umd.min.js
	cp ui/node_modules/chart.js/LICENSE.md ui/static/chart.js-LICENSE.md

# nettools installs iptables, which the cluster tests use to partition
# nodes (e2e/cluster_test.go; they run as root).
nettools:
	@command -v iptables >/dev/null 2>&1 || { \
	  echo "installing Debian package: iptables"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends iptables; }

# fuzz runs each native fuzz target briefly; CI keeps it short.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

test: engine vet unit fuzz

# faults runs the long fault suite (e2e/faults_test.go, docs/cluster.md):
# more seeds and longer fault schedules on three and five nodes.
faults: guests engine nettools
	$(GO) test $(GOFLAGS_RACE) -count=1 -timeout 60m -run '^TestFaults' -v ./e2e/ -faults.long

bench: build guests
	$(GO) test -run '^$$' -bench . -benchtime 2s ./bench/...

clean:
	rm -rf $(BUILD) bin
