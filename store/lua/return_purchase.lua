-- Applies one return (or void) of a committed purchase, exactly once per return id, with its write-behind record.
-- Everything is validated before the first write: Redis does not roll back a script that fails half-way.
-- KEYS[1] - profile hash   KEYS[2] - offer uses hash   KEYS[3] - the purchase's returned-quantities hash
-- KEYS[4] - return record hash   KEYS[5] - partition outbox stream   KEYS[6] - monthly spend hash
-- KEYS[7] - ledger list   KEYS[8] - pending points hash   KEYS[9] - categories set
-- KEYS[10] - recent purchases per category hash
-- ARGV[1] - request digest   ARGV[2] - profile version the return was computed on   ARGV[3] - receipt (protobuf)
-- ARGV[4] - outbox record (JSON)   ARGV[5] - balance delta   ARGV[6] - debt delta (>= 0)
-- ARGV[7] - lifetime value delta (<= 0)   ARGV[8] - purchase count delta (-1 for a void)
-- ARGV[9] - retention, seconds   ARGV[10] - customer id (tags the outbox entry)
-- ARGV[11] - month of the purchase ("YYYYMM")   ARGV[12] - spend to take off it (<= 0)
-- ARGV[13] - number of lines N   ARGV[14] - number of ledger entries M (JSON each)   ARGV[15] - now, epoch ms
-- ARGV[16] - a void: the purchase's categories (JSON array, each once), else "[]"
-- ARGV[17] - the categories the purchase added to her profile (JSON array): a void takes each back unless another
--            recent purchase bought it too; those taken back go to the outbox entry's "cats_removed"
-- ARGV[18 .. 17+2N] - line id, cumulative returned quantity (pairs)   ARGV[18+2N .. 17+2N+M] - ledger entries
-- ARGV[18+2N+M ..] - offers lost (their per-customer use is given back)
-- Returns {"ok", outbox entry id} | {"replay", receipt} | {"digest_mismatch"} | {"missing"} | {"stale"}
local done = redis.call("HMGET", KEYS[4], "digest", "receipt")
if done[1] then
  if done[1] == ARGV[1] then
    return {"replay", done[2]}
  end
  return {"digest_mismatch"}
end
local profile = redis.call("HMGET", KEYS[1], "ver", "bal")
if not profile[1] then
  return {"missing"}
end
if profile[1] ~= ARGV[2] or (tonumber(profile[2]) or 0) + tonumber(ARGV[5]) < 0 then
  return {"stale"}
end

redis.call("HINCRBY", KEYS[1], "bal", ARGV[5])
redis.call("HINCRBY", KEYS[1], "debt", ARGV[6])
redis.call("HINCRBY", KEYS[1], "ltv", ARGV[7])
redis.call("HINCRBY", KEYS[1], "cnt", ARGV[8])
redis.call("HINCRBY", KEYS[1], "ver", 1)
if redis.call("EXISTS", KEYS[6]) == 1 then
  redis.call("HINCRBY", KEYS[6], ARGV[11], ARGV[12])
end
local n, m = tonumber(ARGV[13]), tonumber(ARGV[14])
for i = 18, 17 + 2 * n, 2 do
  redis.call("HSET", KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call("EXPIRE", KEYS[3], ARGV[9])
local added = {}
for _, category in ipairs(cjson.decode(ARGV[17])) do
  added[category] = true
end
local removed = {}
for _, category in ipairs(cjson.decode(ARGV[16])) do
  if tonumber(redis.call("HINCRBY", KEYS[10], category, -1)) <= 0 then
    redis.call("HDEL", KEYS[10], category)
    if added[category] and redis.call("SREM", KEYS[9], category) == 1 then
      removed[#removed + 1] = category
    end
  end
end
local entries = {}
for i = 18 + 2 * n, 17 + 2 * n + m do
  entries[#entries + 1] = ARGV[i]
end
ledger_append(KEYS[1], KEYS[7], entries, KEYS[8], tonumber(ARGV[15]))
for i = 18 + 2 * n + m, #ARGV do
  if tonumber(redis.call("HINCRBY", KEYS[2], ARGV[i], -1)) <= 0 then
    redis.call("HDEL", KEYS[2], ARGV[i])
  end
end
redis.call("HSET", KEYS[4], "digest", ARGV[1], "receipt", ARGV[3])
redis.call("EXPIRE", KEYS[4], ARGV[9])
local written
if #removed > 0 then
  written = redis.call("XADD", KEYS[5], "*", "r", ARGV[4], "c", ARGV[10], "cats_removed", cjson.encode(removed))
else
  written = redis.call("XADD", KEYS[5], "*", "r", ARGV[4], "c", ARGV[10])
end
return {"ok", written}
