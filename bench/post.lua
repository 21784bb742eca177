-- wrk -s post.lua: the MCP request every server gets, a stateless tools/call of `echo`
-- with the bearer token from env TOKEN (no Authorization header when TOKEN is unset or empty),
-- the session id from env SESSION (Mcp-Session-Id, for servers and gateways that keep sessions)
-- and the tool's name from env TOOL (default echo; a proxy may prefix it).
-- At the end it prints one line "BENCH_JSON {...}" with the counts and latency percentiles
-- (microseconds), which bench/run parses.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["accept"] = "application/json, text/event-stream"
wrk.headers["mcp-protocol-version"] = "2025-11-25"
local token = os.getenv("TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["authorization"] = "Bearer " .. token
end
local session = os.getenv("SESSION")
if session ~= nil and session ~= "" then
  wrk.headers["mcp-session-id"] = session
end
local tool = os.getenv("TOOL")
if tool == nil or tool == "" then
  tool = "echo"
end
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. tool .. '","arguments":{"text":"hi"}}}'

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
