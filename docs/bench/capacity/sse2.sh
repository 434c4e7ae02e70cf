#!/bin/bash
# SSE fan-out 1000 x 50/s, second sitting: rounds alternate which server goes first (abba), and
# within a server the bench and the probe take turns.
cd /tmp/cap
MB=$(cat mb.pid); FL=$(cat floor.pid)
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
one() { side=$1; round=$2
    if [ $side = mb ]; then U=http://127.0.0.1:8083; P=$MB; else U=http://127.0.0.1:8090; P=$FL; fi
    echo "== round $round bench $side $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    ./meshbox bench --scenario fanout --transport sse --readers 1000 --rate 50 --duration 10s --url $U --pid $P --json > sse-bench-$side-$round.json
    python3 summ.py sse-bench-$side-$round.json
    echo "== round $round probe $side $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    c0=$(cpu $P); /usr/bin/time -f 'probe cpu %U+%S s wall %e' ./sseprobe --url $U --readers 1000 --rate 50 --duration 10s 2>&1; c1=$(cpu $P); echo "server cpu ticks $((c1-c0))"
}
for round in 8 9 10 11; do
  if [ $((round % 2)) = 0 ]; then one mb $round; one floor $round; else one floor $round; one mb $round; fi
done
