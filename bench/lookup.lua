-- wrk script for bench/lookup: the unscheduled CareTeam lookup an ED makes.
--
-- Request n (unique across threads and, through BENCH_OFFSET, across runs)
-- asks for subject n mod S as user floor(n / S): every user views every
-- subject at most once, so each lookup is a first view that records an access
-- event and queues a notification; the repeat-view rules never make it cheap.
-- Each request carries its own TraceID.
--
-- Environment (set by bench/lookup.py):
--   BENCH_SUBJECTS  file of NHS numbers, one a line
--   BENCH_TOKEN     bearer token of a health client
--   BENCH_ORG       the client's ODS code
--   BENCH_THREADS   wrk's -t, to split the rate and number requests
--   BENCH_OFFSET    first request number of this run
--   BENCH_RATE      total requests per second to pace to; 0 = as fast as possible
--
-- Pacing: wrk (unlike wrk2) cannot hold a rate, but it asks delay() how many
-- milliseconds to wait before each request on a connection. Each thread
-- hands out send slots 1000 * threads / rate ms apart on the monotonic clock;
-- a connection waits for the next free slot. Slots more than 1 s in the past
-- are dropped rather than sent in a burst, so the achieved rate (reported) can
-- fall short of the target if the server cannot keep up.
--
-- done() prints one line "BENCH_RESULT {json}" for the driver to parse.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local PATH = "/FHIR/R4/CareTeam?patient:identifier=https://fhir.nhs.uk/Id/nhs-number%7C"
local rate = tonumber(os.getenv("BENCH_RATE") or "0")

-- Main state: number the threads and keep them, to sum their counters in done().
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

-- Thread state.
local subjects = {}
local token, org, nthreads, offset, interval
local counter = 0
local next_slot = nil
non2xx = 0
first_bad = 0

function init(args)
  for line in io.lines(os.getenv("BENCH_SUBJECTS")) do
    subjects[#subjects + 1] = line
  end
  token = "Bearer " .. os.getenv("BENCH_TOKEN")
  org = os.getenv("BENCH_ORG")
  nthreads = tonumber(os.getenv("BENCH_THREADS"))
  offset = tonumber(os.getenv("BENCH_OFFSET") or "0")
  if rate > 0 then
    interval = 1000 * nthreads / rate
  end
end

function request()
  local n = offset + counter * nthreads + id
  counter = counter + 1
  local subject = subjects[n % #subjects + 1]
  local user = math.floor(n / #subjects)
  return wrk.format("GET", PATH .. subject, {
    ["Authorization"] = token,
    ["TraceID"] = string.format("bench-%d", n),
    ["NHSD-End-User-Organisation-ODS"] = org,
    ["NHSD-End-User-Id"] = string.format("9%011d", user),
    ["NHSD-End-User-Name"] = string.format("Bench User %d", user),
    ["NHSD-End-User-Role"] = "Staff Nurse",
  })
end

-- Defined only when pacing: with no delay() wrk sends back to back.
if rate > 0 then
  function delay()
    local t = now_ms()
    if next_slot == nil or next_slot < t - 1000 then
      next_slot = t
    end
    local wait = next_slot - t
    next_slot = next_slot + interval
    return wait > 0 and wait or 0
  end
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_bad == 0 then
      first_bad = status
    end
  end
end

function done(summary, latency, requests)
  local bad, bad_status = 0, 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
    if bad_status == 0 then
      bad_status = thread:get("first_bad")
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "first_bad_status": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, bad, bad_status,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
