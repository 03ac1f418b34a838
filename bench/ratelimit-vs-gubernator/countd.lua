-- wrk script for countd: POST /v1/ratelimit/bench/{key}, limit BENCH_LIMIT per 1m, cost 1.
package.path = (os.getenv("BENCH_DIR") or ".") .. "/?.lua;" .. package.path
local k = require("keys")
local headers = { ["Content-Type"] = "application/json" }
local body = '{"limit":' .. k.limit .. ',"window":"1m","cost":1}'

function request()
  return wrk.format("POST", "/v1/ratelimit/bench/" .. k.key(), headers, body)
end
