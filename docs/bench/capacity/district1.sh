#!/bin/bash
# district on one SQLite box: 4, 8, 16 classes of 40, 20 s each, fresh server per size.
cd /tmp/cap
for n in 4 8 16; do
  kill $(cat mb.pid) 2>/dev/null; sleep 1; rm -f mb.db*
  ./meshbox --addr 127.0.0.1:8083 --db /tmp/cap/mb.db --pprof $(cat lim) > mb.log 2>&1 & echo $! > mb.pid; sleep 1
  echo "== district $n classes $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  ./meshbox bench --scenario district --classes $n --duration 20s --url http://127.0.0.1:8083 --pid $(cat mb.pid) --json > district-1box-$n.json
  python3 summ.py district-1box-$n.json
done
