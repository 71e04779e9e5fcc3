/**
 * An example Worker: a pass-through to `ORIGIN_URL` (an LLM API, an MCP server, any HTTP
 * service), guarded by Palisade. Settings come from `wrangler.jsonc` vars; the key from a secret
 * (`wrangler secret put PALISADE_API_KEY`).
 */
import { withPalisade } from "../src/index.js";

export interface Env {
  ORIGIN_URL: string;
  PALISADE_URL: string;
  PALISADE_API_KEY: string;
  /** `blocking` or `async`. */
  PALISADE_MODE?: string;
  /** `true` to forward uninspected when Palisade cannot answer. */
  PALISADE_FAIL_OPEN?: string;
  PALISADE_TIMEOUT_MS?: string;
  PALISADE_APP_ID?: string;
}

// The origin is whatever this Worker fronts: here, the same path and query on ORIGIN_URL.
async function origin(request: Request, env: Env): Promise<Response> {
  const url = new URL(request.url);
  const target = new URL(url.pathname + url.search, env.ORIGIN_URL);
  return fetch(new Request(target, request));
}

export default {
  fetch: withPalisade<Env>(origin, (env) => ({
    serviceUrl: env.PALISADE_URL,
    apiKey: env.PALISADE_API_KEY,
    mode: env.PALISADE_MODE === "async" ? "async" : "blocking",
    failOpen: env.PALISADE_FAIL_OPEN === "true",
    timeoutMs: env.PALISADE_TIMEOUT_MS ? Number(env.PALISADE_TIMEOUT_MS) : 2000,
    metadata: (request) => ({
      app_id: env.PALISADE_APP_ID ?? "cloudflare-worker",
      user_id: request.headers.get("x-user-id") ?? undefined,
      session_id: request.headers.get("mcp-session-id") ?? undefined,
    }),
  })),
} satisfies ExportedHandler<Env>;
