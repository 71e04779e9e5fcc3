/**
 * Palisade for Cloudflare Workers: wraps a Worker's `fetch` so its traffic is judged by
 * Palisade's guard API.
 *
 * - `blocking` asks `/v1/guard/request` before calling the wrapped handler and
 *   `/v1/guard/response` before returning its answer: a `block` verdict answers with Palisade's
 *   status, headers and body; a `redact` verdict replaces the body.
 * - `async` hands the request to the handler at once, returns its answer untouched, and sends a
 *   copy of both to `/v1/guard/exchange` from `ctx.waitUntil`, after the client has its answer.
 *
 * Only bodies whose content type is in `contentTypes` are sent (a body with no content type is
 * sent too, and Palisade guesses). In blocking mode a response that is checked is read whole
 * before the client gets a byte, so leave `text/event-stream` out of `contentTypes` unless held
 * streams are what you want.
 *
 * When Palisade cannot be reached, times out or answers an error, `failOpen` decides: forward
 * uninspected (logged with `console.warn`) or answer 503 (502 for a response). Logs start with
 * `[palisade]` and never hold a body, a header value or the key.
 */

/** Who and what the traffic is about. */
export interface Metadata {
  agent_id?: string;
  app_id?: string;
  user_id?: string;
  tenant_id?: string;
  session_id?: string;
  model?: string;
  provider?: string;
  extra?: Record<string, string>;
}

export type Protocol =
  | "auto" | "text" | "json" | "mcp" | "openai" | "anthropic" | "gemini" | "cohere" | "bedrock";

export interface PalisadeOptions {
  /** Palisade's main listener, e.g. `https://palisade.example.com`. */
  serviceUrl: string;
  /** The collector's API key; keep it in a Worker secret. */
  apiKey: string;
  /** `blocking` (default) or `async`. */
  mode?: "blocking" | "async";
  /** Bound on each call to Palisade (default 2000). */
  timeoutMs?: number;
  /** Forward uninspected when Palisade cannot judge (default false: refuse). */
  failOpen?: boolean;
  /** Check (or copy) requests (default true). */
  inspectRequest?: boolean;
  /** Check (or copy) responses (default true). */
  inspectResponse?: boolean;
  /** Largest body sent to Palisade (default 1 MiB). Larger: `failOpen` decides in blocking mode; async copies go without the body. */
  maxBodyBytes?: number;
  /** Media types whose bodies are sent; `type/*` matches a whole type (default JSON and plain text). */
  contentTypes?: string[];
  /** Headers sent to Palisade (lower-case). `authorization` and `cookie` are not in the default. */
  headerAllowList?: string[];
  /** How Palisade reads bodies (default `auto`). */
  protocol?: Protocol;
  /** A Palisade policy instead of the collector's. */
  policy?: string;
  /** Fixed metadata, or a function of the request. */
  metadata?: Metadata | ((request: Request) => Metadata);
  /** Reach Palisade through a service binding instead of the public fetch. */
  fetcher?: { fetch: typeof fetch };
}

type Handler<Env> = (request: Request, env: Env, ctx: ExecutionContext) => Response | Promise<Response>;

interface Message {
  method?: string;
  path?: string;
  query?: string;
  headers?: Record<string, string>;
  body?: string;
  body_base64?: string;
  status?: number;
  client_ip?: string;
  protocol?: Protocol;
  policy?: string;
  mcp_method?: string;
  metadata?: Metadata;
}

interface Verdict {
  request_id: string;
  allowed: boolean;
  action: "allow" | "redact" | "block";
  blocked: { status: number; headers: Record<string, string>; body: string } | null;
  body: string | null;
  body_base64?: string;
  headers: Record<string, string>;
}

const DEFAULT_CONTENT_TYPES = ["application/json", "application/*+json", "text/plain"];
const DEFAULT_HEADERS = ["content-type", "content-length", "user-agent", "accept", "mcp-session-id", "x-request-id"];

class PalisadeError extends Error {}

interface Resolved {
  serviceUrl: string;
  apiKey: string;
  mode: "blocking" | "async";
  timeoutMs: number;
  failOpen: boolean;
  inspectRequest: boolean;
  inspectResponse: boolean;
  maxBodyBytes: number;
  contentTypes: string[];
  headerAllowList: Set<string>;
  protocol: Protocol;
  policy?: string;
  metadata: (request: Request) => Metadata;
  fetcher: { fetch: typeof fetch };
}

function resolve(o: PalisadeOptions): Resolved {
  if (!o.serviceUrl || !/^https?:\/\//.test(o.serviceUrl)) {
    throw new Error("[palisade] serviceUrl must be an http(s) URL");
  }
  if (!o.apiKey) {
    throw new Error("[palisade] apiKey is required");
  }
  const mode = o.mode ?? "blocking";
  if (mode !== "blocking" && mode !== "async") {
    throw new Error(`[palisade] mode must be "blocking" or "async"`);
  }
  const md = o.metadata;
  return {
    serviceUrl: o.serviceUrl.replace(/\/+$/, ""),
    apiKey: o.apiKey,
    mode,
    timeoutMs: o.timeoutMs ?? 2000,
    failOpen: o.failOpen ?? false,
    inspectRequest: o.inspectRequest ?? true,
    inspectResponse: o.inspectResponse ?? true,
    maxBodyBytes: o.maxBodyBytes ?? 1048576,
    contentTypes: (o.contentTypes ?? DEFAULT_CONTENT_TYPES).map((t) => t.toLowerCase()),
    headerAllowList: new Set((o.headerAllowList ?? DEFAULT_HEADERS).map((h) => h.toLowerCase())),
    protocol: o.protocol ?? "auto",
    policy: o.policy,
    metadata: typeof md === "function" ? md : () => md ?? {},
    fetcher: o.fetcher ?? { fetch: (input, init) => fetch(input, init) },
  };
}

/** Whether a body of this content type is sent to Palisade. */
export function inspectable(contentType: string | null, allowed: string[]): boolean {
  if (!contentType) {
    return true;
  }
  const media = contentType.split(";")[0]!.trim().toLowerCase();
  return allowed.some((pattern) => {
    if (pattern === media) return true;
    if (pattern.endsWith("/*")) return media.startsWith(pattern.slice(0, -1));
    if (pattern.startsWith("application/*+")) return media.startsWith("application/") && media.endsWith(pattern.slice(13));
    return false;
  });
}

/** Reads a body up to `limit` bytes; `null` when it is larger (the rest is cancelled). */
async function readLimited(body: ReadableStream<Uint8Array> | null, limit: number): Promise<Uint8Array | null> {
  if (!body) {
    return new Uint8Array(0);
  }
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

function putBody(message: Message, bytes: Uint8Array): void {
  if (bytes.byteLength === 0) return;
  try {
    message.body = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    let binary = "";
    for (let i = 0; i < bytes.byteLength; i += 0x8000) {
      binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    message.body_base64 = btoa(binary);
  }
}

function allowedHeaders(headers: Headers, allow: Set<string>): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, name) => {
    if (allow.has(name.toLowerCase())) out[name.toLowerCase()] = value;
  });
  return out;
}

function describe(request: Request, o: Resolved): Message {
  const url = new URL(request.url);
  const message: Message = {
    method: request.method,
    path: url.pathname,
    headers: allowedHeaders(request.headers, o.headerAllowList),
    protocol: o.protocol,
    metadata: o.metadata(request),
  };
  if (url.search.length > 1) message.query = url.search.slice(1);
  const ip = request.headers.get("cf-connecting-ip");
  if (ip) message.client_ip = ip;
  if (o.policy) message.policy = o.policy;
  return message;
}

function mcpMethod(message: Message): string | undefined {
  const body = message.body;
  if (!body || !body.startsWith("{") || !body.includes('"jsonrpc"')) return undefined;
  try {
    const call = JSON.parse(body);
    return typeof call.method === "string" ? call.method : undefined;
  } catch {
    return undefined;
  }
}

async function ask<T>(o: Resolved, path: string, payload: unknown): Promise<T> {
  let res: Response;
  try {
    res = await o.fetcher.fetch(o.serviceUrl + path, {
      method: "POST",
      headers: {
        authorization: `Bearer ${o.apiKey}`,
        "content-type": "application/json",
        accept: "application/json",
      },
      body: JSON.stringify(payload),
      signal: AbortSignal.timeout(o.timeoutMs),
    });
  } catch (e) {
    const name = e instanceof Error ? e.name : "Error";
    const detail = e instanceof Error && e.message ? `: ${e.message}` : "";
    throw new PalisadeError(name === "TimeoutError" ? `no answer within ${o.timeoutMs} ms` : `unreachable (${name}${detail})`);
  }
  const text = await res.text();
  if (res.status !== 200) {
    let code = "";
    try {
      code = JSON.parse(text)?.error?.code ?? "";
    } catch {
      // not JSON: the status says enough
    }
    throw new PalisadeError(`answered ${res.status}${code ? ` (${code})` : ""}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new PalisadeError("answered something that is not JSON");
  }
}

function refuse(status: number, code: string, message: string): Response {
  return Response.json({ error: { code, message } }, { status });
}

function blockedResponse(v: Verdict): Response {
  const headers = new Headers(v.headers);
  for (const [k, val] of Object.entries(v.blocked?.headers ?? {})) headers.set(k, val);
  return new Response(v.blocked?.body ?? "", { status: v.blocked?.status ?? 403, headers });
}

function rewritten(v: Verdict): BodyInit | null {
  if (typeof v.body === "string") return v.body;
  if (typeof v.body_base64 === "string") return Uint8Array.from(atob(v.body_base64), (c) => c.charCodeAt(0));
  return null;
}

async function blocking<Env>(handler: Handler<Env>, o: Resolved, request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
  const message = describe(request, o);
  let forwarded = request;
  let decisionHeaders: Record<string, string> = {};

  if (o.inspectRequest) {
    if (inspectable(request.headers.get("content-type"), o.contentTypes)) {
      const bytes = await readLimited(request.clone().body, o.maxBodyBytes);
      if (bytes === null) {
        if (!o.failOpen) {
          console.log("[palisade] request body over maxBodyBytes, refused with 413");
          return refuse(413, "palisade_body_too_large", "the request body is too large to be checked");
        }
        console.warn("[palisade] request body over maxBodyBytes, forwarded uninspected (failOpen)");
      } else {
        putBody(message, bytes);
      }
    }
    let verdict: Verdict | null = null;
    try {
      verdict = await ask<Verdict>(o, "/v1/guard/request", message);
    } catch (e) {
      if (!o.failOpen) {
        console.error(`[palisade] could not check the request, refused with 503: ${(e as Error).message}`);
        return refuse(503, "palisade_unavailable", "the request could not be checked");
      }
      console.warn(`[palisade] could not check the request, forwarded uninspected (failOpen): ${(e as Error).message}`);
    }
    if (verdict) {
      decisionHeaders = verdict.headers ?? {};
      if (verdict.action === "block" || verdict.allowed === false) {
        console.log(`[palisade] request blocked (palisade request id ${verdict.request_id})`);
        return blockedResponse(verdict);
      }
      const headers = new Headers(request.headers);
      if (verdict.request_id) headers.set("x-palisade-request-id", verdict.request_id);
      if (verdict.action === "redact") {
        const body = rewritten(verdict);
        if (body !== null) {
          headers.delete("content-length");
          forwarded = new Request(request, { headers, body });
          console.log(`[palisade] request body redacted (palisade request id ${verdict.request_id})`);
        } else {
          forwarded = new Request(request, { headers });
        }
      } else {
        forwarded = new Request(request, { headers });
      }
    }
  }

  const response = await handler(forwarded, env, ctx);
  if (!o.inspectResponse || !inspectable(response.headers.get("content-type"), o.contentTypes)) {
    return withHeaders(response, decisionHeaders);
  }
  const encoding = response.headers.get("content-encoding");
  if (encoding && encoding !== "identity") {
    // fetch() in a Worker decodes bodies it reads; an encoded one here came from the handler itself.
    return failResponse(o, response, decisionHeaders, `the response is ${encoding}-encoded`);
  }
  // One branch is read (up to the limit); the other keeps what was read, for a fail-open return.
  const [check, pass] = response.body ? response.body.tee() : [null, null];
  const bytes = await readLimited(check, o.maxBodyBytes);
  if (bytes === null) {
    if (!o.failOpen) {
      await pass?.cancel();
      console.error("[palisade] response body over maxBodyBytes, refused with 502");
      return refuse(502, "palisade_body_too_large", "the response is too large to be checked");
    }
    console.warn("[palisade] response body over maxBodyBytes, returned uninspected (failOpen)");
    return withHeaders(new Response(pass, response), decisionHeaders);
  }
  await pass?.cancel();
  const out: Message = {
    method: message.method,
    path: message.path,
    status: response.status,
    headers: allowedHeaders(response.headers, o.headerAllowList),
    protocol: message.protocol,
    metadata: message.metadata,
  };
  const method = mcpMethod(message);
  if (method) out.mcp_method = method;
  if (message.client_ip) out.client_ip = message.client_ip;
  if (message.policy) out.policy = message.policy;
  putBody(out, bytes);

  let verdict: Verdict;
  try {
    verdict = await ask<Verdict>(o, "/v1/guard/response", out);
  } catch (e) {
    return failResponse(o, new Response(bytes, response), decisionHeaders, (e as Error).message);
  }
  if (verdict.action === "block" || verdict.allowed === false) {
    console.log(`[palisade] response blocked (palisade request id ${verdict.request_id})`);
    return blockedResponse(verdict);
  }
  const headers = new Headers(response.headers);
  for (const [k, v] of Object.entries(decisionHeaders)) headers.set(k, v);
  if (verdict.action === "redact") {
    const body = rewritten(verdict);
    if (body !== null) {
      headers.delete("content-length");
      for (const [k, v] of Object.entries(verdict.headers ?? {})) headers.set(k, v);
      console.log(`[palisade] response body redacted (palisade request id ${verdict.request_id})`);
      return new Response(body, { status: response.status, statusText: response.statusText, headers });
    }
  }
  return new Response(bytes, { status: response.status, statusText: response.statusText, headers });
}

function withHeaders(response: Response, add: Record<string, string>): Response {
  if (Object.keys(add).length === 0) return response;
  const r = new Response(response.body, response);
  for (const [k, v] of Object.entries(add)) r.headers.set(k, v);
  return r;
}

function failResponse(o: Resolved, response: Response, add: Record<string, string>, why: string): Response {
  if (!o.failOpen) {
    console.error(`[palisade] could not check the response, refused with 502: ${why}`);
    return refuse(502, "palisade_unavailable", "the response could not be checked");
  }
  console.warn(`[palisade] could not check the response, returned uninspected (failOpen): ${why}`);
  return withHeaders(response, add);
}

async function copy(o: Resolved, message: Message, body: ReadableStream<Uint8Array> | null, contentType: string | null): Promise<void> {
  if (!inspectable(contentType, o.contentTypes)) {
    await body?.cancel();
    return;
  }
  const bytes = await readLimited(body, o.maxBodyBytes);
  if (bytes !== null) putBody(message, bytes);
}

function async_<Env>(handler: Handler<Env>, o: Resolved, request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
  const message = describe(request, o);
  const requestCopy = o.inspectRequest && request.body ? request.clone() : null;
  return Promise.resolve(handler(request, env, ctx)).then((response) => {
    let responseCopy: Response | null = null;
    let returned = response;
    if (o.inspectResponse && response.body) {
      const [a, b] = response.body.tee();
      returned = new Response(a, response);
      responseCopy = new Response(b, response);
    }
    ctx.waitUntil(
      (async () => {
        try {
          if (requestCopy) await copy(o, message, requestCopy.body, request.headers.get("content-type"));
          const metadata = message.metadata;
          delete message.metadata;
          const exchange: { request: Message; response?: Message; metadata?: Metadata } = { request: message, metadata };
          if (o.inspectResponse) {
            const out: Message = { status: response.status, headers: allowedHeaders(response.headers, o.headerAllowList) };
            const method = mcpMethod(message);
            if (method) out.mcp_method = method;
            if (responseCopy) await copy(o, out, responseCopy.body, response.headers.get("content-type"));
            exchange.response = out;
          }
          await ask(o, "/v1/guard/exchange", exchange);
        } catch (e) {
          console.warn(`[palisade] could not send the exchange copy: ${(e as Error).message}`);
        }
      })(),
    );
    return returned;
  });
}

/**
 * Wraps a Worker's `fetch` handler. `options` may be a function of `env`, so the key can come
 * from a secret binding.
 */
export function withPalisade<Env>(
  handler: Handler<Env>,
  options: PalisadeOptions | ((env: Env) => PalisadeOptions),
): Handler<Env> {
  let cached: Resolved | undefined;
  return (request, env, ctx) => {
    const o = typeof options === "function" ? resolve(options(env)) : (cached ??= resolve(options));
    return o.mode === "async" ? async_(handler, o, request, env, ctx) : blocking(handler, o, request, env, ctx);
  };
}
