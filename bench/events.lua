-- wrk script: posts Vonage Voice API call events to callhook's
-- /call_events, each call going through started, ringing, answered and
-- completed, and records what the lost-write check needs.
--
-- Configuration comes from the environment, because done() runs in
-- wrk's main Lua state, which never receives the "-- args" of init():
--   BENCH_RESULT_FILE    JSON file written by done() (default: none)
--   BENCH_RUN_TAG        8 hex digits that start every call uuid
--                        (default 00000000)
--   BENCH_EVENT_SECONDS  seconds of events per thread; after that each
--                        connection stays idle until wrk stops (default 1e9)
--   BENCH_OPEN_CALLS     calls in progress per thread (default 50)
--
-- Call uuids are "<tag>-<thread id as 4 hex>-4000-8000-<counter as 12 hex>",
-- counter 1, 2, ... per thread, so the runner can list every call generated.
--
-- Why the lost-write check is exact: wrk's response() callback does not say
-- which request it answers, but every event generated here is distinct.
-- Each one gets at most one {"result":"applied"} reply and then adds exactly
-- 1 to its call's "events" field, unless the write was lost.
-- {"result":"spooled"} promises the same once callhook has replayed its
-- spool. After BENCH_EVENT_SECONDS no new event goes out (delay() parks
-- the connection), so once the events already sent are answered, nothing
-- is in flight when wrk stops. If every event sent got one of those two
-- replies, each call's "events" must equal the number of its events sent,
-- and its "status" must be the last of them. The runner checks that per
-- call. When some events are unanswered or got an error, it can only check
-- bounds on the totals.

local ffi = require("ffi")

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]

local CLOCK_MONOTONIC = 1 -- the Linux value
local clock_buffer = ffi.new("bench_timespec")

-- Milliseconds on CLOCK_MONOTONIC, which all wrk threads share.
local function monotonic_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, clock_buffer)
    return tonumber(clock_buffer.tv_sec) * 1000 + tonumber(clock_buffer.tv_nsec) / 1e6
end

local APPLIED_BODY = '{"result":"applied"}'
local DUPLICATE_BODY = '{"result":"duplicate"}'
local SPOOLED_BODY = '{"result":"spooled"}'
local LIFECYCLE = {"started", "ringing", "answered", "completed"}
local HEADERS = {["Content-Type"] = "application/json"}

-- 2026-12-04T10:00:00Z, the first call's start time.
local BASE_EPOCH_S = 1796378400

------------------------------------------------------------------------
-- Setup and done: wrk's main Lua state.

local threads = {}

function setup(thread)
    table.insert(threads, thread)
    thread:set("thread_id", #threads)
end

local function json_number(value)
    if value ~= value or value == math.huge or value == -math.huge then
        return "null"
    end
    return string.format("%.17g", value)
end

local function json_number_array(values)
    local parts = {}
    for i = 1, #values do
        parts[i] = json_number(values[i])
    end
    return "[" .. table.concat(parts, ",") .. "]"
end

-- Encodes a table of status code -> count as a JSON object.
local function json_count_map(counts)
    local parts = {}
    for code, count in pairs(counts or {}) do
        parts[#parts + 1] = string.format('"%s":%d', tostring(code), count)
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
    local p = {
        p50 = latency:percentile(50),
        p75 = latency:percentile(75),
        p90 = latency:percentile(90),
        p99 = latency:percentile(99),
        p999 = latency:percentile(99.9),
    }
    io.write(string.format(
        "latency_us p50=%d p75=%d p90=%d p99=%d p99.9=%d max=%d mean=%.1f\n",
        p.p50, p.p75, p.p90, p.p99, p.p999, latency.max, latency.mean))

    local path = os.getenv("BENCH_RESULT_FILE")
    if path == nil or path == "" then
        return
    end

    local thread_parts = {}
    for _, thread in ipairs(threads) do
        thread_parts[#thread_parts + 1] = string.format(
            '{"id":%d,"calls":%d,"events_sent":%d,"applied":%d,' ..
            '"duplicate":%d,"spooled":%d,"other_200":%d,"failed":%d,"failed_by_status":%s,' ..
            '"start_ms":%s,"last_event_reply_ms":%s,' ..
            '"open_call_counters":%s,"open_call_events_sent":%s}',
            thread:get("thread_id"), thread:get("calls_started") or 0,
            thread:get("events_sent") or 0, thread:get("replies_applied") or 0,
            thread:get("replies_duplicate") or 0, thread:get("replies_spooled") or 0,
            thread:get("replies_other_200") or 0,
            thread:get("replies_failed") or 0,
            json_count_map(thread:get("failed_by_status")),
            json_number(thread:get("start_ms") or 0),
            json_number(thread:get("last_event_reply_ms") or 0),
            json_number_array(thread:get("open_call_counters") or {}),
            json_number_array(thread:get("open_call_events_sent") or {}))
    end

    local errors = summary.errors
    local file = assert(io.open(path, "w"))
    file:write(string.format(
        '{"run_tag":"%s","duration_us":%d,"requests":%d,"bytes":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
        '"latency_us":{"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p99.9":%d,' ..
        '"max":%d,"mean":%s},"threads":[%s]}\n',
        os.getenv("BENCH_RUN_TAG") or "", summary.duration, summary.requests,
        summary.bytes, errors.connect, errors.read, errors.write, errors.status,
        errors.timeout, p.p50, p.p75, p.p90, p.p99, p.p999, latency.max,
        json_number(latency.mean), table.concat(thread_parts, ",")))
    file:close()
end

------------------------------------------------------------------------
-- Running phase: one Lua state per wrk thread, shared by its connections.
-- Globals below are read by done() through thread:get().

calls_started = 0
events_sent = 0
replies_applied = 0
replies_duplicate = 0
replies_spooled = 0
replies_other_200 = 0
replies_failed = 0
failed_by_status = {}
start_ms = 0
last_event_reply_ms = 0

-- Calls in progress, in slots served round robin, so two events of one
-- call are BENCH_OPEN_CALLS requests apart on this thread and usually
-- arrive in lifecycle order. Nothing here depends on that order, because
-- src/apply.lua decides from the set of events seen.
open_call_counters = {}
open_call_events_sent = {}

local open_calls = {}
local next_slot = 1
local delays_granted = 0
local requests_built = 0
local run_tag
local event_deadline_ms

local function iso_time(epoch_ms)
    local seconds = math.floor(epoch_ms / 1000)
    return os.date("!%Y-%m-%dT%H:%M:%S", seconds) ..
        string.format(".%03dZ", epoch_ms - seconds * 1000)
end

local function new_call()
    calls_started = calls_started + 1
    local counter = calls_started
    local uuid = string.format("%s-%04x-4000-8000-%012x", run_tag, thread_id, counter)
    local started_ms = (BASE_EPOCH_S + counter * 3 + thread_id) * 1000 + math.random(0, 999)
    local ringing_ms = started_ms + math.random(200, 1500)
    local answered_ms = ringing_ms + math.random(2000, 15000)
    local duration_s = math.random(5, 600)
    local rates = {"0.00450000", "0.01200000", "0.00270000", "0.03900000"}
    local rate = rates[math.random(1, #rates)]
    local outbound = math.random() < 0.7
    local local_number = string.format("1415555%04d", math.random(0, 9999))
    local remote_number = string.format("1%03d%07d", math.random(201, 989), math.random(0, 9999999))

    return {
        counter = counter,
        events_sent = 0,
        uuid = uuid,
        conversation_uuid = "CON-" .. uuid,
        from = outbound and local_number or remote_number,
        to = outbound and remote_number or local_number,
        direction = outbound and "outbound" or "inbound",
        times = {started_ms, ringing_ms, answered_ms, answered_ms + duration_s * 1000 + math.random(0, 999)},
        answered_ms = answered_ms,
        duration_s = duration_s,
        rate = rate,
        network = string.format("310%03d", math.random(0, 999)),
        disconnected_by = math.random() < 0.5 and "user" or "platform",
    }
end

-- Builds the JSON body of the call's next event, shaped like the Vonage
-- examples in test/fixtures/scenarios: about 230, 230, 280 and 430 bytes.
local function event_body(call, step)
    local status = LIFECYCLE[step]
    local common = string.format(
        '"from":"%s","to":"%s","uuid":"%s","conversation_uuid":"%s",' ..
        '"direction":"%s","status":"%s","timestamp":"%s"',
        call.from, call.to, call.uuid, call.conversation_uuid, call.direction,
        status, iso_time(call.times[step]))

    if status == "answered" then
        return '{"start_time":null,"rate":null,"network":null,' .. common .. "}"
    end
    if status == "completed" then
        local start_s = math.floor(call.answered_ms / 1000)
        local price = tonumber(call.rate) * call.duration_s / 60
        return string.format(
            '{%s,"start_time":"%s","end_time":"%s","duration":"%d","rate":"%s",' ..
            '"price":"%.8f","network":"%s","disconnected_by":"%s","sip_code":200}',
            common, iso_time(start_s * 1000), iso_time((start_s + call.duration_s) * 1000),
            call.duration_s, call.rate, price, call.network, call.disconnected_by)
    end
    return "{" .. common .. "}"
end

function init(args)
    run_tag = os.getenv("BENCH_RUN_TAG") or "00000000"
    assert(run_tag:match("^%x%x%x%x%x%x%x%x$"), "BENCH_RUN_TAG must be 8 hex digits")
    local slots = tonumber(os.getenv("BENCH_OPEN_CALLS") or "50")
    local event_seconds = tonumber(os.getenv("BENCH_EVENT_SECONDS") or "1e9")

    math.randomseed(thread_id * 1000003 + os.time())
    for slot = 1, slots do
        open_calls[slot] = new_call()
        open_call_counters[slot] = open_calls[slot].counter
        open_call_events_sent[slot] = 0
    end
    start_ms = monotonic_ms()
    event_deadline_ms = start_ms + event_seconds * 1000
end

-- Parks the connection once the event phase is over: wrk 4.1 calls
-- delay() before each request(), and sends nothing during the delay.
function delay()
    if monotonic_ms() >= event_deadline_ms then
        return 3600 * 1000
    end
    delays_granted = delays_granted + 1
    return 0
end

function request()
    -- wrk 4.1 calls request() once on the first thread before it starts,
    -- to count pipelined requests, and never sends that one. Every request()
    -- during the run follows a delay() that returned 0.
    if requests_built == delays_granted then
        return wrk.format("GET", "/healthz")
    end
    requests_built = requests_built + 1

    local slot = next_slot
    next_slot = slot % #open_calls + 1

    local call = open_calls[slot]
    if call.events_sent == #LIFECYCLE then
        call = new_call()
        open_calls[slot] = call
        open_call_counters[slot] = call.counter
    end
    call.events_sent = call.events_sent + 1
    open_call_events_sent[slot] = call.events_sent
    events_sent = events_sent + 1
    return wrk.format("POST", "/call_events", HEADERS, event_body(call, call.events_sent))
end

function response(status, headers, body)
    last_event_reply_ms = monotonic_ms()
    if status == 200 then
        if body == APPLIED_BODY then
            replies_applied = replies_applied + 1
        elseif body == DUPLICATE_BODY then
            replies_duplicate = replies_duplicate + 1
        elseif body == SPOOLED_BODY then
            replies_spooled = replies_spooled + 1
        else
            replies_other_200 = replies_other_200 + 1
        end
    else
        replies_failed = replies_failed + 1
        failed_by_status[status] = (failed_by_status[status] or 0) + 1
    end
end
