# The same commands run locally and in CI (.ci/run calls `make test`).
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run build test deps check bench
run:
	$(GO) run .

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o meshbox .

# deps installs what the end-to-end tests need on a fresh Debian machine: Chromium for the
# dashboard and client-library tests (with a Japanese font, so the Japanese screenshots show text), zbar (an independent QR decoder), Prometheus (promtool and a real server) for the metrics
# tests, and the npm packages of the Mesh v2 client test.
deps:
	@if ! command -v chromium >/dev/null || ! command -v promtool >/dev/null || ! command -v zbarimg >/dev/null || ! test -e /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf; then \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium prometheus zbar-tools fonts-ipafont-gothic >/dev/null; \
	fi
	@for d in $$(find e2e -name package-lock.json -not -path '*/node_modules/*' -exec dirname {} \; 2>/dev/null); do \
		echo "npm ci in $$d"; (cd $$d && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	done

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

check:
	@test -z "$$(gofmt -l . | grep -v node_modules)" || (gofmt -l . | grep -v node_modules; echo "gofmt needed"; exit 1)
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# test installs what the suite needs and runs all of it; MESHBOX_E2E=1 makes the browser,
# Prometheus and Node tests fail rather than skip when something is missing.
test: deps check
	MESHBOX_E2E=1 $(GO) test -race -count=1 -timeout 30m ./...

bench:
	$(GO) test -run XXX -bench Ingest -benchtime 200000x ./db
	$(GO) test -run XXX -bench OpenMillionItems -benchtime 5x ./db
