-- wrk script for the tiergate benchmark: POSTs one realistic chat request (the body comes from
-- the harness in BENCH_BODY: system + user message, model, stream flag, max_tokens) on every
-- connection, and prints one JSON line of results when done. The request is static, so wrk
-- formats it once and sends it without calling Lua per request.
--
-- Counted as errors: non-2xx answers (wrk counts status > 399) and socket errors (connect,
-- read, write, timeout). Latencies are in microseconds, to the end of the whole response (for
-- a stream: to [DONE]).

local body = os.getenv("BENCH_BODY")
if body == nil or body == "" then
  io.stderr:write("chat.lua: BENCH_BODY is not set\n")
  os.exit(2)
end

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/v1/chat/completions"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
-- tiergate: `Bearer anonymous` is the keyless tier; the api-key variant sends an agent key.
wrk.headers["Authorization"] = os.getenv("BENCH_AUTHORIZATION") or "Bearer anonymous"
wrk.headers["Accept"] = "application/json, text/event-stream"

function done(summary, latency, requests)
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,"socket_errors":%d,'
      .. '"connect":%d,"read":%d,"write":%d,"timeout":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, socket_errors,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
