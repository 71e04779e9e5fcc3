package = "kong-plugin-palisade"
version = "0.1.0-1"

-- Installed from a checkout of this directory with `luarocks make`, which reads no source.
source = {
  url = "file://.",
}

description = {
  summary = "Kong plugin that checks traffic with Palisade's guard API (blocking) or sends it a copy (async).",
  detailed = [[
    Blocking mode asks Palisade about each request before it is forwarded and each response
    before it is returned, and applies the verdict: block with Palisade's answer, or forward the
    redacted body. Async mode posts the exchange from a timer after the response, adding no
    latency. Errors follow `fail_open`.
  ]],
  license = "Apache-2.0",
}

dependencies = {
  "lua >= 5.1",
}

build = {
  type = "builtin",
  modules = {
    ["kong.plugins.palisade.handler"] = "kong/plugins/palisade/handler.lua",
    ["kong.plugins.palisade.schema"] = "kong/plugins/palisade/schema.lua",
    ["kong.plugins.palisade.client"] = "kong/plugins/palisade/client.lua",
  },
}
