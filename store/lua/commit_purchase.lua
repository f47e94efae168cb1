-- Applies one purchase to a customer's hot state, exactly once, and appends its write-behind record.
-- Everything is validated before the first write: Redis does not roll back a script that fails half-way.
-- KEYS[1] - profile hash        KEYS[2] - categories set     KEYS[3] - offer uses hash
-- KEYS[4] - transaction hash    KEYS[5] - partition outbox stream   KEYS[6] - monthly spend hash
-- KEYS[7] - ledger list       KEYS[8] - pending points hash   KEYS[9] - recent purchases per category hash
-- ARGV[1] - request digest      ARGV[2] - profile version the purchase was evaluated on
-- ARGV[3] - receipt (protobuf)  ARGV[4] - outbox record (JSON)
-- ARGV[5] - balance delta (earned - redeemed - debt repaid)   ARGV[6] - points redeemed
-- ARGV[7] - lifetime value delta               ARGV[8] - purchase time, epoch milliseconds
-- ARGV[9] - receipt retention, seconds         ARGV[10] - customer id (tags the outbox entry)
-- ARGV[11] - points debt repaid from this purchase's earnings
-- ARGV[12] - month of the sale ("YYYYMM")       ARGV[13] - net spend to add to it
-- ARGV[14] - tier reached by this purchase ("" = unchanged)
-- ARGV[15] - number of new categories N        ARGV[16] - number of ledger entries M (JSON each)
-- ARGV[17] - now, epoch ms (what is spendable is judged by the server's clock, not the sale's time)
-- ARGV[18] - the basket's categories (JSON array, each once): counted for a void of this purchase
-- ARGV[19 .. 18+N] - new categories   ARGV[19+N .. 18+N+M] - ledger entries   ARGV[19+N+M ..] - offers applied
-- Returns {"ok"} | {"replay", receipt} | {"digest_mismatch"} | {"missing"} | {"stale"}
--   | {"insufficient", spendable points}
local txn = redis.call("HMGET", KEYS[4], "digest", "receipt")
if txn[1] then
  if txn[1] == ARGV[1] then
    return {"replay", txn[2]}
  end
  return {"digest_mismatch"}
end
local profile = redis.call("HMGET", KEYS[1], "ver", "bal", "last", "debt")
if not profile[1] then
  return {"missing"}
end
if profile[1] ~= ARGV[2] then
  return {"stale"}
end
local balance = tonumber(profile[2]) or 0
local delta = tonumber(ARGV[5])
local now = tonumber(ARGV[17])
if tonumber(ARGV[6]) > 0 then
  local spendable = spendable_points(balance, KEYS[8], now)
  if spendable < tonumber(ARGV[6]) then
    return {"insufficient", tostring(spendable)}
  end
end
if balance + delta < 0 then
  return {"insufficient", tostring(balance)}
end
if (tonumber(profile[4]) or 0) < tonumber(ARGV[11]) then
  return {"stale"}
end

-- A purchase makes her a member Redis keeps for good (a batch job may have rebuilt her for a while only).
redis.call("PERSIST", KEYS[1])
redis.call("PERSIST", KEYS[2])
redis.call("PERSIST", KEYS[3])
redis.call("PERSIST", KEYS[7])
redis.call("HINCRBY", KEYS[1], "bal", delta)
redis.call("HINCRBY", KEYS[1], "ltv", ARGV[7])
redis.call("HINCRBY", KEYS[1], "cnt", 1)
redis.call("HINCRBY", KEYS[1], "ver", 1)
if tonumber(ARGV[11]) > 0 then
  redis.call("HINCRBY", KEYS[1], "debt", -tonumber(ARGV[11]))
end
if (tonumber(profile[3]) or 0) < tonumber(ARGV[8]) then
  redis.call("HSET", KEYS[1], "last", ARGV[8])
end
redis.call("HINCRBY", KEYS[6], ARGV[12], ARGV[13])
redis.call("EXPIRE", KEYS[6], 34560000)  -- 400 days: a year of months and some
if ARGV[14] ~= "" then
  redis.call("HSET", KEYS[1], "tier", ARGV[14])
end
local n, m = tonumber(ARGV[15]), tonumber(ARGV[16])
for i = 19, 18 + n do
  redis.call("SADD", KEYS[2], ARGV[i])
end
for _, category in ipairs(cjson.decode(ARGV[18])) do
  redis.call("HINCRBY", KEYS[9], category, 1)
end
redis.call("EXPIRE", KEYS[9], 172800)  -- two days: a void is possible on the sale's business day only
local entries = {}
for i = 19 + n, 18 + n + m do
  entries[#entries + 1] = ARGV[i]
end
ledger_append(KEYS[1], KEYS[7], entries, KEYS[8], now)
for i = 19 + n + m, #ARGV do
  redis.call("HINCRBY", KEYS[3], ARGV[i], 1)
end
redis.call("HSET", KEYS[4], "digest", ARGV[1], "receipt", ARGV[3])
redis.call("EXPIRE", KEYS[4], ARGV[9])
redis.call("XADD", KEYS[5], "*", "r", ARGV[4], "c", ARGV[10])
return {"ok"}
