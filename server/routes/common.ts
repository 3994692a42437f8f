/**
 * What every sub-router shares: the app's environment type, the dependencies routes get, token
 * auth, JSON bodies (size-limited while they stream, then parsed with the protocol's zod schema),
 * WebSocket upgrades, and the one mapping from errors to answers.
 */
import type { Server } from "bun";
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { getCookie } from "hono/cookie";
import { timingSafeEqual } from "node:crypto";
import type { BlockList } from "node:net";
import { HTTPException } from "hono/http-exception";
import { zValidator } from "@hono/zod-validator";
import type { z } from "zod";
import type { Log } from "../../src/lib/log.ts";
import { CattyError, httpStatus, isLive, Label } from "../../src/protocol/index.ts";
import type { SessionTimeouts } from "../config.ts";
import type { Lifecycle } from "../lifecycle.ts";
import type { Provider } from "../providers/types.ts";
import type { Relay, SocketData } from "../relay.ts";
import type { Replicas } from "../replicas.ts";
import type { SaveLimits, Saves } from "../saves.ts";
import type { SessionRow, Store, User } from "../store/types.ts";
import { hashToken } from "../tokens.ts";

export interface AppEnv {
  /** `Bun.serve` passes its server as the second `fetch` argument; absent under `app.request()`. */
  Bindings: Server<SocketData> | undefined;
  Variables: {
    user: User;
    /** Set when the request came from a signed-in browser (cookie): its hash and CSRF token. */
    browserSession?: string;
    csrf?: string;
    /** The origin the client sent this request to (see `publicOrigin`): what `Origin` must be, and whether cookies are `Secure`. */
    origin: string;
  };
}

/** What the routes work with; built once by `createApp`. */
export interface RouteDeps {
  store: Store;
  provider: Provider;
  saves: Saves;
  lifecycle: Lifecycle;
  relay: Relay;
  log: Log;
  limits: SaveLimits;
  timeouts: SessionTimeouts;
  /** The URL agents dial; known once the server listens. */
  agentUrl(): string;
  /** `<data-dir>/server-key`: proves to a CLI that this is the server it started (`/healthz?challenge=`). */
  serverKey: string;
  /** Whether sessions get Claude API access through this server (an operator's key is set). */
  claudeAccess: boolean;
  replicas: Replicas;
  /** Proxies whose `X-Forwarded-For` is believed (see client-address.ts). */
  trustedProxies: BlockList | null;
  /** `CATTY_PREVIEW_DOMAIN`, or null (preview links under `localhost`). */
  previewDomain: string | null;
}

/** JSON bodies are small; only uploads and blob transfers stream large bodies (to storage). */
export const MAX_JSON_BYTES = 1024 * 1024;

export function bearer(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  return m?.[1] ?? null;
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * Every route below it needs a user: an API token (`Authorization: Bearer`), or a signed-in
 * browser's session cookie. A cookie works only from this server's own pages: a state-changing
 * request must carry the session's CSRF token (`X-CSRF-Token`) and no foreign `Origin`, and a
 * cookie never opens a WebSocket (the page gets a one-use ticket for that).
 */
export function requireUser(store: Store): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const token = bearer(c.req.header("authorization"));
    if (token) {
      const user = await store.userByTokenHash(hashToken(token));
      if (!user) throw new CattyError("unauthorized", "Invalid token.", "Run `catty login` again.");
      c.set("user", user);
      return next();
    }
    const cookie = getCookie(c, "catty_session");
    const web = cookie ? await store.browserSession(hashToken(cookie), new Date().toISOString()) : null;
    if (!web) throw new CattyError("unauthorized", "Missing token.", "Run `catty login`.");
    const origin = c.req.header("origin");
    if (origin && origin !== c.var.origin) throw new CattyError("forbidden", "Cross-origin request refused.");
    if (c.req.header("upgrade")?.toLowerCase() === "websocket") {
      throw new CattyError("forbidden", "A browser attaches with a ticket (POST /v1/sessions/<label>/ticket), not with its cookie.");
    }
    if (!SAFE_METHODS.has(c.req.method) && !safeEqual(c.req.header("x-csrf-token") ?? "", web.csrf)) {
      throw new CattyError("forbidden", "Missing or wrong CSRF token.", "Reload the page.");
    }
    const user = await store.userById(web.userId);
    if (!user) throw new CattyError("unauthorized", "Signed out.", "Sign in again.");
    c.set("user", user);
    c.set("browserSession", web.idHash);
    c.set("csrf", web.csrf);
    await next();
  };
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export const sessionNotFound = (label: string): CattyError =>
  new CattyError("not_found", `Session ${label} not found.`, "Run `catty list` to see your sessions.");

/** The user's session called `label`; another user's answers 404, as if it did not exist. */
export async function sessionOf(store: Store, user: User, label: string): Promise<SessionRow> {
  if (!Label.safeParse(label).success) throw sessionNotFound(label);
  const row = await store.sessionFor(user.id, label);
  if (!row) throw sessionNotFound(label);
  return row;
}

const isJsonType = (type: string | undefined): boolean => /^application\/([\w.-]+\+)?json\s*(;|$)/i.test(type ?? "");

/**
 * A JSON body parsed with `schema`: refused with 413 once more than `MAX_JSON_BYTES` arrived
 * (counted while it streams, so a huge body is never held), 400 when it is not JSON or does not
 * match. An empty body counts as `{}`.
 */
export function jsonBody<S extends z.ZodType>(schema: S) {
  const limit = bodyLimit({
    maxSize: MAX_JSON_BYTES,
    onError: () => {
      throw new CattyError("too_large", `The request body is larger than ${MAX_JSON_BYTES} bytes.`);
    },
  });
  // Hono's validator reads only `application/json` bodies; anything else must be empty.
  const jsonOnly: MiddlewareHandler<AppEnv> = async (c, next) => {
    if (!isJsonType(c.req.header("content-type")) && (await c.req.text()).trim() !== "") {
      throw new CattyError("bad_request", "The request body must be JSON (Content-Type: application/json).");
    }
    await next();
  };
  const validate = zValidator("json", schema, (result) => {
    if (result.success) return;
    const issue = result.error.issues[0];
    throw new CattyError("bad_request", `Invalid request: ${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`);
  });
  return [limit, jsonOnly, validate] as const;
}

/** The whole body, refused with `tooLarge()` once it is known to be over `max` bytes (by its declared length, or as it arrives): never more is held. */
export async function readCapped(req: Request, max: number, tooLarge: () => CattyError): Promise<Uint8Array> {
  // A body of declared length is read whole (the HTTP layer holds it to that length): refused at
  // once when too large, and not copied piece by piece.
  const declared = req.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared)) {
    if (Number(declared) > max) throw tooLarge();
    try {
      return new Uint8Array(await req.arrayBuffer());
    } catch (err) {
      throw new CattyError("bad_request", `The request's body could not be read whole (${(err as Error).message}).`);
    }
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (req.body) {
    for await (const chunk of req.body) {
      size += chunk.length;
      if (size > max) throw tooLarge();
      chunks.push(chunk);
    }
  }
  return Buffer.concat(chunks, size);
}

/**
 * Upgrades to a client link of the session in `row` (served by this replica's relay): a session
 * that has ended is told so when the link opens.
 */
export function upgradeClient(c: Context<AppEnv>, relay: Relay, row: SessionRow, viewOnly: boolean): Response {
  const ended = isLive(row.status)
    ? undefined
    : { type: "ended" as const, status: row.status, exitCode: row.exitCode, reason: row.endReason, screen: row.lastScreen };
  return upgrade(c, {
    kind: "client",
    sessionId: row.id,
    label: row.label,
    clientId: relay.newClientId(),
    malformed: 0,
    ...(ended ? { ended } : {}),
    ...(viewOnly ? { viewOnly } : {}),
  });
}

/** Upgrades the request to a WebSocket with `data`; a request that cannot be upgraded is a 400. */
export function upgrade(c: Context<AppEnv>, data: SocketData): Response {
  const server = c.env;
  if (!server || typeof server.upgrade !== "function" || !server.upgrade(c.req.raw, { data })) {
    throw new CattyError("bad_request", "Expected a WebSocket upgrade.");
  }
  // Bun answers the upgrade itself and ignores this response.
  return new Response(null);
}

/** The one error mapper: `CattyError` codes through `httpStatus`; anything unexpected is a logged 500. */
export function errorResponse(err: unknown, c: Context<AppEnv>, log: Log, count?: (code: string) => void): Response {
  const e = toCattyError(err, c, log);
  count?.(e.code);
  return c.json(e.toBody(), httpStatus[e.code] as 400);
}

function toCattyError(err: unknown, c: Context<AppEnv>, log: Log): CattyError {
  if (err instanceof CattyError) return err;
  if (err instanceof HTTPException) {
    if (err.status === 413) return new CattyError("too_large", "The request body is too large.");
    if (err.status === 400) {
      const message = /malformed json/i.test(err.message) ? "The request body is not valid JSON." : err.message || "Bad request.";
      return new CattyError("bad_request", message);
    }
  }
  log.error("request failed", { method: c.req.method, path: c.req.path, err });
  return new CattyError("internal", "Internal server error.", "See the server's log.");
}
