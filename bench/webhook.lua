-- wrk script: post pre-signed Twilio or Meta webhooks (bench/gen_requests.py).
--
--   [SB_BENCH_RATE=R] wrk -t T -c C -d D -s bench/webhook.lua URL -- KIND DIR FIRST COUNT T [close]
--
-- KIND   twilio (POST /twilio/messages, form) or meta (POST /meta/whatsapp, JSON)
-- DIR    where gen_requests.py wrote KIND.tmpl and KIND.ids
-- FIRST  first line of KIND.ids to use (0-based); COUNT lines from there, so
--        successive runs against one ingress can use disjoint ranges
-- T      wrk's thread count (-t): thread i takes the i-th of T equal slices
-- close  "close" sends Connection: close (a new connection per request);
--        anything else ("keep") keeps connections alive
-- SB_BENCH_RATE=R (environment): R requests per second in total. Each thread
--        then paces its requests on a schedule (open loop, millisecond
--        resolution through wrk's delay()) instead of sending as fast as
--        responses come back. An environment variable, because wrk decides
--        whether the script has a delay() before it passes the arguments
--
-- Every request carries its own provider id; when a thread has used all of
-- its lines it starts again from its first and counts a repeat. done() prints
-- one line starting with SBRESULT for bench/run.sh.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } sb_timespec;
  int clock_gettime(int clk_id, sb_timespec *tp);
]]
local ts = ffi.new("sb_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

-- ---- main state: number the threads, collect them for done() -------------
local threads = {}
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

-- ---- thread state ------------------------------------------------------------
local parts = {}        -- the body template split at @ID@
-- The whole request as wrk.format writes it, split where the id and the
-- signature go: out holds the fixed pieces at odd places, and request()
-- fills the even ones (slot_is_sig says which) and joins them.
local out, slot_is_sig = {}, {}
local data, width, id_len  -- this thread's records: "<id> <signature>\n", fixed width
local n, idx = 0, 0
repeats = 0             -- global: read by done() through thread:get
local rate = tonumber(os.getenv("SB_BENCH_RATE") or "")
if rate and rate <= 0 then rate = nil end
local interval_ms, slot_ms

local function read_all(file)
  local f = assert(io.open(file, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  local kind, dir = args[1], args[2]
  local first, count, nthreads = tonumber(args[3]), tonumber(args[4]), tonumber(args[5])
  local mode = args[6] or "keep"
  assert(kind == "twilio" or kind == "meta", "KIND must be twilio or meta")
  assert(first and count and nthreads, "usage: -- KIND DIR FIRST COUNT THREADS [close|keep]")

  local template = read_all(dir .. "/" .. kind .. ".tmpl")
  local start = 1
  while true do
    local i, j = template:find("@ID@", start, true)
    if not i then break end
    parts[#parts + 1] = template:sub(start, i - 1)
    start = j + 1
  end
  parts[#parts + 1] = template:sub(start)

  -- Records have a fixed width, so a thread reads just its own slice
  -- (COUNT / T records from FIRST + tid * COUNT / T) with one seek and one
  -- read: a quick init, so no thread starts long before the others.
  local f = assert(io.open(dir .. "/" .. kind .. ".ids", "rb"))
  width = #assert(f:read("*l"), "empty ids file") + 1
  n = math.floor(count / nthreads)
  f:seek("set", (first + tid * n) * width)
  data = f:read(n * width) or ""
  f:close()
  assert(n > 0 and #data == n * width, "too few requests in " .. kind .. ".ids: generate more")
  id_len = data:find(" ", 1, true) - 1

  local path, headers, sig_header
  if kind == "twilio" then
    path = "/twilio/messages"
    sig_header = "X-Twilio-Signature"
    headers = {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["User-Agent"] = "TwilioProxy/1.1",
    }
  else
    path = "/meta/whatsapp"
    sig_header = "X-Hub-Signature-256"
    headers = {
      ["Content-Type"] = "application/json",
      ["User-Agent"] = "facebookexternalua",
    }
  end
  if mode == "close" then
    headers["Connection"] = "close"
  end
  if rate then
    interval_ms = 1000 * nthreads / rate
  end

  -- wrk.format once, with placeholders as long as the id (\1...) and the
  -- signature (\2...), so Content-Length and the header layout are wrk's.
  local sig_len = width - id_len - 2
  headers[sig_header] = string.rep("\2", sig_len)
  local text = wrk.format("POST", path, headers, table.concat(parts, string.rep("\1", id_len)))
  local pos = 1
  while true do
    local i = text:find("[\1\2]", pos)
    if not i then break end
    out[#out + 1] = text:sub(pos, i - 1)
    local sig = text:byte(i) == 2
    out[#out + 1] = ""
    slot_is_sig[#out] = sig
    pos = i + (sig and sig_len or id_len)
  end
  out[#out + 1] = text:sub(pos)
end

function request()
  idx = idx + 1
  if idx > n then
    idx = 1
    repeats = repeats + 1
  end
  local at = (idx - 1) * width + 1
  local id = data:sub(at, at + id_len - 1)
  local sig = data:sub(at + id_len + 1, at + width - 2)
  for i = 2, #out, 2 do
    out[i] = slot_is_sig[i] and sig or id
  end
  return table.concat(out)
end

if rate then
  -- Paced: request k of this thread is due at start + k * interval. A thread
  -- far behind (more than a second) restarts its schedule instead of bursting.
  function delay()
    local now = now_ms()
    if not slot_ms or slot_ms < now - 1000 then
      slot_ms = now
    else
      slot_ms = slot_ms + interval_ms
    end
    local wait = slot_ms - now
    return wait > 0 and math.floor(wait) or 0
  end
end

function done(summary, latency, requests)
  local reps = 0
  for _, t in ipairs(threads) do
    reps = reps + (tonumber(t:get("repeats")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "SBRESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d "
      .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d repeats=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, reps))
end
