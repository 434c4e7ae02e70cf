#!/bin/bash
# district over 2 meshbox instances on one NATS node (R1), alternated with one SQLite box.
cd /tmp/cap
A=http://127.0.0.1:8085; B=http://127.0.0.1:8086
PIDS="A=$(cat mb1.pid),B=$(cat mb2.pid),nats=$(cat nats.pid)"
for n in 4 8; do
  echo "== cluster district $n $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  ./meshbox bench --scenario district --classes $n --duration 20s --url $A --write-urls $A,$B --pids $PIDS --json > district-2inst-$n.json
  python3 summ.py district-2inst-$n.json
  python3 -c "
import json;r=json.load(open('district-2inst-$n.json'))
for p in r['processes']: print('  ',p['name'],'cores',p['cpuCores'],'rss MiB',p['rssBytesBefore']>>20,'->',p['rssBytesAfter']>>20)
print('   all cpu/delivery',r.get('allCpuMicrosPerDelivery'),'frames',r['frames'])"
  kill $(cat mb.pid) 2>/dev/null; sleep 1; rm -f mb.db*
  ./meshbox --addr 127.0.0.1:8083 --db /tmp/cap/mb.db --pprof $(cat lim) > mb.log 2>&1 & echo $! > mb.pid; sleep 1
  echo "== 1box district $n $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  ./meshbox bench --scenario district --classes $n --duration 20s --url http://127.0.0.1:8083 --pid $(cat mb.pid) --json > district-1box-b-$n.json
  python3 summ.py district-1box-b-$n.json
done
