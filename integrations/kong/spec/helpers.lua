-- A stub of the Kong PDK functions the handler calls, and of its HTTP client, for the busted
-- specs. Each stub records what the handler did so a spec can assert it. Palisade itself is not
-- stubbed anywhere else: test/run.sh drives the handler in nginx against a real Palisade.

local cjson = require "cjson.safe"

local M = {}

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function M.b64encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for j = 3, 0, -1 do
      local idx = math.floor(n / 64 ^ j) % 64 + 1
      chars[#chars + 1] = B64:sub(idx, idx)
    end
    if not b then chars[3], chars[4] = "=", "=" elseif not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

function M.b64decode(s)
  s = s:gsub("[^%w%+/]", "")
  local out, bits, n = {}, 0, 0
  for i = 1, #s do
    bits = bits * 64 + (B64:find(s:sub(i, i), 1, true) - 1)
    n = n + 6
    if n >= 8 then
      n = n - 8
      out[#out + 1] = string.char(math.floor(bits / 2 ^ n) % 256)
      bits = bits % 2 ^ n
    end
  end
  return table.concat(out)
end

-- `kong.db.schema.typedefs`, only as far as schema.lua uses it.
package.loaded["kong.db.schema.typedefs"] = {
  protocols_http = { type = "set", elements = { type = "string" }, default = { "http", "https" } },
  header_name = { type = "string" },
  url = function(opts)
    local t = { type = "string" }
    for k, v in pairs(opts or {}) do
      t[k] = v
    end
    return t
  end,
}

-- The config record of schema.lua as a name -> field table.
function M.config_fields()
  local schema = dofile("kong/plugins/palisade/schema.lua")
  for _, f in ipairs(schema.fields) do
    if f.config then
      local out = {}
      for _, entry in ipairs(f.config.fields) do
        local name, field = next(entry)
        out[name] = field
      end
      return out, schema
    end
  end
end

-- A configuration as Kong would hand it over: schema defaults, then `overrides`.
function M.config(overrides)
  local conf = {}
  for name, field in pairs(M.config_fields()) do
    if field.default ~= nil then
      conf[name] = field.default
    end
  end
  conf.metadata = {}
  conf.service_url = "http://palisade.test:8080"
  conf.api_key = "kong-collector-key-0123456789"
  for k, v in pairs(overrides or {}) do
    conf[k] = v
  end
  return conf
end

local function lower_keys(t)
  local out = {}
  for k, v in pairs(t or {}) do
    out[k:lower()] = v
  end
  return out
end

-- Installs `kong`, `ngx` and a scripted client. `req` describes the client's request and the
-- upstream's answer; `answers` maps a guard path to a list of answers ({status, body}) or to an
-- error string (the call fails as a network error would).
function M.setup(req, answers)
  req = req or {}
  local rec = {
    calls = {}, exits = {}, logs = {}, service_headers = {}, cleared = {},
    response_headers = {}, timers = {}, raw_body = nil,
  }

  local function logger(level)
    return function(...)
      local parts = {}
      for i = 1, select("#", ...) do
        parts[#parts + 1] = tostring(select(i, ...))
      end
      rec.logs[#rec.logs + 1] = { level = level, msg = table.concat(parts) }
    end
  end

  _G.ngx = {
    null = cjson.null,
    WARN = "warn",
    log = function(level, ...) logger(level)(...) end,
    encode_base64 = M.b64encode,
    decode_base64 = M.b64decode,
    timer = {
      at = function(delay, fn, ...)
        rec.timers[#rec.timers + 1] = { delay = delay, fn = fn, args = { ... } }
        return true
      end,
    },
  }

  local headers = lower_keys(req.headers)
  local plugin_ctx = {}
  _G.kong = {
    ctx = { plugin = plugin_ctx },
    log = {
      err = logger("err"), warn = logger("warn"), notice = logger("notice"),
      info = logger("info"), debug = logger("debug"),
    },
    request = {
      get_method = function() return req.method or "POST" end,
      get_path = function() return req.path or "/v1/chat/completions" end,
      get_raw_query = function() return req.query or "" end,
      get_headers = function() return headers end,
      get_header = function(name) return headers[name:lower()] end,
      get_raw_body = function()
        if req.body_in_file then
          return nil, "request body did not fit into client body buffer"
        end
        return req.body or ""
      end,
    },
    client = {
      get_forwarded_ip = function() return "203.0.113.9" end,
      get_consumer = function() return req.consumer end,
    },
    service = {
      request = {
        set_raw_body = function(b) rec.raw_body = b end,
        set_header = function(k, v) rec.service_headers[k:lower()] = v end,
        clear_header = function(k) rec.cleared[k:lower()] = true end,
      },
      response = {
        get_raw_body = function() return req.response_body or "" end,
        get_status = function() return req.response_status or 200 end,
        get_headers = function() return lower_keys(req.response_headers) end,
      },
    },
    response = {
      exit = function(status, body, hdrs)
        rec.exits[#rec.exits + 1] = { status = status, body = body, headers = hdrs }
      end,
      set_header = function(k, v) rec.response_headers[k:lower()] = v end,
      get_status = function() return req.response_status or 200 end,
      get_source = function() return req.source or "service" end,
    },
  }

  local client = dofile("kong/plugins/palisade/client.lua")
  client.post = function(url, path, body, hdrs, opts)
    local call = { url = url, path = path, body = body, payload = cjson.decode(body), headers = hdrs, opts = opts }
    rec.calls[#rec.calls + 1] = call
    local scripted = answers and answers[path]
    if type(scripted) == "string" then
      return nil, scripted
    end
    if type(scripted) ~= "table" or #scripted == 0 then
      return nil, "no answer scripted for " .. path
    end
    local answer = table.remove(scripted, 1)
    local text = type(answer.body) == "table" and cjson.encode(answer.body) or answer.body
    return { status = answer.status or 200, headers = {}, body = text }
  end
  package.loaded["kong.plugins.palisade.client"] = client
  package.loaded["kong.plugins.palisade.handler"] = nil
  local handler = require "kong.plugins.palisade.handler"
  return handler, rec
end

-- Verdicts as Palisade sends them.
function M.verdict(action, extra)
  local v = {
    request_id = "req-1", allowed = action ~= "block", action = action, blocked = cjson.null,
    body = cjson.null, headers = { ["x-palisade-request-id"] = "req-1", ["x-palisade-decision"] = action },
    risk_score = action == "allow" and 0 or 80, findings = {}, reasons = {}, collector = "kong",
  }
  for k, val in pairs(extra or {}) do
    v[k] = val
  end
  return { status = 200, body = v }
end

return M
