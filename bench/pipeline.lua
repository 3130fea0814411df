-- wrk script: pipeline DEPTH (default 16) GET / requests per write.
-- wrk sends the whole string returned by request() in one write and then
-- counts responses as they are parsed, so requests/s counts each response.
-- Usage: wrk -s bench/pipeline.lua http://127.0.0.1:PORT/ [-- DEPTH]

local depth = 16
local path = "/"
local req

init = function(args)
  if args[1] then depth = tonumber(args[1]) end
  if args[2] then path = args[2] end
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format("GET", path)
  end
  req = table.concat(r)
end

request = function()
  return req
end
