"""The Lua scripts of the Redis limiter. Each runs atomically inside Redis and reads the clock
with TIME, so every replica sees one clock: Redis's, not its own.

Loaded once per Redis process and called by SHA (redis-py's Script reloads after NOSCRIPT,
e.g. when Redis restarted empty).
"""

# Same ids and end times as limiter_types.window(): dYYYYY = days since the epoch, mYYYYMM = the
# UTC calendar month (civil-from-days, Howard Hinnant's algorithm).
WINDOW = r"""
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m > 2) and (m - 3) or (m + 9)
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function window(kind, now)
  local day = math.floor(now / 86400)
  if kind == 'd' then return string.format('d%d', day), (day + 1) * 86400 end
  local z = day + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = (mp < 10) and (mp + 3) or (mp - 9)
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  local ny, nm = y, m + 1
  if nm > 12 then ny, nm = y + 1, 1 end
  return string.format('m%04d%02d', y, m), days_from_civil(ny, nm, 1) * 86400
end
"""

# KEYS: one per meter. ARGV: member, lease seconds, then kind, limit, cost per meter.
# Returns {denied meter (1-based, 0 = admitted), retry ms, then per meter: remaining, reset ms, key}.
ADMIT = WINDOW + r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local member, lease = ARGV[1], tonumber(ARGV[2])
local n = #KEYS
local kinds, limits, costs, levels, keys, resets = {}, {}, {}, {}, {}, {}
local denied, retry = 0, 0
for i = 1, n do
  local kind, limit, cost = ARGV[3 * i], tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  kinds[i], limits[i], costs[i], keys[i], resets[i] = kind, limit, cost, KEYS[i], 0
  local level, wait = 0, 0
  if kind == 'b' then
    local v = redis.call('HMGET', KEYS[i], 'l', 't')
    if v[1] then
      level = math.min(limit, tonumber(v[1]) + (now - tonumber(v[2])) * limit / 60)
    else
      level = limit
    end
    if cost > level then wait = (cost - level) * 60 / limit end
  elseif kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    level = limit - redis.call('ZCARD', KEYS[i])
    if cost > level then wait = 1 end
  else
    local wid, ends = window(kind, now)
    keys[i] = KEYS[i] .. ':' .. wid
    level = limit - tonumber(redis.call('GET', keys[i]) or '0')
    resets[i] = ends - now
    if cost > level then wait = ends - now end
  end
  levels[i] = level
  if wait > retry or (wait > 0 and denied == 0) then
    denied = i
    if wait > retry then retry = wait end
  end
end
if denied == 0 then
  for i = 1, n do
    local kind, limit = kinds[i], limits[i]
    levels[i] = levels[i] - costs[i]
    if kind == 'b' then
      redis.call('HSET', KEYS[i], 'l', levels[i], 't', now)
      resets[i] = (limit - levels[i]) * 60 / limit
      redis.call('PEXPIRE', KEYS[i], math.ceil(resets[i] * 1000) + 1000)
    elseif kind == 'c' then
      redis.call('ZADD', KEYS[i], now + lease, member)
      redis.call('PEXPIRE', KEYS[i], math.ceil(lease * 1000) + 1000)
    else
      redis.call('INCRBY', keys[i], ARGV[3 * i + 2])
      redis.call('EXPIRE', keys[i], math.ceil(resets[i]) + 86400)
    end
  end
end
local out = {denied, math.floor(retry * 1000)}
for i = 1, n do
  out[#out + 1] = math.floor(levels[i])
  out[#out + 1] = math.floor(resets[i] * 1000)
  out[#out + 1] = keys[i]
end
return out
"""

# KEYS: the keys admission returned. ARGV: member, then kind, limit, amount per meter
# (amount = reserved - used: positive gives back).
SETTLE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, #KEYS do
  local kind, limit, amount = ARGV[3 * i - 1], tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  if kind == 'b' then
    local v = redis.call('HMGET', KEYS[i], 'l', 't')
    local level = limit
    if v[1] then level = math.min(limit, tonumber(v[1]) + (now - tonumber(v[2])) * limit / 60) end
    level = math.min(limit, level + amount)
    if level >= limit then
      redis.call('DEL', KEYS[i])
    else
      redis.call('HSET', KEYS[i], 'l', level, 't', now)
      redis.call('PEXPIRE', KEYS[i], math.ceil((limit - level) * 60000 / limit) + 1000)
    end
  elseif kind == 'c' then
    redis.call('ZREM', KEYS[i], ARGV[1])
  elseif amount ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('DECRBY', KEYS[i], ARGV[3 * i + 1])
  end
end
return 1
"""

# KEYS[1]: the replica set. ARGV: replica id, seconds after which a silent replica is gone.
HEARTBEAT = r"""
local now = tonumber(redis.call('TIME')[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[1], 3600)
return redis.call('ZCARD', KEYS[1])
"""
