-- wrk script: GET /v1/counters/{ns}/k{1..N} (ns = BENCH_NS, default bench; N = BENCH_KEYS,
-- default 1000).
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local ns = os.getenv("BENCH_NS") or "bench"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", 20261201 + threads)
end
function init(args)
  math.randomseed(seed)
end
function request()
  return wrk.format("GET", "/v1/counters/" .. ns .. "/k" .. math.random(keys))
end
