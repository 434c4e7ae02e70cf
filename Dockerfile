# syntax=docker/dockerfile:1
# Build:  docker build --build-arg VERSION=$(git describe --tags --always) -t meshbox .
#         podman build --build-arg VERSION=$(git describe --tags --always) -t meshbox .
# For a Raspberry Pi: add --platform linux/arm64 (or linux/arm/v7, linux/arm/v6); the Go
# compiler cross-compiles on the build machine's own platform, nothing runs under emulation.
# Image names are fully qualified, so podman needs no registry search list.
FROM --platform=$BUILDPLATFORM docker.io/library/golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG TARGETOS=linux
ARG TARGETARCH
ARG TARGETVARIANT
# TARGETVARIANT is v6 or v7 for 32-bit ARM; GOARM wants the bare number.
RUN GOARM="${TARGETVARIANT#v}" CGO_ENABLED=0 GOOS="$TARGETOS" GOARCH="$TARGETARCH" \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/meshbox . \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/meshbox /usr/local/bin/meshbox
# /data belongs to the image's user (nonroot, uid 65532), so a named volume starts writable. A
# bind mount keeps its host owner: meshbox then says at start which uid needs write access.
COPY --from=build --chown=65532:65532 /out/data /data
ENV MESHBOX_DB=/data/meshbox.db MESHBOX_ADDR=:8080
VOLUME /data
EXPOSE 8080
USER 65532:65532
HEALTHCHECK --interval=30s --timeout=3s CMD ["/usr/local/bin/meshbox", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/meshbox"]
