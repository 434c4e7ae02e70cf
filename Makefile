# The same commands run locally and in CI (.ci/run calls `make test`).
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# Release files get the commit's time as their modification time, so the same commit gives
# the same bytes and the same listing, whoever builds it and when.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Reproducible, static, stripped: no cgo, no file paths (-trimpath), no VCS stamp that
# differs between a clone and a tarball (-buildvcs=false; the commit is stamped explicitly),
# no build ID, no symbol tables.
LDFLAGS := -s -w -buildid= -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BUILDFLAGS := -trimpath -buildvcs=false -ldflags "$(LDFLAGS)"

# os/arch[/arm version]: 64-bit Raspberry Pi OS (Pi 3, 4, 5, Zero 2), 32-bit (Pi 2 and later),
# and ARMv6 for the Pi 1 and Zero (W).
RELEASE_TARGETS := linux/amd64 linux/arm64 linux/arm/7 linux/arm/6

# The packages CI also tests on ARM under qemu-user: the store, the rules, the hub, the server
# and Mesh v2. A directory that does not exist (yet) is left out.
ARM_PKGS := $(foreach d,db stream rules hub server meshv2,$(if $(wildcard $(d)/*.go),./$(d)/...))

.PHONY: run build release release-smoke test test-quick test-arm deps check bench
run:
	$(GO) run .

# build is the binary for this computer, compiled as `go run .` compiles (the same flags, so
# the same build cache: nothing is compiled twice), with the version and commit stamped (they
# only change the link step). `make release` gives the static, reproducible binaries.
build:
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o meshbox .

# release builds every target into dist/ with SHA256SUMS beside them.
release:
	rm -rf dist && mkdir -p dist
	@set -e; for t in $(RELEASE_TARGETS); do \
		os=$${t%%/*}; rest=$${t#*/}; arch=$${rest%%/*}; arm=""; \
		if [ "$$arch" = arm ]; then arm=$${rest#*/}; fi; \
		out=dist/meshbox-$(VERSION)-$$os-$$arch$${arm:+v$$arm}; \
		echo "build $$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm $(GO) build $(BUILDFLAGS) -o $$out .; \
	done
	cd dist && sha256sum meshbox-* > SHA256SUMS
	touch -d @$(SOURCE_DATE_EPOCH) dist/*
	@cat dist/SHA256SUMS

# release-smoke starts the released arm64 and armv7 binaries under qemu-user and asks /readyz.
release-smoke: release
	MESHBOX_RELEASE_DIR=$(CURDIR)/dist MESHBOX_E2E=1 $(GO) test -count=1 -run 'TestReleaseBinariesAnswerReadyz' -v .

# deps installs what the end-to-end tests need on a fresh Debian machine: Chromium for the
# dashboard and client-library tests (with a Japanese font, so the Japanese screenshots show text), zbar (an independent QR decoder), Prometheus (promtool and
# a real server) for the metrics tests, Node.js and npm for the Mesh v2 client test and the tsc check of meshbox.d.ts (Debian's
# Node 18 will do), qemu-user for the ARM runs, iproute2 and nftables for the tests that run in
# a network namespace of their own (mDNS, no outbound connection); then the npm packages.
DEB_TOOLS := chromium:chromium promtool:prometheus zbarimg:zbar-tools node:nodejs npm:npm \
	qemu-aarch64:qemu-user qemu-arm:qemu-user ip:iproute2 nft:nftables unshare:util-linux \
	/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf:fonts-ipafont-gothic
deps:
	@missing=""; for tp in $(DEB_TOOLS); do \
		command -v $${tp%%:*} >/dev/null || test -e $${tp%%:*} || missing="$$missing $${tp#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make test needs Debian packages that are missing; installing them with apt-get (about 600 MB, once):$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@for d in $$(find e2e -name package-lock.json -not -path '*/node_modules/*' -exec dirname {} \; 2>/dev/null); do \
		echo "npm ci in $$d"; (cd $$d && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	done

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

check:
	@test -z "$$(gofmt -l . | grep -v node_modules)" || (gofmt -l . | grep -v node_modules; echo "gofmt needed"; exit 1)
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# test-arm runs ARM_PKGS as arm64 and as armv7 binaries under qemu-user. Emulation is slow and
# says nothing about a Pi's speed: only correctness is checked here (no -race: it needs cgo).
test-arm:
	MESHBOX_TEST_EXEC=qemu-aarch64 CGO_ENABLED=0 GOARCH=arm64 $(GO) test -count=1 -timeout 20m -exec qemu-aarch64 $(ARM_PKGS)
	MESHBOX_TEST_EXEC=qemu-arm CGO_ENABLED=0 GOARCH=arm GOARM=7 $(GO) test -count=1 -timeout 20m -exec qemu-arm $(ARM_PKGS)

# test installs what the suite needs, runs the ARM runs (whose build cache the release test in
# the main package reuses), then all of the suite; MESHBOX_E2E=1 makes
# the browser, Prometheus, Node, namespace and qemu tests fail rather than skip when something
# is missing.
test: deps check test-arm
	MESHBOX_E2E=1 $(GO) test -race -count=1 -timeout 30m ./...

# test-quick is the unit and integration suite on this machine alone: real servers, SQLite
# files and clients, but no browsers, Prometheus, Node.js, network namespaces or qemu (those
# tests skip, saying why) and nothing installed. A few minutes; `make test` before a merge.
test-quick:
	$(GO) test -count=1 -timeout 20m ./...

bench:
	$(GO) test -run XXX -bench Ingest -benchtime 200000x ./db
	$(GO) test -run XXX -bench OpenMillionItems -benchtime 5x ./db
