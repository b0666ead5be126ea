-- GET /api/auth/verify-session with a different user's session code on each request, the codes
-- read from the file named by WRK_CODES (one per line, from `hub-bench sessions`).
dofile("bench/wrk/report.lua")
local codes = {}
for line in io.lines(os.getenv("WRK_CODES")) do codes[#codes + 1] = line end
local next_code = 0
request = function()
  next_code = next_code % #codes + 1
  return wrk.format("GET", "/api/auth/verify-session", { ["x-session-token"] = codes[next_code] })
end
