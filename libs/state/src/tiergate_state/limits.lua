-- tiergate limits: one atomic decision per request over a subject's three limits.
--
-- KEYS (one hash tag, so one cluster slot):
--   1 requests zset   member = request id, score = admission time (ms)
--   2 tokens zset     member = request id, score = admission time (ms)
--   3 tokens hash     field = request id -> tokens charged; field "_t" = sum over the window
--   4 leases zset     member = request id, score = lease expiry (ms)
--
-- Windows slide: a request counts for exactly window ms after its admission. Only admitted
-- requests count. Tokens are reserved at admission (prompt estimate + max_tokens) and
-- corrected by `finish` once the real usage is known. A lease that is never released (its
-- process died) expires by itself. Time is the Redis server's, so replicas agree.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Remove window entries older than `cutoff` from the tokens zset and the running total.
local function trim_tokens(zkey, hkey, cutoff)
  local expired = redis.call('ZRANGEBYSCORE', zkey, '-inf', cutoff)
  if #expired == 0 then
    return
  end
  local freed = 0
  for i = 1, #expired, 500 do
    local batch = {}
    for j = i, math.min(i + 499, #expired) do
      batch[#batch + 1] = expired[j]
    end
    local amounts = redis.call('HMGET', hkey, unpack(batch))
    for j = 1, #amounts do
      freed = freed + (tonumber(amounts[j]) or 0)
    end
    redis.call('HDEL', hkey, unpack(batch))
  end
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', cutoff)
  local total = redis.call('HINCRBY', hkey, '_t', -freed)
  if total < 0 then
    redis.call('HSET', hkey, '_t', 0)
  end
end

-- ms until the newest entry of `zkey` leaves a window of `win` ms (0 when empty).
local function reset_ms(zkey, win, now)
  local newest = redis.call('ZREVRANGE', zkey, 0, 0, 'WITHSCORES')
  if #newest == 0 then
    return 0
  end
  return math.max(0, tonumber(newest[2]) + win - now)
end

local op = ARGV[1]
local id = ARGV[2]
local now = now_ms()

if op == 'admit' then
  local req_limit, req_win = tonumber(ARGV[3]), tonumber(ARGV[4])
  local tok_limit, tok_win, reserve = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local max_conc, lease_ms = tonumber(ARGV[8]), tonumber(ARGV[9])

  local req_count = 0
  if req_limit > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - req_win)
    req_count = redis.call('ZCARD', KEYS[1])
  end
  local tok_total = 0
  if tok_limit > 0 then
    trim_tokens(KEYS[2], KEYS[3], now - tok_win)
    tok_total = tonumber(redis.call('HGET', KEYS[3], '_t') or '0')
  end
  local in_flight = 0
  if max_conc > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
    in_flight = redis.call('ZCARD', KEYS[4])
  end

  local verdict, retry = 'ok', 0
  if req_limit > 0 and req_count >= req_limit then
    verdict = 'requests'
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    retry = tonumber(oldest[2]) + req_win - now
  elseif tok_limit > 0 and reserve > tok_limit then
    verdict = 'too_large'
    retry = tok_win
  elseif tok_limit > 0 and tok_total + reserve > tok_limit then
    verdict = 'tokens'
    -- The earliest time enough reserved tokens have left the window.
    local need = tok_total + reserve - tok_limit
    local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    retry = tok_win
    for i = 1, #entries, 2 do
      need = need - (tonumber(redis.call('HGET', KEYS[3], entries[i])) or 0)
      if need <= 0 then
        retry = tonumber(entries[i + 1]) + tok_win - now
        break
      end
    end
  elseif max_conc > 0 and in_flight >= max_conc then
    verdict = 'concurrency'
    local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    retry = math.min(1000, tonumber(first[2]) - now)
  end

  if verdict == 'ok' then
    if req_limit > 0 then
      redis.call('ZADD', KEYS[1], now, id)
      redis.call('PEXPIRE', KEYS[1], req_win)
      req_count = req_count + 1
    end
    if tok_limit > 0 then
      redis.call('ZADD', KEYS[2], now, id)
      redis.call('HSET', KEYS[3], id, reserve)
      tok_total = redis.call('HINCRBY', KEYS[3], '_t', reserve)
      redis.call('PEXPIRE', KEYS[2], tok_win)
      redis.call('PEXPIRE', KEYS[3], tok_win)
    end
    if max_conc > 0 then
      redis.call('ZADD', KEYS[4], now + lease_ms, id)
      redis.call('PEXPIRE', KEYS[4], lease_ms)
      in_flight = in_flight + 1
    end
  end

  local req_reset, tok_reset = 0, 0
  if req_limit > 0 then
    req_reset = reset_ms(KEYS[1], req_win, now)
  end
  if tok_limit > 0 then
    tok_reset = reset_ms(KEYS[2], tok_win, now)
  end
  return {
    verdict,
    math.max(0, req_limit - req_count), req_reset,
    math.max(0, tok_limit - tok_total), tok_reset,
    math.max(0, retry), in_flight,
  }
end

if op == 'finish' then
  -- ARGV[3]: tokens really used (-1: unknown, keep the reservation)
  local used = tonumber(ARGV[3])
  if used >= 0 then
    local old = redis.call('HGET', KEYS[3], id)
    if old then
      redis.call('HSET', KEYS[3], id, used)
      redis.call('HINCRBY', KEYS[3], '_t', used - tonumber(old))
    end
  end
  return redis.call('ZREM', KEYS[4], id)
end

if op == 'renew' then
  -- ARGV[3]: lease ms from now; only a lease still held is renewed
  local lease_ms = tonumber(ARGV[3])
  if not redis.call('ZSCORE', KEYS[4], id) then
    return 0
  end
  redis.call('ZADD', KEYS[4], now + lease_ms, id)
  if redis.call('PTTL', KEYS[4]) < lease_ms then
    redis.call('PEXPIRE', KEYS[4], lease_ms)
  end
  return 1
end

return redis.error_reply('unknown op ' .. tostring(op))
