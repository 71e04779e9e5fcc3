-- The `palisade` plugin: Kong asks Palisade's guard API about the traffic it carries.
--
-- blocking mode
--   access:   POST /v1/guard/request. `block` answers the client with Palisade's status, headers
--             and body, and the upstream never sees the request; `redact` forwards Palisade's
--             rewritten body instead of the client's.
--   response: POST /v1/guard/response with the buffered upstream answer. `block` replaces it with
--             Palisade's answer; `redact` replaces its body.
-- async mode
--   access:   keeps a copy of the request (within `max_body_bytes`).
--   log:      after the client has its answer, a zero-delay timer POSTs the exchange to
--             /v1/guard/exchange, so the client never waits on Palisade.
--
-- Kong buffers the upstream response for every route this plugin is on (a plugin with a
-- `response` handler turns on buffered proxying), so a streamed answer (SSE) reaches the client
-- whole. That is what lets blocking mode judge it before the client sees any byte.
--
-- When Palisade cannot be reached, times out, or answers an error, `fail_open` decides: forward
-- uninspected (logged at WARN) or answer 503 (logged at ERR). Logs carry Palisade's request id,
-- the decision and the error; never a body, a header value or the API key.

local cjson = require "cjson.safe"
local client = require "kong.plugins.palisade.client"

local kong = kong
local ngx = ngx
local type = type
local pairs = pairs
local ipairs = ipairs
local lower = string.lower
local concat = table.concat

local NULL = cjson.null

local PalisadeHandler = {
  VERSION = "0.1.0",
  -- After authentication (consumers are known) and request-transformer (801), before ai-proxy
  -- (770), so the client's own format is what Palisade reads.
  PRIORITY = 780,
}

local METADATA_FIELDS = { "agent_id", "app_id", "user_id", "tenant_id", "session_id", "model", "provider" }

-- A JSON `null` decodes to a sentinel that is truthy in Lua; this makes it nil.
local function value(x)
  if x == NULL then
    return nil
  end
  return x
end

-- Whether `s` is valid UTF-8 (bodies that are not go as base64).
local function is_utf8(s)
  if not s:find("[\128-\255]") then
    return true
  end
  local byte = string.byte
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    local extra
    if c < 0x80 then
      extra = 0
    elseif c >= 0xC2 and c <= 0xDF then
      extra = 1
    elseif c >= 0xE0 and c <= 0xEF then
      extra = 2
    elseif c >= 0xF0 and c <= 0xF4 then
      extra = 3
    else
      return false
    end
    if i + extra > n then
      return false
    end
    for j = i + 1, i + extra do
      local cc = byte(s, j)
      if cc < 0x80 or cc > 0xBF then
        return false
      end
    end
    if extra == 2 then
      local c2 = byte(s, i + 1)
      if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F) then
        return false
      end
    elseif extra == 3 then
      local c2 = byte(s, i + 1)
      if (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then
        return false
      end
    end
    i = i + extra + 1
  end
  return true
end

-- Puts `body` on `message` as `body` or `body_base64`.
local function set_body(message, body)
  if body == nil or body == "" then
    return
  end
  if is_utf8(body) then
    message.body = body
  else
    message.body_base64 = ngx.encode_base64(body)
  end
end

-- The allowed headers of `headers`, names lower-cased, repeated values joined.
local function allowed_headers(conf, headers)
  local out = {}
  if type(headers) ~= "table" then
    return out
  end
  local allow = {}
  for _, name in ipairs(conf.header_allow_list) do
    allow[lower(name)] = true
  end
  for name, v in pairs(headers) do
    local n = lower(name)
    if allow[n] then
      if type(v) == "table" then
        v = concat(v, ", ")
      end
      out[n] = tostring(v)
    end
  end
  return out
end

local function metadata(conf)
  local md = {}
  local static = value(conf.metadata) or {}
  for _, field in ipairs(METADATA_FIELDS) do
    md[field] = value(static[field])
  end
  if type(value(static.extra)) == "table" and next(static.extra) then
    md.extra = static.extra
  end
  if type(value(conf.metadata_headers)) == "table" then
    for field, header in pairs(conf.metadata_headers) do
      local v = kong.request.get_header(header)
      if type(v) == "string" and v ~= "" then
        md[field] = v
      end
    end
  end
  if not md.user_id then
    local consumer = kong.client.get_consumer()
    if consumer then
      md.user_id = consumer.username or consumer.id
    end
  end
  return md
end

-- The JSON-RPC method of an MCP call, so Palisade knows what the response answers.
local function mcp_method(body)
  if not body or body:sub(1, 1) ~= "{" or not body:find('"jsonrpc"', 1, true) then
    return nil
  end
  local call = cjson.decode(body)
  if type(call) == "table" and type(call.method) == "string" then
    return call.method
  end
  return nil
end

local function call_palisade(conf, path, payload)
  local url, err = client.parse_url(conf.service_url)
  if not url then
    return nil, err
  end
  local json
  json, err = cjson.encode(payload)
  if not json then
    return nil, "encoding the call: " .. tostring(err)
  end
  local res
  res, err = client.post(url, path, json, {
    ["Authorization"] = "Bearer " .. conf.api_key,
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json",
    ["User-Agent"] = "kong-plugin-palisade/" .. PalisadeHandler.VERSION,
  }, { timeout_ms = conf.timeout_ms, ssl_verify = conf.ssl_verify })
  if not res then
    return nil, err
  end
  local answer = cjson.decode(res.body)
  if res.status ~= 200 then
    local code = type(answer) == "table" and type(answer.error) == "table" and value(answer.error.code)
    return nil, "Palisade answered " .. res.status .. (code and (" (" .. tostring(code) .. ")") or "")
  end
  -- A verdict has an action; an exchange's answer has the request's verdict.
  if type(answer) ~= "table"
    or (type(value(answer.action)) ~= "string" and type(value(answer.request)) ~= "table") then
    return nil, "Palisade's answer is not a verdict"
  end
  return answer
end

-- Palisade could not judge: forward uninspected, or refuse with `status`.
local function on_failure(conf, what, err, status)
  if conf.fail_open then
    kong.log.warn("could not check the ", what, ", forwarded uninspected (fail_open): ", err)
    return
  end
  kong.log.err("could not check the ", what, ", refused with ", status, " (fail_open is false): ", err)
  return kong.response.exit(status, {
    error = { code = "palisade_unavailable", message = "the " .. what .. " could not be checked" },
  })
end

local function verdict_headers(verdict)
  local out = {}
  if type(value(verdict.headers)) == "table" then
    for k, v in pairs(verdict.headers) do
      out[k] = tostring(v)
    end
  end
  return out
end

local function blocked_answer(verdict)
  local blocked = value(verdict.blocked)
  if type(blocked) ~= "table" then
    return 403, '{"error":{"code":"palisade_blocked"}}', { ["Content-Type"] = "application/json" }
  end
  local headers = verdict_headers(verdict)
  if type(value(blocked.headers)) == "table" then
    for k, v in pairs(blocked.headers) do
      headers[k] = tostring(v)
    end
  end
  return tonumber(value(blocked.status)) or 403, value(blocked.body) or "", headers
end

local function rewritten_body(verdict)
  local body = value(verdict.body)
  if type(body) == "string" then
    return body
  end
  local b64 = value(verdict.body_base64)
  if type(b64) == "string" then
    return ngx.decode_base64(b64)
  end
  return nil
end

-- Reads the client's body within the limit: the body, or nil and why it could not be read.
-- Kong 3.8 and later read a body nginx spilled to a file (the argument); earlier versions
-- cannot, so there a body larger than `client_body_buffer_size` is unreadable.
local function request_body(conf)
  local body, err = kong.request.get_raw_body(conf.max_body_bytes)
  if body == nil then
    return nil, err or "the body could not be read"
  end
  if #body > conf.max_body_bytes then
    return nil, "the body is over max_body_bytes (" .. conf.max_body_bytes .. ")"
  end
  return body
end

function PalisadeHandler:access(conf)
  local ctx = kong.ctx.plugin
  local body, unreadable
  if conf.inspect_request then
    body, unreadable = request_body(conf)
  end

  local message = {
    method = kong.request.get_method(),
    path = kong.request.get_path(),
    headers = allowed_headers(conf, kong.request.get_headers()),
    client_ip = kong.client.get_forwarded_ip(),
    protocol = conf.protocol,
    policy = value(conf.policy),
    metadata = metadata(conf),
  }
  local query = kong.request.get_raw_query()
  if query and query ~= "" then
    message.query = query
  end
  set_body(message, body)
  ctx.request = message
  ctx.mcp_method = mcp_method(body)

  if conf.inspect_response then
    -- Palisade reads identity bodies only; ask the upstream for one.
    kong.service.request.clear_header("Accept-Encoding")
  end

  if conf.mode ~= "blocking" or not conf.inspect_request then
    return
  end

  if unreadable then
    if not conf.fail_open then
      kong.log.info("request body not checked, refused with 413: ", unreadable)
      return kong.response.exit(413, {
        error = { code = "palisade_body_too_large", message = "the request body is too large to be checked" },
      })
    end
    -- The rest of the request (path, query, headers) is still checked.
    kong.log.warn("request body not checked, forwarded without it being inspected (fail_open): ", unreadable)
  end

  local verdict, err = call_palisade(conf, "/v1/guard/request", message)
  if not verdict then
    return on_failure(conf, "request", err, 503)
  end

  local headers = verdict_headers(verdict)
  ctx.response_headers = headers
  local id = headers["x-palisade-request-id"]
  if id then
    kong.service.request.set_header("X-Palisade-Request-Id", id)
  end

  if verdict.action == "block" or verdict.allowed == false then
    local status, answer, answer_headers = blocked_answer(verdict)
    kong.log.info("request blocked (palisade request id ", id or "-", ", status ", status, ")")
    return kong.response.exit(status, answer, answer_headers)
  end

  if verdict.action == "redact" then
    local rewritten = rewritten_body(verdict)
    if rewritten then
      kong.service.request.set_raw_body(rewritten)
      ctx.mcp_method = ctx.mcp_method or mcp_method(rewritten)
      kong.log.info("request body redacted (palisade request id ", id or "-", ")")
    else
      kong.log.warn("Palisade asked to redact the request but sent no body (palisade request id ", id or "-", ")")
    end
  else
    kong.log.debug("request allowed (palisade request id ", id or "-", ")")
  end
end

function PalisadeHandler:response(conf)
  if conf.mode ~= "blocking" then
    return
  end
  local ctx = kong.ctx.plugin
  if ctx.response_headers then
    for k, v in pairs(ctx.response_headers) do
      kong.response.set_header(k, v)
    end
  end
  if not conf.inspect_response or not ctx.request then
    return
  end

  local body = kong.service.response.get_raw_body()
  if body == nil or body == "" then
    return
  end
  if #body > conf.max_body_bytes then
    if conf.fail_open then
      kong.log.warn("response body over max_body_bytes (", conf.max_body_bytes, "), returned uninspected (fail_open)")
      return
    end
    kong.log.err("response body over max_body_bytes (", conf.max_body_bytes, "), refused with 502")
    return kong.response.exit(502, {
      error = { code = "palisade_body_too_large", message = "the response is too large to be checked" },
    })
  end

  local status = kong.service.response.get_status()
  local upstream_headers = kong.service.response.get_headers()
  local encoding = upstream_headers and upstream_headers["content-encoding"]
  if type(encoding) == "string" and lower(encoding) ~= "identity" then
    return on_failure(conf, "response", "the upstream answered with content-encoding " .. encoding, 502)
  end

  local request = ctx.request
  local message = {
    status = status,
    method = request.method,
    path = request.path,
    headers = allowed_headers(conf, upstream_headers),
    client_ip = request.client_ip,
    protocol = request.protocol,
    policy = request.policy,
    metadata = request.metadata,
    mcp_method = ctx.mcp_method,
  }
  set_body(message, body)

  local verdict, err = call_palisade(conf, "/v1/guard/response", message)
  if not verdict then
    return on_failure(conf, "response", err, 502)
  end
  local headers = verdict_headers(verdict)
  local id = headers["x-palisade-request-id"]

  if verdict.action == "block" or verdict.allowed == false then
    local block_status, answer, answer_headers = blocked_answer(verdict)
    kong.log.info("response blocked (palisade request id ", id or "-", ", status ", block_status, ")")
    return kong.response.exit(block_status, answer, answer_headers)
  end
  if verdict.action == "redact" then
    local rewritten = rewritten_body(verdict)
    if rewritten then
      kong.log.info("response body redacted (palisade request id ", id or "-", ")")
      return kong.response.exit(status, rewritten, headers)
    end
    kong.log.warn("Palisade asked to redact the response but sent no body (palisade request id ", id or "-", ")")
    return
  end
  kong.log.debug("response allowed (palisade request id ", id or "-", ")")
end

-- Runs in a timer, after the client has its answer.
local function send_exchange(premature, target, exchange)
  if premature then
    return
  end
  local verdict, err = call_palisade(target, "/v1/guard/exchange", exchange)
  if not verdict then
    -- A timer runs outside the plugin's namespaced logger, hence the explicit prefix.
    ngx.log(ngx.WARN, "[palisade] could not send the exchange copy: ", err)
  end
end

function PalisadeHandler:log(conf)
  if conf.mode ~= "async" then
    return
  end
  local ctx = kong.ctx.plugin
  local request = ctx.request
  if not request then
    return
  end
  local shared_metadata = request.metadata
  request.metadata = nil
  local exchange = { request = request, metadata = shared_metadata }

  if conf.inspect_response then
    local response = {
      status = kong.response.get_status(),
      mcp_method = ctx.mcp_method,
    }
    if kong.response.get_source() == "service" then
      response.headers = allowed_headers(conf, kong.service.response.get_headers())
      local ok, body = pcall(kong.service.response.get_raw_body)
      if ok and type(body) == "string" then
        if #body <= conf.max_body_bytes then
          set_body(response, body)
        else
          kong.log.debug("response body over max_body_bytes, copy sent without it")
        end
      end
    end
    exchange.response = response
  end

  -- The timer cannot read the plugin's configuration table after this phase: copy what it needs.
  local target = {
    service_url = conf.service_url,
    api_key = conf.api_key,
    timeout_ms = conf.timeout_ms,
    ssl_verify = conf.ssl_verify,
  }
  local ok, err = ngx.timer.at(0, send_exchange, target, exchange)
  if not ok then
    kong.log.warn("exchange copy dropped, could not start a timer: ", err)
  end
end

return PalisadeHandler
