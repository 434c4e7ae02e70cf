#!/bin/bash
# SSE fan-out 1000 x 50/s: meshbox bench vs the outside probe, on meshbox and the floor, alternated.
cd /tmp/cap
MB=$(cat mb.pid); FL=$(cat floor.pid)
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
for round in 4 5; do
  for side in mb floor; do
    if [ $side = mb ]; then U=http://127.0.0.1:8083; P=$MB; else U=http://127.0.0.1:8090; P=$FL; fi
    echo "== round $round bench $side $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    ./meshbox bench --scenario fanout --transport sse --readers 1000 --rate 50 --duration 10s --url $U --pid $P --json > sse-bench-$side-$round.json
    python3 -c "import json;r=json.load(open('sse-bench-$side-$round.json'));l=r['latency'];print('bench',r['delivered'],r['missing'],r['duplicate'],r['outOfOrder'],'p50',l['p50Ms'],'p99',l['p99Ms'],'cpu/deliv',r['serverProcess']['cpuMicrosPerDelivery'],'tool',r['toolCpuCores'])"
    echo "== round $round probe $side $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    c0=$(cpu $P); /usr/bin/time -f 'probe cpu %U+%S s wall %e' ./sseprobe --url $U --readers 1000 --rate 50 --duration 10s 2>&1; c1=$(cpu $P); echo "server cpu ticks $((c1-c0))"
  done
done
