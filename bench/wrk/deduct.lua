-- POST /api/mcp/v1/credits/deduct as a service key (WRK_KEY) for benchmark account n, n cycling
-- from a random start over WRK_USERS accounts (`hub-bench setup` made them; their ids are
-- 00000000-0000-7000-8000-<n in 12 hex digits>, as pgbench's script names them), WRK_COST
-- credits each.
dofile("bench/wrk/report.lua")
local key = os.getenv("WRK_KEY")
local users = tonumber(os.getenv("WRK_USERS") or "10000")
local body = string.format('{"service":"bench","cost":%d}', tonumber(os.getenv("WRK_COST") or "30"))
local n = 0
setup = function(thread) thread:set("seed", math.random(1, 1000000)) end
init = function() n = (seed or 0) % users end
request = function()
  n = n % users + 1
  return wrk.format("POST", "/api/mcp/v1/credits/deduct", {
    ["x-api-key"] = key,
    ["x-user-id"] = string.format("00000000-0000-7000-8000-%012x", n),
    ["content-type"] = "application/json",
  }, body)
end
