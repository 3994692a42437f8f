/**
 * Claude API access through the server: a session's program gets `ANTHROPIC_BASE_URL` pointing
 * here and `ANTHROPIC_AUTH_TOKEN`, a token of its own session that works only for this proxy and
 * only while the session is live. The operator's key (`ANTHROPIC_API_KEY`) is added here and never
 * enters a machine. Only the calls Claude Code makes go upstream (`PROXY_ROUTES`; anything else is
 * 404), with their query, an allow-list of headers and the body streamed; answers come back as they
 * arrive, server-sent events unbuffered, errors and rate-limit headers included. Usage is read from the answer as it passes (`message_start` and
 * `message_delta` events, or the JSON body) and added to the session's figures for the month,
 * also when the stream is cut short; a user over their monthly quota gets 402.
 */
import { Hono } from "hono";
import type { ServerMetrics } from "./metrics.ts";
import type { Log } from "../src/lib/log.ts";
import { isLive } from "../src/protocol/index.ts";
import type { AppEnv } from "./routes/common.ts";
import type { Store, TokenCounts } from "./store/types.ts";
import { tokenTotal } from "./store/types.ts";
import { hashToken } from "./tokens.ts";

export interface ApiAccess {
  /** The operator's key; null: the server gives no API access. */
  apiKey: string | null;
  /** The Anthropic API (or a stand-in), without a trailing slash. */
  upstream: string;
}

/** The largest request body passed upstream (the Messages API's own limit is 32 MB). */
export const MAX_PROXY_BODY_BYTES = 32 * 1024 * 1024;

/** The month usage is counted in: `YYYY-MM`, UTC. */
export const usageMonth = (at = new Date()): string => at.toISOString().slice(0, 7);

/** An error in the Anthropic API's own shape, so Claude Code shows it as it would the API's. */
export function apiError(status: number, type: string, message: string): Response {
  return Response.json({ type: "error", error: { type, message } }, { status });
}

/**
 * The calls passed upstream: what Claude Code makes (checked against the real CLI: the Messages
 * API, token counting, the model list). Anything else the operator's key could do (files, batches,
 * the organization's admin API) is not a session's to do; only `POST /v1/messages` costs tokens.
 */
export const PROXY_ROUTES: ReadonlyArray<{ method: string; path: RegExp; name: string; metered: boolean }> = [
  { method: "POST", path: /^\/v1\/messages$/, name: "POST /v1/messages", metered: true },
  { method: "POST", path: /^\/v1\/messages\/count_tokens$/, name: "POST /v1/messages/count_tokens", metered: false },
  { method: "GET", path: /^\/v1\/models(\/[\w.:@-]+)?$/, name: "GET /v1/models", metered: false },
];

/**
 * Request headers passed upstream, and no others: the API's own and what Claude Code's SDK sends.
 * Never the client's credentials, cookies (a browser's dashboard session), forwarding headers or
 * hop-by-hop framing.
 */
const PASS_REQUEST = new Set([
  "accept", "content-type", "user-agent", "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access",
  "x-app", "x-claude-code-session-id",
]);
const passRequestHeader = (name: string): boolean => PASS_REQUEST.has(name) || /^x-stainless-[a-z-]+$/.test(name);
/** Response headers not passed back: hop-by-hop, the framing Bun sets itself, and cookies (for the API's domain, not this one). */
const DROP_RESPONSE = new Set(["connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "set-cookie"]);

/**
 * Reads usage from an answer as it passes: server-sent events line by line, or a JSON body (kept
 * up to 4 MiB; a larger one is not metered). Counts are the API's: `message_start` gives input,
 * cache and the first output count; each `message_delta` the output so far (and, in newer API
 * versions, the input and cache counts again).
 */
export class UsageMeter {
  private readonly decoder = new TextDecoder();
  private line = "";
  private json = "";
  private jsonOverflow = false;
  readonly tokens: TokenCounts = { input: 0, output: 0, cacheCreation: 0, cacheRead: 0 };
  seen = false;

  constructor(private readonly sse: boolean) {}

  feed(chunk: Uint8Array): void {
    const text = this.decoder.decode(chunk, { stream: true });
    if (!this.sse) {
      if (this.json.length + text.length > 4 * 1024 * 1024) this.jsonOverflow = true;
      else this.json += text;
      return;
    }
    this.line += text;
    let nl: number;
    while ((nl = this.line.indexOf("\n")) !== -1) {
      const line = this.line.slice(0, nl).replace(/\r$/, "");
      this.line = this.line.slice(nl + 1);
      if (line.startsWith("data:")) this.event(line.slice(5).trim());
    }
    // A line without an end that grows without bound is not an event worth reading.
    if (this.line.length > 1024 * 1024) this.line = "";
  }

  end(): void {
    if (!this.sse && !this.jsonOverflow && this.json) {
      try {
        this.usage((JSON.parse(this.json) as { usage?: unknown }).usage);
      } catch {
        // not JSON: nothing to meter
      }
    }
  }

  private event(data: string): void {
    if (!data.startsWith("{")) return;
    let ev: { type?: string; message?: { usage?: unknown }; usage?: unknown };
    try {
      ev = JSON.parse(data);
    } catch {
      return;
    }
    if (ev.type === "message_start") this.usage(ev.message?.usage);
    else if (ev.type === "message_delta") this.usage(ev.usage);
  }

  /** Takes the counts a usage object has (each is cumulative for the message). */
  private usage(u: unknown): void {
    if (!u || typeof u !== "object") return;
    const n = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? Math.floor(v) : null);
    const r = u as Record<string, unknown>;
    const set = (key: keyof TokenCounts, v: unknown): void => {
      const value = n(v);
      if (value !== null) {
        this.tokens[key] = value;
        this.seen = true;
      }
    };
    set("input", r.input_tokens);
    set("output", r.output_tokens);
    set("cacheCreation", r.cache_creation_input_tokens);
    set("cacheRead", r.cache_read_input_tokens);
  }
}

export function anthropicRoutes(deps: { store: Store; access: ApiAccess; log: Log; metrics?: Pick<ServerMetrics, "proxyTokens"> }): Hono<AppEnv> {
  const { store, access, log } = deps;
  const app = new Hono<AppEnv>();
  app.all("/*", async (c) => {
    if (!access.apiKey) {
      return apiError(503, "api_error", "This Catty server gives no Claude API access (its operator has not set ANTHROPIC_API_KEY). Use your own key: catty new --own-api-key.");
    }
    const header = c.req.header("authorization");
    const token = header?.match(/^Bearer\s+(\S+)$/i)?.[1] ?? c.req.header("x-api-key") ?? null;
    const session = token ? await store.sessionByProxyTokenHash(hashToken(token)) : null;
    if (!session || !isLive(session.status)) {
      return apiError(401, "authentication_error", "This session's Claude API token is not valid (the session has ended, or the token is not Catty's).");
    }
    const month = usageMonth();
    const quota = await store.tokenQuota(session.userId);
    if (quota !== null) {
      const used = (await store.usageOf(session.userId, month)).reduce((sum, u) => sum + tokenTotal(u), 0);
      if (used >= quota) {
        return apiError(402, "quota_exceeded", `Your Claude API quota for ${month} is used up: ${used.toLocaleString("en-US")} of ${quota.toLocaleString("en-US")} tokens. Ask the server's operator to raise it.`);
      }
    }

    const incoming = new URL(c.req.url);
    const path = incoming.pathname.replace(/^\/v1\/anthropic/, "") || "/";
    const route = PROXY_ROUTES.find((r) => r.method === c.req.method && r.path.test(path));
    if (!route) {
      return apiError(404, "not_found_error", `This Catty server passes on only what Claude Code calls (${PROXY_ROUTES.map((r) => r.name).join(", ")}); ${c.req.method} ${path} is not among them.`);
    }
    const headers = new Headers();
    for (const [k, v] of c.req.raw.headers) if (passRequestHeader(k.toLowerCase())) headers.set(k, v);
    headers.set("x-api-key", access.apiKey);
    headers.set("accept-encoding", "identity");
    const hasBody = !["GET", "HEAD"].includes(c.req.method);
    const declared = Number(c.req.header("content-length") ?? 0);
    if (declared > MAX_PROXY_BODY_BYTES) {
      return apiError(413, "request_too_large", `The request body is larger than ${MAX_PROXY_BODY_BYTES} bytes.`);
    }
    // Counted as it streams too (a body may not say its length): past the cap the upload stops.
    let sent = 0;
    const requestBody = hasBody && c.req.raw.body
      ? c.req.raw.body.pipeThrough(
          new TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, ctrl) {
              sent += chunk.byteLength;
              if (sent > MAX_PROXY_BODY_BYTES) ctrl.error(new Error(`request body over ${MAX_PROXY_BODY_BYTES} bytes`));
              else ctrl.enqueue(chunk);
            },
          }),
        )
      : null;
    let upstream: Response;
    try {
      upstream = await fetch(`${access.upstream}${path}${incoming.search}`, {
        method: c.req.method,
        headers,
        body: requestBody,
        signal: c.req.raw.signal,
        ...(hasBody ? { duplex: "half" } : {}),
        // Answers come back as they are; a redirect would take the key elsewhere.
        redirect: "manual",
        decompress: false,
      } as RequestInit);
    } catch (err) {
      if (sent > MAX_PROXY_BODY_BYTES) return apiError(413, "request_too_large", `The request body is larger than ${MAX_PROXY_BODY_BYTES} bytes.`);
      log.warn("Claude API upstream unreachable", { label: session.label, err });
      return apiError(502, "api_error", `The Claude API could not be reached from the Catty server: ${(err as Error).message}`);
    }

    const out = new Headers();
    for (const [k, v] of upstream.headers) if (!DROP_RESPONSE.has(k.toLowerCase())) out.set(k, v);
    if (!upstream.body) return new Response(null, { status: upstream.status, headers: out });
    const meter = new UsageMeter((upstream.headers.get("content-type") ?? "").includes("text/event-stream"));
    let recorded = false;
    const record = (): void => {
      if (recorded) return;
      recorded = true;
      meter.end();
      if (!meter.seen) return;
      const t = meter.tokens;
      for (const [kind, n] of [["input", t.input], ["output", t.output], ["cache_creation", t.cacheCreation], ["cache_read", t.cacheRead]] as const) {
        deps.metrics?.proxyTokens.inc({ kind }, n);
      }
      void store
        .addUsage(session.userId, session.id, month, meter.tokens)
        .catch((err: unknown) => log.error("could not record Claude API usage", { label: session.label, err }));
    };
    const reader = upstream.body.getReader();
    const body = new ReadableStream<Uint8Array>(
      {
        async pull(ctrl) {
          let chunk: Awaited<ReturnType<typeof reader.read>>;
          try {
            chunk = await reader.read();
          } catch (err) {
            record();
            ctrl.error(err);
            return;
          }
          if (chunk.done) {
            record();
            ctrl.close();
            return;
          }
          meter.feed(chunk.value);
          ctrl.enqueue(chunk.value);
        },
        cancel(reason) {
          // The client went away mid-answer: what was seen is still metered.
          record();
          return reader.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
    return new Response(body, { status: upstream.status, headers: out });
  });
  return app;
}
