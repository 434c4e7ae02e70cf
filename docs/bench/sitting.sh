#!/bin/bash
# sitting.sh OUT — the comparisons of docs/PERFORMANCE.md "Closing figures", each on freshly
# started servers, results (JSON) and a load log in OUT.
#
#   MESHBOX  the meshbox binary (go build -o meshbox .)
#   FLOOR    the floor binary (go build -o floor ./bench/floor)
#   NTFY     optional: an ntfy binary (see PERFORMANCE.md); without it, no publish comparison
#
# Ports 8083 (meshbox), 8090 (floor) and 8091 (ntfy) on 127.0.0.1 must be free.
set -u
OUT=${1:?usage: sitting.sh OUT}
MESHBOX=${MESHBOX:?set MESHBOX to the meshbox binary}
FLOOR=${FLOOR:?set FLOOR to the floor binary}
NTFY=${NTFY:-}
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null # 10,000 idle connections need as many descriptors on each side
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$TMP"' EXIT

LIFTED="-publish-rate 0 -node-byte-rate 0 -node-rate 0 -group-rate 0 -ip-rate 0 -group-create-rate 0 -max-conns-per-ip 0 -max-groups-per-client 100000 -max-groups-per-client-domain 0 -max-nodes-per-client-group 0 -max-nodes-per-client 0 -mdns=false"
FAN="-scenario fanout -readers 1000 -rate 50 -duration 10s -rounds 4 -order abba -json"
PIN_SERVER="" PIN_TOOL=""

log() { echo "$(date +%H:%M:%S) $1 load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/load.log"; }
ready() { for _ in $(seq 100); do curl -sf "$1" >/dev/null && return; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }
start_meshbox() {
	rm -rf "$TMP/db"; mkdir -p "$TMP/db"
	$PIN_SERVER "$MESHBOX" -addr 127.0.0.1:8083 -db "$TMP/db/mb.db" -pprof $LIFTED >"$TMP/meshbox.log" 2>&1 &
	MB=$!; ready http://127.0.0.1:8083/readyz; alive $MB meshbox
}
start_floor() {
	$PIN_SERVER "$FLOOR" -addr 127.0.0.1:8090 >"$TMP/floor.log" 2>&1 &
	FL=$!; ready http://127.0.0.1:8090/api/v1/groups/g/events?wait=0; alive $FL floor
}
# alive fails when the process already exited (its port was taken by another one that answers).
alive() { kill -0 "$1" 2>/dev/null || { echo "$2 did not start: is its port in use?" >&2; exit 1; }; }
stop() { kill "$@"; wait "$@" 2>/dev/null; }
bench() { name=$1; shift; log "$name start"; $PIN_TOOL "$MESHBOX" bench "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"; log "$name end"; }

if [ -n "$NTFY" ]; then
	start_meshbox
	rm -f "$TMP/ntfy-cache.db"
	"$NTFY" serve --listen-http 127.0.0.1:8091 --cache-file "$TMP/ntfy-cache.db" --cache-batch-size 32 \
		--cache-batch-timeout 10ms --visitor-request-limit-exempt-hosts 127.0.0.1 \
		--visitor-subscription-limit 100000 --global-topic-limit 100000 >"$TMP/ntfy.log" 2>&1 &
	NT=$!; ready http://127.0.0.1:8091/v1/health; alive $NT ntfy
	bench compare-pub-ntfy -scenario publish -duration 8s -rounds 4 -order abba -json \
		-url http://127.0.0.1:8083 -pid $MB -compare http://127.0.0.1:8091 -compare-api ntfy -compare-pid $NT
	stop $MB $NT
fi

for t in ws sse; do
	start_meshbox; start_floor
	bench compare-$t-floor $FAN -transport $t -url http://127.0.0.1:8083 -pid $MB -compare http://127.0.0.1:8090 -compare-pid $FL
	stop $MB $FL
done

start_meshbox
bench compare-poll-sse $FAN -transport poll -url http://127.0.0.1:8083 -pid $MB \
	-compare http://127.0.0.1:8083 -compare-pid $MB -compare-transport sse
stop $MB
start_meshbox; start_floor
bench compare-poll-floor $FAN -transport poll -url http://127.0.0.1:8083 -pid $MB -compare http://127.0.0.1:8090 -compare-pid $FL
stop $MB $FL

# The load generator on a CPU of its own, the servers on another.
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	PIN_SERVER="taskset -c 0" PIN_TOOL="taskset -c 1"
	for t in ws sse; do
		start_meshbox; start_floor
		bench pinned-$t-floor $FAN -transport $t -url http://127.0.0.1:8083 -pid $MB -compare http://127.0.0.1:8090 -compare-pid $FL
		stop $MB $FL
	done
	PIN_SERVER="" PIN_TOOL=""
fi

for t in ws sse; do
	start_meshbox
	bench idle-meshbox-$t -url http://127.0.0.1:8083 -pid $MB -scenario idle -transport $t -readers 10000 -duration 15s -json
	stop $MB
done

for t in ws sse; do
	for rg in "100 1" "1000 1" "10000 1" "1000 10" "1000 100"; do
		set -- $rg
		start_meshbox
		bench scale-$t-r$1-g$2 -url http://127.0.0.1:8083 -pid $MB -scenario fanout -transport $t -readers $1 -groups $2 -rate 10 -duration 10s -json
		stop $MB
	done
done
log done
