-- Finds the write-behind records of one partition that mention an offer: what SQL may not have yet (or has, but
-- the writer has not removed from the stream yet), for rebuilding the offer's lost budget counter.
-- KEYS[1] - partition outbox stream
-- ARGV[1] - the offer id as the records' JSON spells it (quoted and escaped): a plain substring test, the caller
--           parses what matches
-- ARGV[2] - the most entries to look through (store/redis_limits.py)
-- Returns {0, record, record, ...}, or {-1} when the stream holds more than ARGV[2] entries (the writer is far
-- behind).
local outbox_key = KEYS[1]
local needle, limit = ARGV[1], tonumber(ARGV[2])

local entries = redis.call("XRANGE", outbox_key, "-", "+", "COUNT", limit + 1)
if #entries > limit then
  return {-1}
end
local found = {0}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == "r" and string.find(fields[i + 1], needle, 1, true) then
      found[#found + 1] = fields[i + 1]
    end
  end
end
return found
