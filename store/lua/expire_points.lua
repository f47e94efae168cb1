-- Takes the spendable points of a customer who has not bought since before the cutoff: once per period of
-- inactivity. Points still pending (a returns window longer than the inactivity period) are left to her.
-- KEYS[1] - profile hash   KEYS[2] - partition outbox stream   KEYS[3] - ledger list   KEYS[4] - pending points hash
-- ARGV[1] - cutoff, epoch ms   ARGV[2] - the last purchase time the caller saw, epoch ms
-- ARGV[3] - outbox record (JSON, without the points)   ARGV[4] - customer id (tags the outbox entry)
-- ARGV[5] - ledger entry id   ARGV[6] - now, epoch ms   ARGV[7] - profile version the caller saw
-- Returns the points taken: 0 when she bought since, has nothing left, or Redis does not hold her (-1).
local p = redis.call("HMGET", KEYS[1], "bal", "last", "ver")
if not p[1] then
  return -1
end
local balance, last = tonumber(p[1]) or 0, tonumber(p[2]) or 0
if last == 0 or last >= tonumber(ARGV[1]) or last ~= tonumber(ARGV[2]) or p[3] ~= ARGV[7] or balance <= 0 then
  return 0
end
local now = tonumber(ARGV[6])
local taken = spendable_points(balance, KEYS[4], now)
if taken <= 0 then
  return 0
end
redis.call("HINCRBY", KEYS[1], "bal", -taken)
ledger_append(KEYS[1], KEYS[3], {cjson.encode({id = ARGV[5], k = "expire", p = -taken, t = now})})
redis.call("HINCRBY", KEYS[1], "ver", 1)
redis.call("XADD", KEYS[2], "*", "r", ARGV[3], "points", taken, "c", ARGV[4])
return taken
