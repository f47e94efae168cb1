-- Tells whether a customer has changes in the outbox that SQL does not have yet.
-- KEYS[1] - partition outbox stream   ARGV[1] - customer id
-- Returns 1 when she has, 0 when she has not, -1 when the outbox is too long to look through.
local pending = redis.call("XRANGE", KEYS[1], "-", "+", "COUNT", 10001)
if #pending > 10000 then
  return -1
end
for _, entry in ipairs(pending) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == "c" and fields[i + 1] == ARGV[1] then
      return 1
    end
  end
end
return 0
