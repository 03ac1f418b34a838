-- wrk script: POST /v1/counters/{ns}/k{1..N}/incr with {"by":1} (ns = BENCH_NS, default bench;
-- N = BENCH_KEYS, default 1000).
-- Each wrk thread has its own fixed seed, so two runs send the same key sequence.
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local ns = os.getenv("BENCH_NS") or "bench"
local headers = { ["Content-Type"] = "application/json" }
local body = '{"by":1}'
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", 20261201 + threads)
end
function init(args)
  math.randomseed(seed)
end
function request()
  return wrk.format("POST", "/v1/counters/" .. ns .. "/k" .. math.random(keys) .. "/incr", headers, body)
end
