-- A 2 KiB MCP tools/call request, optionally paced (PACE_MS between requests per connection).
local text = string.rep("Summarise the quarterly numbers for the board meeting. ", 34)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.body = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"summarise","arguments":{"text":"' .. text .. '"}}}'
local pace = tonumber(os.getenv("PACE_MS") or "0")
if pace > 0 then
  function delay() return pace end
end
