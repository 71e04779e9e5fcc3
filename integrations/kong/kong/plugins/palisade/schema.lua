-- Configuration of the `palisade` plugin. Every field has a description; the defaults are the
-- safe choice (blocking, fail closed, both directions inspected).

local typedefs = require "kong.db.schema.typedefs"

local METADATA_FIELDS = { "agent_id", "app_id", "user_id", "tenant_id", "session_id", "model", "provider" }

local function static_metadata()
  local fields = {}
  for _, name in ipairs(METADATA_FIELDS) do
    fields[#fields + 1] = { [name] = {
      description = "Sent as `metadata." .. name .. "` with every call, unless a header named in `metadata_headers` gives it.",
      type = "string",
    } }
  end
  fields[#fields + 1] = { extra = {
    description = "Other key/values sent as `metadata.extra`.",
    type = "map",
    keys = { type = "string" },
    values = { type = "string" },
  } }
  return fields
end

return {
  name = "palisade",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { service_url = typedefs.url({
              required = true,
              description = "Palisade's main listener, e.g. `https://palisade.internal:8080`. The plugin calls `/v1/guard/*` under it.",
          }) },
          { api_key = {
              description = "The collector's API key, sent as `Authorization: Bearer`. Use a vault reference (`{vault://env/palisade-key}`).",
              type = "string",
              required = true,
              referenceable = true,
              encrypted = true, -- Kong Enterprise keyring; does nothing in Kong OSS
          } },
          { mode = {
              description = "`blocking`: check the request before forwarding it and the response before returning it. `async`: send a copy of the exchange after the response, adding no latency.",
              type = "string",
              required = true,
              default = "blocking",
              one_of = { "blocking", "async" },
          } },
          { timeout_ms = {
              description = "Bound on connecting to, writing to and reading from Palisade, each.",
              type = "integer",
              required = true,
              default = 2000,
              between = { 1, 60000 },
          } },
          { fail_open = {
              description = "When Palisade cannot be reached or answers an error: `true` forwards uninspected, `false` answers 503 (502 for a response). When a body is over `max_body_bytes` in blocking mode: `true` forwards it unread (the rest of a request is still checked), `false` answers 413 (502 for a response).",
              type = "boolean",
              required = true,
              default = false,
          } },
          { inspect_request = {
              description = "Check (or copy, in async mode) requests.",
              type = "boolean",
              required = true,
              default = true,
          } },
          { inspect_response = {
              description = "Check (or copy, in async mode) responses.",
              type = "boolean",
              required = true,
              default = true,
          } },
          { max_body_bytes = {
              description = "Largest body sent to Palisade. A larger one is not inspected: `fail_open` decides in blocking mode; async mode sends the exchange without it.",
              type = "integer",
              required = true,
              default = 1048576,
              between = { 1, 67108864 },
          } },
          { ssl_verify = {
              description = "Verify Palisade's TLS certificate and host name (against `lua_ssl_trusted_certificate`). Turn off only for a test.",
              type = "boolean",
              required = true,
              default = true,
          } },
          { header_allow_list = {
              description = "Request and response headers sent to Palisade (case-insensitive). Others, such as `authorization` and `cookie`, never leave Kong.",
              type = "array",
              required = true,
              elements = typedefs.header_name,
              default = { "content-type", "content-length", "user-agent", "accept", "mcp-session-id", "x-request-id" },
          } },
          { protocol = {
              description = "How Palisade reads bodies; `auto` guesses from the body and its content type.",
              type = "string",
              required = true,
              default = "auto",
              one_of = { "auto", "text", "json", "mcp", "openai", "anthropic", "gemini", "cohere", "bedrock" },
          } },
          { policy = {
              description = "The Palisade policy to judge by, instead of the collector's.",
              type = "string",
          } },
          { metadata = {
              description = "Fixed metadata sent with every call.",
              type = "record",
              fields = static_metadata(),
          } },
          { metadata_headers = {
              description = "Metadata read from request headers, e.g. `{ user_id = \"x-user-id\", session_id = \"mcp-session-id\" }`. A header wins over `metadata`. Without one, `user_id` is the authenticated consumer's username or id.",
              type = "map",
              keys = { type = "string", one_of = METADATA_FIELDS },
              values = typedefs.header_name,
          } },
        },
    } },
  },
}
