-- A thin stand-in for Kong inside plain nginx + ngx_lua: the few `kong.*` PDK calls the plugin
-- makes, mapped onto `ngx.*`, and Kong's phase flow around the handler.
--
-- Kong's own flow is followed where it matters to the plugin:
--   access   runs the handler's access (kong.response.exit ends the request there);
--   content  mirrors Kong's buffered proxying (Kong.response in kong/init.lua): the upstream is
--            called through an internal location with ngx.location.capture, its status, headers
--            and body are kept, the handler's response runs, then the body is printed;
--   log      runs the handler's log (timers started there outlive the request).
-- Which plugin configuration a location uses is named by `$palisade_conf`; configurations are
-- schema defaults plus the overrides in the file named by the `PALISADE_SHIM_CONFS` env var.

local cjson = require "cjson.safe"

local M = {}

local function log(level)
  return function(...)
    return ngx.log(level, "[palisade] ", ...)
  end
end

local function lower_keys(t)
  local out = {}
  for k, v in pairs(t or {}) do
    out[k:lower()] = v
  end
  return out
end

local function exit(status, body, headers)
  ngx.status = status
  local has_type, has_length = false, false
  for name, value in pairs(headers or {}) do
    local n = name:lower()
    if n ~= "transfer-encoding" then
      ngx.header[name] = value
    end
    has_type = has_type or n == "content-type"
    has_length = has_length or n == "content-length"
  end
  if type(body) == "table" then
    body = cjson.encode(body)
    if not has_type then
      ngx.header["Content-Type"] = "application/json; charset=utf-8"
    end
  end
  if not has_length then
    ngx.header["Content-Length"] = body and #body or 0
  end
  ngx.ctx.palisade_source = "exit"
  if body then
    ngx.print(body)
  end
  return ngx.exit(status)
end

_G.kong = {
  log = {
    err = log(ngx.ERR), warn = log(ngx.WARN), notice = log(ngx.NOTICE),
    info = log(ngx.INFO), debug = log(ngx.DEBUG),
  },
  ctx = setmetatable({}, {
    __index = function(_, key)
      if key == "plugin" then
        local ctx = ngx.ctx
        ctx.palisade_plugin = ctx.palisade_plugin or {}
        return ctx.palisade_plugin
      end
    end,
  }),
  request = {
    get_method = function() return ngx.req.get_method() end,
    get_path = function() return ngx.var.uri end,
    get_raw_query = function() return ngx.var.args or "" end,
    get_headers = function() return ngx.req.get_headers() end,
    get_header = function(name) return ngx.req.get_headers()[name] end,
    get_raw_body = function()
      ngx.req.read_body()
      local body = ngx.req.get_body_data()
      if body then
        return body
      end
      if ngx.req.get_body_file() then
        return nil, "request body did not fit into client body buffer, consider raising 'client_body_buffer_size'"
      end
      return ""
    end,
  },
  client = {
    get_forwarded_ip = function() return ngx.var.remote_addr end,
    get_consumer = function() return nil end,
  },
  service = {
    request = {
      set_raw_body = function(body)
        ngx.req.read_body()
        ngx.req.set_body_data(body)
      end,
      set_header = function(name, value) ngx.req.set_header(name, value) end,
      clear_header = function(name) ngx.req.clear_header(name) end,
    },
    response = {
      get_raw_body = function() return ngx.ctx.buffered_body or "" end,
      get_status = function() return ngx.ctx.buffered_status end,
      get_headers = function() return lower_keys(ngx.ctx.buffered_headers) end,
    },
  },
  response = {
    exit = exit,
    set_header = function(name, value) ngx.header[name] = value end,
    get_status = function() return ngx.status end,
    get_source = function() return ngx.ctx.palisade_source or "error" end,
  },
}

-- Schema defaults, read from schema.lua with the one typedef it needs stubbed.
local function defaults()
  package.loaded["kong.db.schema.typedefs"] = {
    protocols_http = {}, header_name = { type = "string" },
    url = function(t) t = t or {}; t.type = "string"; return t end,
  }
  local schema = require "kong.plugins.palisade.schema"
  for _, f in ipairs(schema.fields) do
    if f.config then
      local conf = {}
      for _, entry in ipairs(f.config.fields) do
        local name, field = next(entry)
        conf[name] = field.default
      end
      conf.metadata = conf.metadata or {}
      return conf
    end
  end
end

-- Read when the shim is loaded (init_by_lua, in the master process), as Kong reads its
-- configuration before serving.
local confs = {}
do
  local base = defaults()
  local path = os.getenv("PALISADE_SHIM_CONFS")
  assert(path, "PALISADE_SHIM_CONFS is not set")
  local file = assert(io.open(path))
  local all = assert(cjson.decode(file:read("*a")))
  file:close()
  for name, overrides in pairs(all) do
    local conf = {}
    for k, v in pairs(base) do conf[k] = v end
    for k, v in pairs(overrides) do conf[k] = v end
    confs[name] = conf
  end
end

local handler = require "kong.plugins.palisade.handler"

local function current()
  local name = ngx.var.palisade_conf
  if not name or name == "" or name == "none" then
    return nil
  end
  return assert(confs[name], "no plugin configuration named " .. name)
end

function M.access()
  local conf = current()
  if conf then
    handler:access(conf)
  end
end

local METHODS = {
  GET = ngx.HTTP_GET, POST = ngx.HTTP_POST, PUT = ngx.HTTP_PUT, PATCH = ngx.HTTP_PATCH,
  DELETE = ngx.HTTP_DELETE, HEAD = ngx.HTTP_HEAD, OPTIONS = ngx.HTTP_OPTIONS,
}

local HOP_BY_HOP = { ["transfer-encoding"] = true, ["connection"] = true, ["keep-alive"] = true }

function M.content()
  local ctx = ngx.ctx
  ngx.req.read_body()
  local res = ngx.location.capture("/__upstream", {
    always_forward_body = true,
    share_all_vars = true,
    method = METHODS[ngx.req.get_method()],
  })
  ctx.buffered_status = res.status
  ctx.buffered_headers = res.header
  ctx.buffered_body = res.body
  ctx.palisade_source = "service"

  ngx.status = res.status
  for name, value in pairs(res.header) do
    if not HOP_BY_HOP[name:lower()] then
      ngx.header[name] = value
    end
  end
  local conf = current()
  if conf then
    handler:response(conf)
  end
  ngx.print(res.body)
  return ngx.exit(res.status)
end

function M.log()
  local conf = current()
  if conf then
    handler:log(conf)
  end
end

return M
