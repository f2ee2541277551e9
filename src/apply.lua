-- Applies one webhook event to a call or conversation record.
--
-- KEYS[1] record hash, KEYS[2] history list, KEYS[3] version hash,
-- KEYS[4] event stream, KEYS[5] index of calls by update time.
-- ARGV[1] now (epoch ms)          ARGV[2] TTL in seconds, 0 for none
-- ARGV[3] "final" or "always": when the TTL is set
-- ARGV[4] history length cap      ARGV[5] event digest
-- ARGV[6] field version           ARGV[7] ranked status or ""
-- ARGV[8] status version          ARGV[9] history entry
-- ARGV[10] JWT id of a signed webhook, or ""
-- ARGV[11] stream MAXLEN, 0 for no stream
-- ARGV[12] record id              ARGV[13] "call" or "conversation"
-- ARGV[14..] field name, value, name, value, ...
--
-- Versions are fixed-width strings that compare in byte order: a field
-- takes the value of the event with the highest field version
-- (timestamp, then rank, then digest), and "status" the highest status
-- version (rank, then timestamp, then name). Each decision depends only
-- on the set of events seen, never on their arrival order.
--
-- Returns 0 for a duplicate, 1 when applied, 2 when applied and the
-- status changed, -1 when the JWT id was seen before for this record (a
-- replayed token; nothing is written).

local record, history, versions = KEYS[1], KEYS[2], KEYS[3]
local now = ARGV[1]
local ttl = tonumber(ARGV[2])
local field_version = ARGV[6]
local status, status_version = ARGV[7], ARGV[8]
local jti = ARGV[10]
local FIRST = 14
local nfields = (#ARGV - FIRST + 1) / 2

local lookup = {}
for i = 1, nfields do
    lookup[i] = 'f:' .. ARGV[FIRST + 2 * i - 2]
end
lookup[nfields + 1] = 's'
lookup[nfields + 2] = 'e:' .. ARGV[5]
lookup[nfields + 3] = 'j:' .. jti

local current = redis.call('HMGET', versions, unpack(lookup))
if jti ~= '' then
    -- A signed token's payload hash ties it to one body and so to this
    -- record: remembering its id here is enough to refuse a replay.
    if current[nfields + 3] then
        return -1
    end
    redis.call('HSET', versions, lookup[nfields + 3], '1')
end
if current[nfields + 2] then
    return 0
end

local record_set = {'updated_at', now}
local version_set = {lookup[nfields + 2], '1'}
for i = 1, nfields do
    local seen = current[i]
    if not seen or seen < field_version then
        record_set[#record_set + 1] = ARGV[FIRST + 2 * i - 2]
        record_set[#record_set + 1] = ARGV[FIRST + 2 * i - 1]
        version_set[#version_set + 1] = lookup[i]
        version_set[#version_set + 1] = field_version
    end
end

local best = current[nfields + 1]
local previous = best
local changed = 0
if status ~= '' and (not best or best < status_version) then
    record_set[#record_set + 1] = 'status'
    record_set[#record_set + 1] = status
    version_set[#version_set + 1] = 's'
    version_set[#version_set + 1] = status_version
    best = status_version
    changed = 1
end

redis.call('HSET', record, unpack(record_set))
redis.call('HSETNX', record, 'created_at', now)
redis.call('HINCRBY', record, 'events', 1)
redis.call('HSET', versions, unpack(version_set))
local cap = tonumber(ARGV[4])
if redis.call('RPUSH', history, ARGV[9]) > cap then
    redis.call('LTRIM', history, -cap, -1)
end

-- Status versions start with the two-digit rank; 50 and up are final.
if ttl > 0 and (ARGV[3] == 'always' or
                (best and tonumber(string.sub(best, 1, 2)) >= 50)) then
    redis.call('EXPIRE', record, ttl)
    redis.call('EXPIRE', history, ttl)
    redis.call('EXPIRE', versions, ttl)
end

-- Index of calls by update time, overall and per status, so listing
-- recent calls reads a sorted set instead of scanning the keyspace.
-- Status versions end with the status name after rank and timestamp.
-- callhook trims entries older than the TTL from outside, once a minute.
-- NOTE: the per-status keys are derived here, not passed in KEYS; fine on
-- one Redis primary, but on Redis Cluster the index must be turned off.
local id = ARGV[12]
if ARGV[13] == 'call' then
    local index = KEYS[5]
    redis.call('ZADD', index, now, id)
    if changed == 1 and previous then
        redis.call('ZREM', index .. ':' .. string.sub(previous, 18), id)
    end
    if best then
        redis.call('ZADD', index .. ':' .. string.sub(best, 18), now, id)
    end
end

local maxlen = tonumber(ARGV[11])
if maxlen > 0 then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*',
               'id', id, 'kind', ARGV[13],
               'status', changed == 1 and status or '', 'event', ARGV[9])
end

return 1 + changed
