-- Rebuilds a customer's hot state from the SQL snapshot, unless another call already did.
-- KEYS[1] - profile hash   KEYS[2] - categories set   KEYS[3] - offer uses hash   KEYS[4..] - transaction hashes
-- ARGV[1] - profile fields as JSON object (string values)   ARGV[2] - categories JSON array
-- ARGV[3] - offer uses JSON object   ARGV[4] - receipt retention, seconds
-- ARGV[5..] - per transaction key, in KEYS order: digest, receipt, remaining ttl seconds (three values each)
-- Returns 1 when it wrote, 0 when the profile was already there.
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
local fields = cjson.decode(ARGV[1])
for k, v in pairs(fields) do
  redis.call("HSET", KEYS[1], k, v)
end
redis.call("DEL", KEYS[2], KEYS[3])
for _, c in ipairs(cjson.decode(ARGV[2])) do
  redis.call("SADD", KEYS[2], c)
end
for offer, n in pairs(cjson.decode(ARGV[3])) do
  redis.call("HSET", KEYS[3], offer, n)
end
for i = 4, #KEYS do
  local base = 5 + (i - 4) * 3
  if redis.call("EXISTS", KEYS[i]) == 0 then
    redis.call("HSET", KEYS[i], "digest", ARGV[base], "receipt", ARGV[base + 1])
    redis.call("EXPIRE", KEYS[i], ARGV[base + 2])
  end
end
return 1
