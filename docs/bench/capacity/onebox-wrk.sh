#!/bin/bash
# Publish from outside after issue 26: start a meshbox with the limits lifted, and one wrk run on a fresh group.
#   onebox-wrk.sh start BINARY PORT   -> prints the pid
#   onebox-wrk.sh run LABEL URL PID   -> req/s, p99, server CPU us per request
cd "$(dirname "$0")"
if [ "$1" = start ]; then BIN=$2; PORT=$3; D=/tmp/onebox-$PORT; rm -rf $D; mkdir -p $D
  $BIN --addr 127.0.0.1:$PORT --db $D/mb.db --pprof \
  --publish-rate 0 --node-byte-rate 0 --node-rate 0 --group-rate 0 --ip-rate 0 --group-create-rate 0 \
  --max-conns-per-ip 0 --max-groups-per-client 100000 --max-groups-per-client-domain 0 \
  --max-nodes-per-client-group 0 --max-nodes-per-client 0 > $D/log 2>&1 &
  echo $!; exit 0
fi
shift
L=$1; U=$2; P=$3
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
path=$(python3 mkgroup.py $U 32 /tmp/onebox-tok-$L.txt)
c0=$(cpu $P); out=$(wrk -t2 -c32 -d8s --latency -s publish.lua $U -- $path /tmp/onebox-tok-$L.txt 2>&1); c1=$(cpu $P)
rps=$(echo "$out" | awk '/Requests\/sec/{print $2}'); n=$(echo "$out" | awk '/requests in/{print $1}')
p99=$(echo "$out" | awk '$1=="99%"{print $2}'); non=$(echo "$out" | awk '/Non-2xx/{print $NF}')
us=$(python3 -c "print(round(($c1-$c0)*10000/$n,1))")
echo "$(date +%T) load $(cut -d' ' -f1 /proc/loadavg) $L rps $rps p99 $p99 n $n non2xx ${non:-0} cpu_us_per_req $us"
