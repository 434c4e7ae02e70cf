#!/bin/bash
# Publish acks/s, 32 publishers: wrk (outside, closed loop) vs meshbox bench, alternated.
cd /tmp/cap
MB=$(cat mb.pid); FL=$(cat floor.pid)
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
for round in 6 7; do
  for side in mb floor; do
    if [ $side = mb ]; then U=http://127.0.0.1:8083; P=$MB; else U=http://127.0.0.1:8090; P=$FL; fi
    echo "== round $round wrk $side $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    path=$(python3 mkgroup.py $U 32 tok-$side.txt)
    c0=$(cpu $P); /usr/bin/time -f "wrk cpu %U+%S s" wrk -t2 -c32 -d8s --latency -s publish.lua $U -- $path tok-$side.txt 2>&1 | grep -E "Requests/sec|99%|50%|Non-2xx|requests in|Socket|wrk cpu"; c1=$(cpu $P); echo "server cpu ticks $((c1-c0))"
    echo "== round $round bench $side $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    ./meshbox bench --scenario publish --publishers 32 --duration 8s --url $U --pid $P --json > pub-bench-$side-$round.json
    python3 -c "import json;r=json.load(open('pub-bench-$side-$round.json'));l=r['ackLatency'];print('bench',r['publishedPerSecond'],'/s p50',l['p50Ms'],'p99',l['p99Ms'],'cpu/pub',r['serverProcess'].get('cpuMicrosPerPublish'),'tool',r['toolCpuCores'],'errors',r.get('publishErrors'))"
  done
done
