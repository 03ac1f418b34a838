-- wrk script for gubernator's HTTP gateway: POST /v1/GetRateLimits with one request of
-- limit BENCH_LIMIT per 60,000 ms (token bucket, its default), hits 1.
package.path = (os.getenv("BENCH_DIR") or ".") .. "/?.lua;" .. package.path
local k = require("keys")
local headers = { ["Content-Type"] = "application/json" }

function request()
  local body = '{"requests":[{"name":"bench","unique_key":"' .. k.key() ..
    '","hits":1,"limit":' .. k.limit .. ',"duration":60000}]}'
  return wrk.format("POST", "/v1/GetRateLimits", headers, body)
end
