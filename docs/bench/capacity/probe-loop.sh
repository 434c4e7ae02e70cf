#!/bin/bash
# The outside probe with a closed-loop publisher (default) and an open-loop one, on meshbox and
# the floor, alternated: does the publisher's loop explain the tools' disagreement?
cd /tmp/cap
MB=$(cat mb.pid); FL=$(cat floor.pid)
for round in 1 2; do
  for side in floor mb; do
    if [ $side = mb ]; then U=http://127.0.0.1:8083; else U=http://127.0.0.1:8090; fi
    for loop in closed open; do
      flag=""; [ $loop = open ] && flag="--open-loop"
      echo "== round $round $side $loop $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
      ./sseprobe --url $U --readers 1000 --rate 50 --duration 10s $flag 2>&1
    done
  done
done
