-- Rebuilds a customer's hot state from the SQL snapshot, unless another call already did, and only when none
-- of her changes is still waiting in the outbox (SQL would not have them yet: rebuilding then would forget them).
-- KEYS[1] - profile hash   KEYS[2] - categories set   KEYS[3] - offer uses hash   KEYS[4] - partition outbox
-- KEYS[5] - ledger list   KEYS[6..] - hashes to restore with the profile (receipts, returned quantities, spend)
-- ARGV[1] - profile fields as JSON object (string values)   ARGV[2] - categories JSON array
-- ARGV[3] - offer uses JSON object   ARGV[4] - newest ledger entries, JSON array of JSON strings
-- ARGV[5] - customer id   ARGV[6] - seconds to keep her if nothing else touches her (0 = for good): a member
--   rebuilt only for a batch job (expiry) leaves again, a purchase keeps her (commit_purchase PERSISTs)
-- ARGV[7..] - per restored hash, in KEYS order: ttl seconds, number of fields F, then F field/value pairs
-- Returns 1 when it wrote, 0 when the profile was already there, -1 when her changes are still in the outbox,
-- -2 when the outbox is too long to look through (the writer is far behind).
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
local pending = redis.call("XRANGE", KEYS[4], "-", "+", "COUNT", 10001)
if #pending > 10000 then
  return -2
end
for _, entry in ipairs(pending) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == "c" and fields[i + 1] == ARGV[5] then
      return -1
    end
  end
end
for k, v in pairs(cjson.decode(ARGV[1])) do
  redis.call("HSET", KEYS[1], k, v)
end
redis.call("DEL", KEYS[2], KEYS[3])
for _, c in ipairs(cjson.decode(ARGV[2])) do
  redis.call("SADD", KEYS[2], c)
end
for offer, n in pairs(cjson.decode(ARGV[3])) do
  redis.call("HSET", KEYS[3], offer, n)
end
redis.call("DEL", KEYS[5])
local entries = cjson.decode(ARGV[4])
if #entries > 0 then
  redis.call("RPUSH", KEYS[5], unpack(entries))
end
if tonumber(ARGV[6]) > 0 then
  for _, key in ipairs({KEYS[1], KEYS[2], KEYS[3], KEYS[5]}) do
    redis.call("EXPIRE", key, ARGV[6])
  end
end
local at = 7
for i = 6, #KEYS do
  local ttl, count = ARGV[at], tonumber(ARGV[at + 1])
  if redis.call("EXISTS", KEYS[i]) == 0 and count > 0 then
    for f = at + 2, at + 1 + 2 * count, 2 do
      redis.call("HSET", KEYS[i], ARGV[f], ARGV[f + 1])
    end
    redis.call("EXPIRE", KEYS[i], ttl)
  end
  at = at + 2 + 2 * count
end
return 1
