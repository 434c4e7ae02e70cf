#!/bin/bash
# Issue 26, one sitting: 3 meshbox instances on a 3-node NATS cluster (R3) against one SQLite
# box, alternated, ROUNDS rounds:
#   publish  — 32 keep-alive publishers (wrk, one event per request): 11+11+10 connections, one
#              wrk per instance, all at once, each on a group created through its instance;
#              the box: one wrk with 32 connections.
#   district — `meshbox bench --scenario district --classes $CLASSES`: classes written to and
#              read from the three instances in turn; the box alone.
# CPU of every process from /proc/PID/stat over each run. Needs wrk, python3, curl, and
# nats-server 2.12+ (go build -o nats-server github.com/nats-io/nats-server/v2).
# Usage: cluster.sh LABEL MESHBOX-BINARY [ROUNDS] — output in ./out-LABEL/
set -u
cd "$(dirname "$0")"  # with nats-server, meshbox, publish.lua and mkgroup.py (../) beside it
LABEL=$1; BIN=$(realpath "$2"); ROUNDS=${3:-2}; DUR=${DUR:-8}; CLASSES=${CLASSES:-6}
OUT=out-$LABEL; mkdir -p $OUT
LIM="--publish-rate 0 --node-byte-rate 0 --node-rate 0 --group-rate 0 --ip-rate 0 --group-create-rate 0 --max-conns-per-ip 0 --max-groups-per-client-domain 0 --max-nodes-per-client-group 0 --max-nodes-per-client 0"
ticks() { local s=0; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
pids=(); cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; }; trap cleanup EXIT
rm -rf data-$LABEL; mkdir -p data-$LABEL
for i in 1 2 3; do
  cat > data-$LABEL/n$i.conf <<C
server_name: n$i
listen: 127.0.0.1:423$i
jetstream { store_dir: $PWD/data-$LABEL/n$i }
cluster { name: meshbox, listen: 127.0.0.1:623$i, routes: [nats://127.0.0.1:6231, nats://127.0.0.1:6232, nats://127.0.0.1:6233] }
C
  ./nats-server -c data-$LABEL/n$i.conf > $OUT/n$i.log 2>&1 & N[$i]=$!; pids+=(${N[$i]})
done
sleep 3
for i in 1 2 3; do
  [ $i -gt 1 ] && for t in $(seq 150); do curl -fs http://127.0.0.1:8181/readyz >/dev/null && break; sleep 0.2; done
  $BIN --addr 127.0.0.1:818$i --nats-url nats://127.0.0.1:423$i --nats-replicas 3 --db data-$LABEL/unused$i.db $LIM > $OUT/mb$i.log 2>&1 & M[$i]=$!; pids+=(${M[$i]})
done
$BIN --addr 127.0.0.1:8189 --db data-$LABEL/box.db $LIM > $OUT/box.log 2>&1 & BOX=$!; pids+=($BOX)
for u in 8181 8182 8183 8189; do for t in $(seq 150); do curl -fs http://127.0.0.1:$u/readyz >/dev/null && break; sleep 0.2; done; done
A=http://127.0.0.1:8181; B=http://127.0.0.1:8182; C=http://127.0.0.1:8183
load() { cut -d' ' -f1 /proc/loadavg; }
for r in $(seq $ROUNDS); do
  for i in 1 2 3; do P[$i]=$(python3 mkgroup.py http://127.0.0.1:818$i 11 $OUT/tok$i.txt); done
  c0=$(ticks ${M[1]} ${M[2]} ${M[3]}); n0=$(ticks ${N[1]} ${N[2]} ${N[3]})
  W=(); for i in 1 2 3; do c=11; [ $i = 3 ] && c=10
    wrk -t1 -c$c -d${DUR}s --latency -s publish.lua http://127.0.0.1:818$i -- ${P[$i]} $OUT/tok$i.txt > $OUT/pub-cluster-$r-$i.txt 2>&1 & W+=($!); done
  wait "${W[@]}"
  c1=$(ticks ${M[1]} ${M[2]} ${M[3]}); n1=$(ticks ${N[1]} ${N[2]} ${N[3]})
  tot=0; for i in 1 2 3; do x=$(awk '/Requests\/sec/{print $2}' $OUT/pub-cluster-$r-$i.txt); tot=$(python3 -c "print(round($tot+$x))"); done
  echo "round $r publish cluster: $tot acked/s; p50 $(for i in 1 2 3; do awk '/ 50%/{printf "%s ", $2}' $OUT/pub-cluster-$r-$i.txt; done)p99 $(for i in 1 2 3; do awk '/ 99%/{printf "%s ", $2}' $OUT/pub-cluster-$r-$i.txt; done)cpu instances $(( (c1-c0)*10 )) ms, nats $(( (n1-n0)*10 )) ms in ${DUR}s; µs/publish $(python3 -c "print(round(($c1-$c0+$n1-$n0)*10000/($tot*$DUR)))"); non-2xx $(cat $OUT/pub-cluster-$r-*.txt | grep -c Non-2xx); load $(load)"
  PB=$(python3 mkgroup.py http://127.0.0.1:8189 32 $OUT/tokb.txt)
  b0=$(ticks $BOX)
  wrk -t1 -c32 -d${DUR}s --latency -s publish.lua http://127.0.0.1:8189 -- $PB $OUT/tokb.txt > $OUT/pub-box-$r.txt 2>&1
  b1=$(ticks $BOX); x=$(awk '/Requests\/sec/{print $2}' $OUT/pub-box-$r.txt)
  echo "round $r publish box: $x acked/s; p50 $(awk '/ 50%/{print $2}' $OUT/pub-box-$r.txt) p99 $(awk '/ 99%/{print $2}' $OUT/pub-box-$r.txt) cpu $(( (b1-b0)*10 )) ms; µs/publish $(python3 -c "print(round(($b1-$b0)*10000/($x*$DUR)))"); non-2xx $(grep -c Non-2xx $OUT/pub-box-$r.txt); load $(load)"
  # the same closed loop by meshbox bench: 32 publishers spread over the instances
  $BIN bench --scenario publish --publishers 32 --duration ${DUR}s --url $A --write-urls $A,$B,$C \
    --pids A=${M[1]},B=${M[2]},C=${M[3]},n1=${N[1]},n2=${N[2]},n3=${N[3]} --json > $OUT/bench-publish-cluster-$r.json 2>/dev/null
  $BIN bench --scenario publish --publishers 32 --duration ${DUR}s --url http://127.0.0.1:8189 --pid $BOX --json > $OUT/bench-publish-box-$r.json 2>/dev/null
  for side in cluster box; do python3 - $OUT/bench-publish-$side-$r.json $side $r <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ps = r.get('processes') or [dict(r['serverProcess'], name='box')]
cpu = sum(p['cpuSeconds'] for p in ps)
print('round %s bench publish %s: %d acked/s, ack p50/p99 %.1f/%.1f ms, CPU µs/publish (all processes) %.0f, errors %s' % (
  sys.argv[3], sys.argv[2], r['publishedPerSecond'], r['ackLatency']['p50Ms'], r['ackLatency']['p99Ms'], cpu * 1e6 / max(r['published'], 1), r.get('publishErrors')))
PY
  done
  if [ "$CLASSES" != 0 ]; then
    $BIN bench --scenario district --classes $CLASSES --duration 20s --url $A --write-urls $A,$B,$C \
      --pids A=${M[1]},B=${M[2]},C=${M[3]},n1=${N[1]},n2=${N[2]},n3=${N[3]} --json > $OUT/district-cluster-$r.json 2>$OUT/district-cluster-$r.err
    $BIN bench --scenario district --classes $CLASSES --duration 20s --url http://127.0.0.1:8189 --pid $BOX --json > $OUT/district-box-$r.json 2>$OUT/district-box-$r.err
    for side in cluster box; do python3 - $OUT/district-$side-$r.json $side $r <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ps = r.get('processes') or [dict(r['serverProcess'], name='box')]
cores = sum(p['cpuCores'] for p in ps)
procs = ' '.join('%s %.2f' % (p['name'], p['cpuCores']) for p in ps)
print('round %s district %s: %d writes/s, %d deliveries/s, delivery p50/p99 %.1f/%.1f ms, ack p50/p99 %.1f/%.1f ms, all processes %.2f cores (%s), missing %d dup %d reordered %d' % (
  sys.argv[3], sys.argv[2], r['publishedPerSecond'], r['deliveriesPerSecond'], r['latency']['p50Ms'], r['latency']['p99Ms'],
  r['ackLatency']['p50Ms'], r['ackLatency']['p99Ms'], cores, procs, r['missing'], r['duplicate'], r['outOfOrder']))
PY
    done
  fi
done
