-- Shared by countd.lua and gubernator.lua: the same key distribution on both sides.
-- Each wrk thread draws keys uniformly from k1..kN (N = BENCH_KEYS, default 1000) with its own
-- fixed seed, so two runs with the same settings send the same key sequence.
local M = {}
M.keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
M.limit = os.getenv("BENCH_LIMIT") or "1000000000"

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", 20261201 + threads)
end

function init(args)
  math.randomseed(seed)
end

function M.key()
  return "k" .. math.random(M.keys)
end

return M
