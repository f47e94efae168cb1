-- Tells whether a customer has changes in the outbox that SQL does not have yet.
-- KEYS[1] - partition outbox stream   ARGV[1] - customer id   ARGV[2] - the most entries to look through
-- Returns 1 when she has, 0 when she has not, -1 when the outbox is too long to look through.
local outbox_key = KEYS[1]
local customer_id, limit = ARGV[1], tonumber(ARGV[2])
local pending = redis.call("XRANGE", outbox_key, "-", "+", "COUNT", limit + 1)
if #pending > limit then
  return -1
end
for _, entry in ipairs(pending) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == "c" and fields[i + 1] == customer_id then
      return 1
    end
  end
end
return 0
