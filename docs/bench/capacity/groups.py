# Memory per group: G groups of 40 nodes (the host and 39 joins), no connections; live heap
# (heap after a forced GC + stacks, /debug/pprof/heap?gc=1) and RSS before and after.
import json, sys, urllib.request, re
base, G, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def post(path, body):
    r = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r))
def live():
    t = urllib.request.urlopen(base + "/debug/pprof/heap?gc=1&debug=1").read().decode()
    h = int(re.search(r"# HeapAlloc = (\d+)", t).group(1)); s = int(re.search(r"# Stack = (\d+)", t).group(1))
    return h + s
def rss():
    return int(re.search(r"VmRSS:\s+(\d+) kB", open("/proc/%s/status" % pid).read()).group(1)) * 1024
l0, r0 = live(), rss()
for g in range(G):
    gid = post("/api/v1/groups", {"name": "g%d" % g, "nodeName": "host"})["group"]["id"]
    for n in range(39):
        post("/api/v1/groups/%s/nodes" % gid, {"name": "p%d" % n})
l1, r1 = live(), rss()
print("groups %d: live +%.1f KiB per group (%.0f B per node), rss +%.1f KiB per group" % (G, (l1-l0)/G/1024, (l1-l0)/G/40, (r1-r0)/G/1024))
