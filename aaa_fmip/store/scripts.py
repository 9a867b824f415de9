"""The Lua scripts of the store (architecture.md §5), one constant each.

Every script touches only keys it declares in KEYS. Outside a Cluster a script may declare keys of several hash
slots (a session's keys, its indexes and the audit stream); on a Cluster each script stays within one slot,
and the callers in :mod:`aaa_fmip.store.ops` choose the variant. Scripts run by digest (EVALSHA) through
redis-py's ``Script`` objects, which reload them when a restarted server has forgotten them.
"""

from __future__ import annotations

from typing import Final

from aaa_fmip.store.audit import VERSION as AUDIT_VERSION

# RFC 1982 serial-number arithmetic on 16 bits (architecture.md §3): newer iff 0 < (s - last) mod 2^16 < 2^15.
# A WAIT pipelined behind this script waits for the replicas to hold what this connection wrote last.
REPLAY: Final = """
local last = redis.call('HGET', KEYS[1], 'seq')
if last then
  local d = (tonumber(ARGV[1]) - tonumber(last)) % 65536
  if d == 0 then
    if redis.call('HGET', KEYS[1], 'ah') == ARGV[2] then
      -- ARGV[5] = '1' (WAIT follows): write the state again, so that the WAIT covers it on this connection too
      if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'ah', ARGV[2]) end
      return 'retransmission'
    end
    return 'replay'
  end
  if d >= 32768 then return 'replay' end
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'ah', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 'accepted'
"""

# Audited writes (see the module docstring). Every such script starts with AUDITED_CHECKS and writes its audit
# entries with AUDIT_WRITES before any state change (so a write that fails half-way, e.g. out of memory, leaves
# an entry without its state change, never the reverse). KEYS[1] = audit head, KEYS[2] = audit stream; ARGV[1] =
# deadline in Redis server ms (0: none), ARGV[2] = the head the writer chained onto, ARGV[3] = the new head,
# ARGV[4] = the number of entries A, then per entry its seven stream values in the order of AUDIT_WRITES (n, at,
# event, f, prev, kid, mac: no JSON to decode in Lua); the operation's own arguments start at ARGV[5+7A], its keys
# at KEYS[3]. Replies: {-1} the deadline passed, {0, head} another writer moved the head, {2} the operation's
# precondition failed (nothing written), {1, result, stream ids...} done.
AUDITED_CHECKS: Final = (
    """
local deadline = tonumber(ARGV[1])
if deadline > 0 then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > deadline then return {-1} end
end
local head = redis.call('GET', KEYS[1]) or '"""
    + "0:"
    + "0" * 64
    + """'
if head ~= ARGV[2] then return {0, head} end
local na = tonumber(ARGV[4])
local o = 5 + 7 * na
"""
)
AUDIT_WRITES: Final = (
    """
local ids = {}
for a = 5, 4 + 7 * na, 7 do
  ids[#ids + 1] = redis.call('XADD', KEYS[2], '*', 'v', '"""
    + AUDIT_VERSION
    + """', 'n', ARGV[a], 'at', ARGV[a + 1], 'event', ARGV[a + 2],
    'f', ARGV[a + 3], 'prev', ARGV[a + 4], 'kid', ARGV[a + 5], 'mac', ARGV[a + 6])
end
if na > 0 then redis.call('SET', KEYS[1], ARGV[3]) end
"""
)
AUDIT_APPEND: Final = AUDITED_CHECKS + AUDIT_WRITES + "return {1, false, unpack(ids)}\n"

# Index upkeep shared by the audited session scripts: add ARGV[o+2] (the member) to KEYS[first..#KEYS] for
# ARGV[o+1] ms, scored by expiry in server ms (as INDEX_ADD).
INDEX_ADD_FROM: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[o + 1])
for i = first, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  redis.call('ZADD', KEYS[i], expires, ARGV[o + 2])
  local top = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', KEYS[i], math.max(1, tonumber(top[2]) - now))
end
"""

# A session and its audit entries in one step (not on a Cluster). KEYS[3] = session, then (if ARGV[o+3] is '1')
# the calling-station key, then the sorted-set indexes. ARGV[o] = record, ARGV[o+1] = TTL ms, ARGV[o+2] = the
# member (hex HMK-Name). Result: the record it replaced, or false.
PUT_SESSION_AUDITED: Final = (
    AUDITED_CHECKS
    + AUDIT_WRITES
    + """
local old = redis.call('GET', KEYS[3])
redis.call('SET', KEYS[3], ARGV[o], 'PX', ARGV[o + 1])
local first = 4
if ARGV[o + 3] == '1' then
  redis.call('SET', KEYS[4], ARGV[o + 2], 'PX', ARGV[o + 1])
  first = 5
end
"""
    + INDEX_ADD_FROM
    + "return {1, old or false, unpack(ids)}\n"
)

# The session record alone, behind its deadline (on a Cluster, after its audit entries were appended).
# KEYS[1] = session; ARGV[1] = deadline (server ms), ARGV[2] = record, ARGV[3] = TTL ms. Returns {-1} past the
# deadline, else {1, the replaced record or false}.
PUT_SESSION_SLOT: Final = """
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[1]) then return {-1} end
return {1, redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'GET') or false}
"""

# A revocation and its audit entry in one step (not on a Cluster). KEYS[3] = session, [4] = replay-ars,
# [5] = session tombstone, [6] = SPI tombstone, [7] = SPI index, [8] = sessions index, then ARGV[o+4] external-id
# indexes, then (if ARGV[o+5] is '1') the calling-station key, then the replay state keys. ARGV[o] = the record
# read before, [o+1] = tombstone ms, [o+2] = replay key prefix, [o+3] = member. {2}: the record changed or replay
# state appeared meanwhile (read again and retry).
DELETE_SESSION_AUDITED: Final = (
    AUDITED_CHECKS
    + """
if redis.call('GET', KEYS[3]) ~= ARGV[o] then return {2} end
local next_key = 9 + tonumber(ARGV[o + 4])
local mac_key = nil
if ARGV[o + 5] == '1' then
  mac_key = KEYS[next_key]
  next_key = next_key + 1
end
local declared = {}
for i = next_key, #KEYS do declared[KEYS[i]] = true end
for _, ar in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if not declared[ARGV[o + 2] .. ar] then return {2} end
end
"""
    + AUDIT_WRITES
    + """
for i = next_key, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('DEL', KEYS[3], KEYS[4])
local member = ARGV[o + 3]
for i = 7, 8 + tonumber(ARGV[o + 4]) do redis.call('ZREM', KEYS[i], member) end
if mac_key and redis.call('GET', mac_key) == member then redis.call('DEL', mac_key) end
local ms = tonumber(ARGV[o + 1])
if ms > 0 then
  for _, k in ipairs({KEYS[5], KEYS[6]}) do
    if redis.call('PTTL', k) < ms then redis.call('SET', k, '1', 'PX', ms) end
  end
end
return {1, 1, unpack(ids)}
"""
)

# Retention: trim the stream below ARGV[1] (the first stream id kept) and keep ARGV[2] (the signed checkpoint of
# the last entry trimmed) as the anchor, in one step. KEYS[1] = stream, KEYS[2] = anchor.
AUDIT_TRIM: Final = """
redis.call('SET', KEYS[2], ARGV[2])
return redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
"""

# Add a member that lives ARGV[2] ms to each sorted-set index in KEYS, scored by expiry (server ms); drop
# expired members; let each key expire with its longest-lived member. One key per call on a Cluster (the
# index keys lie in different slots); all of a session's index keys in one call elsewhere.
INDEX_ADD: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[2])
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  redis.call('ZADD', KEYS[i], expires, ARGV[1])
  local top = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', KEYS[i], math.max(1, tonumber(top[2]) - now))
end
return #KEYS
"""

# Members of a sorted-set index whose expiry has not passed, longest-lived first, with their scores.
INDEX_LIVE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
"""

# The live members of a session index AND their records, in one round trip. The records live in other hash
# slots, so this is used only where there are no slots (a single Redis, Sentinel, the embedded server); a
# Cluster takes two round trips (INDEX_LIVE, then a pipeline). ARGV[2]/ARGV[3] frame a session key name
# around a member. Returns member, score, record (false when gone), ...
INDEX_LIVE_RECORDS: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for i = 1, #m, 2 do
  out[#out + 1] = m[i]
  out[#out + 1] = m[i + 1]
  out[#out + 1] = redis.call('GET', ARGV[2] .. m[i] .. ARGV[3]) or false
end
return out
"""

# Drop an index member whose record is gone, unless it was re-added meanwhile (its score changed).
INDEX_DROP: Final = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""

COUNT_LIVE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""

DEL_IF_EQUAL: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

DEL_SENDKEY: Final = """
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['key_hash'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A tombstone never shortens: keep the longer of the existing and the requested lifetime.
TOMBSTONE: Final = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1
"""

# The session-slot part of a revocation on a Cluster (after its audit entry and the SPI tombstone).
# KEYS: session, replay-ars, revoked tombstone, replay state keys...; ARGV: value read before, tombstone ms,
# replay key prefix, deadline (server ms). Returns 1 deleted, 0 the record changed meanwhile, -1 replay state
# appeared meanwhile, -2 the deadline passed.
DELETE_SESSION: Final = """
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[4]) then return -2 end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local declared = {}
for i = 4, #KEYS do declared[KEYS[i]] = true end
for _, ar in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not declared[ARGV[3] .. ar] then return -1 end
end
for i = 4, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('DEL', KEYS[1], KEYS[2])
local ms = tonumber(ARGV[2])
if ms > 0 and redis.call('PTTL', KEYS[3]) < ms then redis.call('SET', KEYS[3], '1', 'PX', ms) end
return 1
"""

# --- FBU verification in one round trip (architecture.md §3; aaa_fmip.store.ops.StoreOps.verify_commit) --------
# The parts below are put together with the offsets of each script: KEYS[s] the key the verification relied on
# (the session or SEND-key record), KEYS[r] the replay state, KEYS[r + 1] the replay-ars set; ARGV[d] the SHA-1 of
# that record as the verifier read it ('' = not checked), ARGV[q..q+4] = sequence, SHA-256 hex of the
# authenticator, TTL ms, H(ar_id), '1' when a WAIT follows.

# The record must still be the one the verdict relies on: a revocation deletes it, a replacement changes it.
# Nothing has been written yet, so {3} leaves no trace.
VERIFY_LIVE: Final = """
if ARGV[d] ~= '' then
  local rec = redis.call('GET', KEYS[s])
  if not rec or redis.sha1hex(rec) ~= ARGV[d] then return {3} end
end
"""

# The verdict of REPLAY, decided by reads only (RFC 1982 serial arithmetic on 16 bits, window 2^15).
VERIFY_DECIDE: Final = """
local outcome, write = 'accepted', true
local last = redis.call('HGET', KEYS[r], 'seq')
if last then
  local dist = (tonumber(ARGV[q]) - tonumber(last)) % 65536
  if dist == 0 then
    if redis.call('HGET', KEYS[r], 'ah') == ARGV[q + 1] then
      outcome, write = 'retransmission', ARGV[q + 4] == '1'
    else
      outcome, write = 'replay', false
    end
  elseif dist >= 32768 then
    outcome, write = 'replay', false
  end
end
"""

# The replay state update of REPLAY for the decided verdict.
VERIFY_APPLY: Final = """
if write then
  redis.call('HSET', KEYS[r], 'seq', ARGV[q], 'ah', ARGV[q + 1])
  if outcome == 'accepted' then
    redis.call('PEXPIRE', KEYS[r], ARGV[q + 2])
    redis.call('SADD', KEYS[r + 1], ARGV[q + 3])
    if redis.call('PTTL', KEYS[r + 1]) < tonumber(ARGV[q + 2]) then redis.call('PEXPIRE', KEYS[r + 1], ARGV[q + 2]) end
  end
end
"""

# One slot (a Cluster, or a WAIT behind it): liveness and replay, no audit entry. KEYS: record, replay, replay-ars;
# ARGV: digest, then the replay arguments. Replies {3} stale, {1, verdict}.
VERIFY_SLOT: Final = (
    "local s, r, d, q = 1, 2, 1, 2\n" + VERIFY_LIVE + VERIFY_DECIDE + VERIFY_APPLY + "return {1, outcome}\n"
)

# Everything in one step where there are no slots (a single Redis, Sentinel, the embedded server): the deadline,
# the audit head, liveness, the replay verdict and, when the FBU is accepted, its audit entry, then the replay state
# (an entry is written before the state change it records). Any other verdict (a retransmission, a replay) writes
# nothing here: its entry is the caller's to append (as on a Cluster), which keeps the common call small (one
# entry's values, no JSON to decode). KEYS: audit head, audit stream, record, replay, replay-ars. ARGV[1] deadline
# (server ms), ARGV[2] the head the entry was chained onto, ARGV[3] digest, ARGV[4..8] the replay arguments,
# ARGV[9..15] the accepted verdict's stream values (n, at, event, f, prev, kid, mac: those of AUDIT_WRITES); the
# head becomes ``n:mac``. Replies: {-1} past the deadline, {0, head} another writer moved the head, {3} stale,
# {4, verdict} not accepted (nothing written), {1, 'accepted', id}.
VERIFY_AUDITED: Final = (
    """
local s, r, d, q = 3, 4, 3, 4
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[1]) then return {-1} end
local head = redis.call('GET', KEYS[1]) or '"""
    + "0:"
    + "0" * 64
    + """'
if head ~= ARGV[2] then return {0, head} end
"""
    + VERIFY_LIVE
    + VERIFY_DECIDE
    + """
if outcome ~= 'accepted' then return {4, outcome} end
local id = redis.call('XADD', KEYS[2], '*', 'v', '"""
    + AUDIT_VERSION
    + """', 'n', ARGV[9], 'at', ARGV[10], 'event', ARGV[11],
  'f', ARGV[12], 'prev', ARGV[13], 'kid', ARGV[14], 'mac', ARGV[15])
redis.call('SET', KEYS[1], ARGV[9] .. ':' .. ARGV[15])
"""
    + VERIFY_APPLY
    + "return {1, outcome, id}\n"
)
