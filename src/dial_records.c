#include "dial_records.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "log.h"

/*
 * KEYS[1] dial:queue, KEYS[2] job record, KEYS[3] idempotency key (or the
 * record again when ARGV[4] is not "1").
 * ARGV[1] job id, ARGV[2] job JSON, ARGV[3] now (epoch ms),
 * ARGV[4] "1" when the job has an idempotency key, ARGV[5] source.
 * Returns {"queued", id} or {"duplicate", id of the first job}.
 */
const char dial_submit_lua[] =
    "if ARGV[4] == '1' then\n"
    "    local owner = redis.call('GET', KEYS[3])\n"
    "    if owner and owner ~= ARGV[1] then\n"
    "        return {'duplicate', owner}\n"
    "    end\n"
    "    redis.call('SET', KEYS[3], ARGV[1])\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then\n"
    "    return {'duplicate', ARGV[1]}\n"
    "end\n"
    "redis.call('HSET', KEYS[2], 'state', 'queued', 'attempts', '0',\n"
    "           'job', ARGV[2], 'source', ARGV[5], 'created_at', ARGV[3],\n"
    "           'updated_at', ARGV[3])\n"
    "redis.call('LPUSH', KEYS[1], ARGV[2])\n"
    "return {'queued', ARGV[1]}\n";

/*
 * Takes ownership of one element of dial:processing. The element as
 * taken (ARGV[1]) is replaced by its canonical form (ARGV[2]), which
 * carries the job id, so a later scan finds the record again. When the
 * element as taken is no longer in the list, another claim replaced it
 * first, and nothing is done.
 * KEYS[1] dial:processing, KEYS[2] job record, KEYS[3] idempotency key
 * (or the record again).
 * ARGV[3] job id, ARGV[4] now, ARGV[5] "1" with an idempotency key,
 * ARGV[6] source.
 * Returns {state, attempts, ms since in_flight was written (Redis clock)}
 * of the record, creating it as queued; {"duplicate", id of the first
 * job, 0}, in which case the element is gone; or {"gone", "0", 0}.
 */
const char dial_claim_lua[] =
    "if ARGV[1] ~= ARGV[2] then\n"
    "    if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then\n"
    "        return {'gone', '0', 0}\n"
    "    end\n"
    "    redis.call('LPUSH', KEYS[1], ARGV[2])\n"
    "end\n"
    "if ARGV[5] == '1' then\n"
    "    local owner = redis.call('GET', KEYS[3])\n"
    "    if owner and owner ~= ARGV[3] then\n"
    "        redis.call('LREM', KEYS[1], 1, ARGV[2])\n"
    "        return {'duplicate', owner, 0}\n"
    "    end\n"
    "    if not owner then\n"
    "        redis.call('SET', KEYS[3], ARGV[3])\n"
    "    end\n"
    "end\n"
    "local state = redis.call('HGET', KEYS[2], 'state')\n"
    "if not state then\n"
    "    redis.call('HSET', KEYS[2], 'state', 'queued', 'attempts', '0',\n"
    "               'job', ARGV[2], 'source', ARGV[6],\n"
    "               'created_at', ARGV[4], 'updated_at', ARGV[4])\n"
    "    return {'queued', '0', 0}\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "local since = tonumber(redis.call('HGET', KEYS[2], 'in_flight_at'))\n"
    "return {state, redis.call('HGET', KEYS[2], 'attempts') or '0',\n"
    "        since and now - since or 0}\n";

/*
 * Marks a job in_flight before its request is sent, and only while this
 * process holds dial:lock, so a process that lost the lock sends nothing
 * more. The attempt token makes a resend after a lost reply succeed
 * instead of finding the record already changed.
 * KEYS[1] job record, KEYS[2] dial:lock. ARGV[1] expected state,
 * ARGV[2] attempt token, ARGV[3] now, ARGV[4] this process's lock value.
 * Returns "ok", "standby" without the lock, or the state that did not
 * match.
 */
const char dial_begin_lua[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[4] then\n"
    "    return 'standby'\n"
    "end\n"
    "local state = redis.call('HGET', KEYS[1], 'state')\n"
    "if state == 'in_flight' and\n"
    "   redis.call('HGET', KEYS[1], 'attempt') == ARGV[2] then\n"
    "    return 'ok'\n"
    "end\n"
    "if state ~= ARGV[1] then\n"
    "    return state or 'missing'\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "redis.call('HSET', KEYS[1], 'state', 'in_flight', 'attempt', ARGV[2],\n"
    "           'updated_at', ARGV[3], 'in_flight_at',\n"
    "           string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000)))\n"
    "redis.call('HINCRBY', KEYS[1], 'attempts', 1)\n"
    "return 'ok'\n";

/*
 * Takes or keeps dial:lock, which makes one process the one that dials.
 * KEYS[1] dial:lock. ARGV[1] this process's lock value, ARGV[2] lifetime
 * in ms. Returns 1 when this process holds the lock, else 0.
 */
const char dial_lock_lua[] =
    "local owner = redis.call('GET', KEYS[1])\n"
    "if owner and owner ~= ARGV[1] then\n"
    "    return 0\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return 1\n";

/*
 * Puts a job back to queued after a failure that cannot have placed the
 * call. KEYS[1] job record. ARGV[1] attempt token, ARGV[2] last error,
 * ARGV[3] now. Returns "ok" or the state that did not match.
 */
const char dial_requeue_lua[] =
    "local state = redis.call('HGET', KEYS[1], 'state')\n"
    "local mine = redis.call('HGET', KEYS[1], 'attempt') == ARGV[1]\n"
    "if state == 'queued' and mine then\n"
    "    return 'ok'\n"
    "end\n"
    "if state ~= 'in_flight' or not mine then\n"
    "    return state or 'missing'\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'state', 'queued', 'last_error', ARGV[2],\n"
    "           'updated_at', ARGV[3])\n"
    "return 'ok'\n";

/*
 * Stores a job's outcome and removes it from dial:processing, in one
 * step. KEYS[1] dial:processing, KEYS[2] job record, KEYS[3] idempotency
 * key (or the record again).
 * ARGV[1] element. ARGV[2] attempt token, where "" accepts any in_flight
 * record (for jobs left by a stopped process). ARGV[3] outcome.
 * ARGV[4] last error or "". ARGV[5] call uuid or "". ARGV[6] now.
 * ARGV[7] TTL in seconds, 0 for none. ARGV[8] "1" with an idempotency key.
 * Returns "ok" or the state that did not match.
 */
const char dial_finish_lua[] =
    "local state = redis.call('HGET', KEYS[2], 'state')\n"
    "local mine = state == 'in_flight' and (ARGV[2] == '' or\n"
    "    redis.call('HGET', KEYS[2], 'attempt') == ARGV[2])\n"
    "if not mine and state ~= ARGV[3] then\n"
    "    return state or 'missing'\n"
    "end\n"
    "if mine then\n"
    "    redis.call('HSET', KEYS[2], 'state', ARGV[3], 'updated_at', ARGV[6])\n"
    "    if ARGV[4] ~= '' then\n"
    "        redis.call('HSET', KEYS[2], 'last_error', ARGV[4])\n"
    "    end\n"
    "    if ARGV[5] ~= '' then\n"
    "        redis.call('HSET', KEYS[2], 'call_uuid', ARGV[5])\n"
    "    end\n"
    "end\n"
    "redis.call('LREM', KEYS[1], 1, ARGV[1])\n"
    "local ttl = tonumber(ARGV[7])\n"
    "if ttl > 0 then\n"
    "    redis.call('EXPIRE', KEYS[2], ttl)\n"
    "    if ARGV[8] == '1' then\n"
    "        redis.call('EXPIRE', KEYS[3], ttl)\n"
    "    end\n"
    "end\n"
    "return 'ok'\n";

/*
 * Moves an invalid element from dial:processing to dial:failed. Pushing
 * only what was removed makes a repeat after a lost reply harmless.
 * KEYS[1] dial:processing, KEYS[2] dial:failed, KEYS[3] unused.
 * ARGV[1] element, ARGV[2] failure entry. Returns "ok".
 */
const char dial_reject_lua[] =
    "if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then\n"
    "    redis.call('LPUSH', KEYS[2], ARGV[2])\n"
    "end\n"
    "return 'ok'\n";

void
dial_job_key(char *buf, size_t len, const char *id)
{
    snprintf(buf, len, "dial:job:{%s}", id);
}

void
dial_idem_key(char *buf, size_t len, const char *key)
{
    snprintf(buf, len, "dial:idem:{%s}", key);
}

int
dial_new_job_id(char out[DIAL_JOB_ID_SIZE])
{
    unsigned char b[16];

    if (RAND_bytes(b, sizeof(b)) != 1)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, DIAL_JOB_ID_SIZE,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x"
             "%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
             b[10], b[11], b[12], b[13], b[14], b[15]);
    return 0;
}

void
dial_command_begin(struct dial_command *cmd, const char *script,
                   const char *key1, const char *key2, const char *key3)
{
    cmd->argc = 0;
    snprintf(cmd->keys[0], sizeof(cmd->keys[0]), "%s", key1);
    snprintf(cmd->keys[1], sizeof(cmd->keys[1]), "%s", key2);
    snprintf(cmd->keys[2], sizeof(cmd->keys[2]), "%s", key3);
    snprintf(cmd->now, sizeof(cmd->now), "%" PRIu64, clock_now_ms());
    dial_command_arg(cmd, "EVAL");
    dial_command_arg(cmd, script);
    dial_command_arg(cmd, "3");
    dial_command_arg(cmd, cmd->keys[0]);
    dial_command_arg(cmd, cmd->keys[1]);
    dial_command_arg(cmd, cmd->keys[2]);
}

void
dial_command_arg(struct dial_command *cmd, const char *value)
{
    if (cmd->argc == DIAL_COMMAND_MAX_ARGS)
        return;
    cmd->argv[cmd->argc] = value;
    cmd->lens[cmd->argc] = strlen(value);
    cmd->argc++;
}

void
dial_submit_command(struct dial_command *cmd, const struct dial_job *job,
                    const char *json, const char *source)
{
    char record[DIAL_KEY_SIZE], idem[DIAL_KEY_SIZE];
    int has_key = job->idempotency_key[0] != '\0';

    dial_job_key(record, sizeof(record), job->id);
    if (has_key)
        dial_idem_key(idem, sizeof(idem), job->idempotency_key);
    dial_command_begin(cmd, dial_submit_lua, DIAL_QUEUE_KEY, record,
                       has_key ? idem : record);
    dial_command_arg(cmd, job->id);
    dial_command_arg(cmd, json);
    dial_command_arg(cmd, cmd->now);
    dial_command_arg(cmd, has_key ? "1" : "0");
    dial_command_arg(cmd, source);
}
