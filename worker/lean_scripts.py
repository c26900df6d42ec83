"""The Lua scripts of the worker's fast path: RQ's per-job start and success bookkeeping in one call each.

Each script writes exactly what RQ's own methods write (for the installed RQ major), which
tests/integration/test_rq_differential.py proves by comparing the whole Redis state both ways.
"""

from __future__ import annotations

from common.rqcompat import RQ3

# Replaces RQ's prepare_execution + BaseWorker.prepare_job_execution (+ Job.perform's PERSIST on RQ 2).
# KEYS: job hash, intermediate list ('' if none), worker hash, started registry, execution hash,
#       executions index, probe hash ('' if none), the worker's executions set ('' on RQ 2).
# ARGV: job id, queue name, execution id, start (epoch seconds), start (RQ's date format), worker name,
#       heartbeat ttl, registry score, executions score, probe field.
# A job whose hash is gone is dropped from the intermediate list (RQ's dequeue skips it); a job from
# another queue's registry (a planted hash) is returned untouched for RQ's own path.
_START_HEAD = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
    if KEYS[2] ~= '' then redis.call('LREM', KEYS[2], 1, ARGV[1]) end
    return false
end
local origin = false
for i = 1, #fields, 2 do
    if fields[i] == 'origin' then origin = fields[i + 1] break end
end
if origin ~= ARGV[2] then return {0, fields, 0} end
local ttl = tonumber(ARGV[7])
local member = ARGV[1] .. ':' .. ARGV[3]
redis.call('ZADD', KEYS[6], ARGV[9], ARGV[3])
redis.call('EXPIRE', KEYS[6], ttl + 60)
redis.call('ZADD', KEYS[4], ARGV[8], member)
"""
_START_RQ2 = """
redis.call('HSET', KEYS[5], 'id', ARGV[3], 'created_at', ARGV[4], 'last_heartbeat', ARGV[4], 'worker_name', ARGV[6])
redis.call('HSET', KEYS[3], 'state', 'busy', 'current_job', ARGV[1], 'current_job_working_time', '0',
           'last_heartbeat', ARGV[5])
"""
_START_RQ3 = """
redis.call('HSET', KEYS[5], 'id', ARGV[3], 'job_id', ARGV[1], 'created_at', ARGV[4], 'last_heartbeat', ARGV[4],
           'worker_name', ARGV[6])
redis.call('SADD', KEYS[8], member)
redis.call('EXPIRE', KEYS[8], ttl)
redis.call('HSET', KEYS[3], 'state', 'busy', 'last_heartbeat', ARGV[5])
"""
_START_TAIL = """
redis.call('EXPIRE', KEYS[5], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('HSET', KEYS[1], 'last_heartbeat', ARGV[5], 'status', 'started', 'started_at', ARGV[5],
           'worker_name', ARGV[6])
if KEYS[2] ~= '' then redis.call('LREM', KEYS[2], 1, ARGV[1]) end
redis.call('PERSIST', KEYS[1])
local probe = 0
if KEYS[7] ~= '' then probe = redis.call('HEXISTS', KEYS[7], ARGV[10]) end
return {1, fields, probe}
"""
START = _START_HEAD + (_START_RQ3 if RQ3 else _START_RQ2) + _START_TAIL
"""The start script for the installed RQ major."""

# Replaces BaseWorker.handle_job_success for a job kept 0 seconds with no dependents and no repeats,
# plus SimpleWorker.execute_job's return to idle and the heartbeat RQ's work loop sends after each job
# (which gives the worker record back its full expiry); the results part is worker.publish.ResultWrite.apply.
# KEYS: worker hash, started registry, execution hash, executions index, job hash, its dependents and
#       dependencies keys, the worker's executions set and the job's RQ result stream ('' on RQ 2),
#       then (when results come along) our result stream and each counter's hash.
# ARGV: registry member, working seconds, result ttl, worker record ttl, heartbeat (RQ's date format),
#       number of stream field/value items, those items, then per counter: field, amount, 1 if its hash
#       expires with the stream.
_FINISH_HEAD = """
local nfields = tonumber(ARGV[6])
if nfields > 0 then
    local entry = {}
    for i = 1, nfields do entry[i] = ARGV[6 + i] end
    redis.call('XADD', KEYS[10], '*', unpack(entry))
    redis.call('EXPIRE', KEYS[10], ARGV[3])
    local arg = 7 + nfields
    for k = 11, #KEYS do
        redis.call('HINCRBY', KEYS[k], ARGV[arg], ARGV[arg + 1])
        if ARGV[arg + 2] == '1' then redis.call('EXPIRE', KEYS[k], ARGV[3]) end
        arg = arg + 3
    end
end
redis.call('HINCRBY', KEYS[1], 'successful_job_count', 1)
redis.call('HINCRBYFLOAT', KEYS[1], 'total_working_time', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4])
"""
_FINISH_RQ2 = """
redis.call('HDEL', KEYS[1], 'current_job')
redis.call('DEL', KEYS[5], KEYS[6], KEYS[7])
"""
_FINISH_RQ3 = """
redis.call('SREM', KEYS[8], ARGV[1])
redis.call('DEL', KEYS[5], KEYS[6], KEYS[7], KEYS[9])
"""
_FINISH_TAIL = """
redis.call('HSET', KEYS[1], 'state', 'idle', 'last_heartbeat', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if KEYS[8] ~= '' then redis.call('EXPIRE', KEYS[8], ARGV[4]) end
return 1
"""
FINISH = _FINISH_HEAD + (_FINISH_RQ3 if RQ3 else _FINISH_RQ2) + _FINISH_TAIL
"""The success script for the installed RQ major."""
