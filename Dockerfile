# syntax=docker/dockerfile:1
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/meshbox . \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/meshbox /usr/local/bin/meshbox
COPY --from=build --chown=nonroot:nonroot /out/data /data
ENV MESHBOX_DB=/data/meshbox.db MESHBOX_ADDR=:8080
VOLUME /data
EXPOSE 8080
USER nonroot
HEALTHCHECK --interval=30s --timeout=3s CMD ["/usr/local/bin/meshbox", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/meshbox"]
