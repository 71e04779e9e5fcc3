-- A small HTTP/1.1 client over nginx cosockets, for the plugin's calls to Palisade.
--
-- Why not resty.http: Kong bundles it, but plain nginx + ngx_lua (where this plugin is also
-- tested) does not, and the calls made here are narrow: one POST with a JSON body, one JSON
-- answer. Keeping the client in the plugin means the same bytes run in Kong and in the tests.
--
-- TLS is verified: `sslhandshake` is called with verification on and the URL's host as the
-- server name, so nginx checks the chain against `lua_ssl_trusted_certificate` (Kong sets it
-- from `lua_ssl_trusted_certificate` in kong.conf, `system` by default) and the host name.
-- Connections are kept alive in the cosocket pool, keyed by scheme, host and port.

local ngx = ngx
local tonumber = tonumber
local lower = string.lower
local find = string.find
local sub = string.sub
local concat = table.concat

local _M = {}

-- Splits `http(s)://host[:port][/base]` into its parts; nil and a reason when it is not one.
function _M.parse_url(url)
  if type(url) ~= "string" then
    return nil, "service_url is not a string"
  end
  local scheme, rest = url:match("^(https?)://(.+)$")
  if not scheme then
    return nil, "service_url must start with http:// or https://"
  end
  local authority, path = rest:match("^([^/]+)(.*)$")
  if not authority then
    return nil, "service_url has no host"
  end
  local host, port
  if sub(authority, 1, 1) == "[" then
    host, port = authority:match("^(%[[^%]]+%]):?(%d*)$")
  else
    host, port = authority:match("^([^:]+):?(%d*)$")
  end
  if not host then
    return nil, "service_url has a malformed host"
  end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  path = path:gsub("/+$", "")
  return { scheme = scheme, host = host, port = port, base_path = path }
end

local function read_chunked(sock)
  local parts = {}
  while true do
    local line, err = sock:receive("*l")
    if not line then
      return nil, "reading a chunk size: " .. tostring(err)
    end
    local size = tonumber(line:match("^%s*(%x+)"), 16)
    if not size then
      return nil, "malformed chunk size"
    end
    if size == 0 then
      -- Trailers, up to the empty line.
      repeat
        line, err = sock:receive("*l")
        if not line then
          return nil, "reading trailers: " .. tostring(err)
        end
      until line == ""
      return concat(parts)
    end
    local data
    data, err = sock:receive(size)
    if not data then
      return nil, "reading a chunk: " .. tostring(err)
    end
    parts[#parts + 1] = data
    local crlf
    crlf, err = sock:receive(2)
    if crlf ~= "\r\n" then
      return nil, "malformed chunk end" .. (err and (": " .. err) or "")
    end
  end
end

-- Reads one response: status, headers (lower-cased names) and body; and whether the connection
-- may be reused.
function _M.read_response(sock)
  local line, err = sock:receive("*l")
  if not line then
    return nil, "reading the status line: " .. tostring(err)
  end
  local status = tonumber(line:match("^HTTP/1%.[01] (%d%d%d)"))
  if not status then
    return nil, "malformed status line"
  end
  local headers = {}
  while true do
    line, err = sock:receive("*l")
    if not line then
      return nil, "reading headers: " .. tostring(err)
    end
    if line == "" then
      break
    end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then
      headers[lower(name)] = value
    end
  end

  local body
  local reusable = not (headers["connection"] and lower(headers["connection"]) == "close")
  local te = headers["transfer-encoding"]
  if te and find(lower(te), "chunked", 1, true) then
    body, err = read_chunked(sock)
  elseif headers["content-length"] then
    local length = tonumber(headers["content-length"])
    if not length or length < 0 then
      return nil, "malformed content-length"
    end
    if length == 0 then
      body = ""
    else
      body, err = sock:receive(length)
    end
  else
    body, err = sock:receive("*a")
    reusable = false
  end
  if not body then
    return nil, "reading the body: " .. tostring(err)
  end
  return { status = status, headers = headers, body = body }, nil, reusable
end

-- POSTs `body` (a string) to `url.base_path .. path`. `opts.timeout_ms` bounds each of connect,
-- send and read. Returns the response table, or nil and an error that holds no secret.
function _M.post(url, path, body, headers, opts)
  local sock = ngx.socket.tcp()
  local timeout = opts.timeout_ms
  sock:settimeouts(timeout, timeout, timeout)

  local pool = url.scheme .. ":" .. url.host .. ":" .. url.port
  local ok, err = sock:connect(url.host, url.port, { pool = pool })
  if not ok then
    return nil, "connecting to " .. url.host .. ":" .. url.port .. ": " .. tostring(err)
  end

  if url.scheme == "https" and sock:getreusedtimes() == 0 then
    local server_name = url.host:gsub("^%[(.*)%]$", "%1")
    local session
    session, err = sock:sslhandshake(nil, server_name, opts.ssl_verify ~= false)
    if not session then
      sock:close()
      return nil, "TLS handshake with " .. url.host .. ": " .. tostring(err)
    end
  end

  local host_header = url.host
  if (url.scheme == "https" and url.port ~= 443) or (url.scheme == "http" and url.port ~= 80) then
    host_header = host_header .. ":" .. url.port
  end
  local request = {
    "POST ", url.base_path, path, " HTTP/1.1\r\n",
    "Host: ", host_header, "\r\n",
    "Content-Length: ", #body, "\r\n",
  }
  for name, value in pairs(headers) do
    request[#request + 1] = name
    request[#request + 1] = ": "
    request[#request + 1] = value
    request[#request + 1] = "\r\n"
  end
  request[#request + 1] = "\r\n"
  request[#request + 1] = body

  local sent
  sent, err = sock:send(request)
  if not sent then
    sock:close()
    return nil, "sending to " .. url.host .. ":" .. url.port .. ": " .. tostring(err)
  end

  local res, reusable
  res, err, reusable = _M.read_response(sock)
  if not res then
    sock:close()
    return nil, "from " .. url.host .. ":" .. url.port .. ": " .. err
  end
  if reusable then
    sock:setkeepalive(60000, opts.pool_size or 64)
  else
    sock:close()
  end
  return res
end

return _M
