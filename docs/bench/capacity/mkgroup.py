import json, sys, urllib.request
base, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def post(path, body):
    r = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r))
g = post("/api/v1/groups", {"name": "wrk", "nodeName": "host"})
gid = g["group"]["id"]
toks = [post("/api/v1/groups/%s/nodes" % gid, {"name": "p%d" % i})["token"] for i in range(n)]
open(out, "w").write("\n".join(toks) + "\n")
print("/api/v1/groups/%s/events" % gid)
