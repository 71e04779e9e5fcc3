-- A 2 KiB guard API call: a gateway asking Palisade about an MCP tools/call it carries.
local text = string.rep("Summarise the quarterly numbers for the board meeting. ", 34)
local call = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"summarise","arguments":{"text":"' .. text .. '"}}}'
local escaped = call:gsub('\\', '\\\\'):gsub('"', '\\"')
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("GUARD_KEY") or "")
wrk.body = '{"method":"POST","path":"/mcp","headers":{"content-type":"application/json"},"protocol":"mcp","body":"' .. escaped .. '"}'
