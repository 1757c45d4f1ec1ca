-- wrk script: prints one machine-readable summary line at the end of a run.
-- Optional pacing (open-loop-ish fixed rate): set WRK_RATE=<requests/second> in the
-- environment. Each wrk thread keeps an absolute schedule (start + n * interval)
-- and delays each next request until its slot, so a slow response does not push the
-- schedule back (wrk's own delay() is per connection and in whole milliseconds; with
-- enough connections the aggregate rate holds). Latency is still measured by wrk
-- from the moment a request is written, so queueing behind a late slot is not
-- counted (coordinated omission): at half of saturation this is small.
local ffi = require("ffi")
pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } bo_timespec;
int clock_gettime(int clk_id, bo_timespec *tp);
]])
local ts = ffi.new("bo_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local rate = tonumber(os.getenv("WRK_RATE") or "")
local threads = tonumber(os.getenv("WRK_THREADS") or "1")
local interval, next_t

if rate and rate > 0 then
  interval = 1000 / (rate / threads)
  function delay()
    local now = now_ms()
    if next_t == nil then next_t = now end
    next_t = next_t + interval
    local d = next_t - now
    if d <= 0 then return 0 end
    return d
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
    "\"err_connect\":%d,\"err_read\":%d,\"err_write\":%d,\"err_status\":%d,\"err_timeout\":%d," ..
    "\"lat_mean_us\":%.1f,\"lat_p50_us\":%d,\"lat_p90_us\":%d,\"lat_p99_us\":%d,\"lat_p999_us\":%d,\"lat_max_us\":%d}\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
