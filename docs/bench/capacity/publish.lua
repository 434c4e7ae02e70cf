-- wrk: POST one event per request to a meshbox group, rotating over the node tokens in a
-- file (one a line), as 32 keep-alive publishers would. Usage:
--   wrk -t2 -c32 -d8s -s publish.lua http://127.0.0.1:8083 -- /api/v1/groups/GID/events tokens.txt
local reqs, i = {}, 0
local body = '{"events":[{"name":"bench","payload":"' .. string.rep("x", 64) .. '"}]}'
init = function(args)
  for t in io.lines(args[2]) do
    reqs[#reqs + 1] = wrk.format("POST", args[1],
      { ["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json" }, body)
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
