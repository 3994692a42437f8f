/**
 * Signing in from a browser, and the CLI's device-code login (RFC 8628 style):
 *
 * - `POST /v1/web/login {token}`: an API token (`catty-server token create`) buys a browser
 *   session: an `HttpOnly`, `SameSite=Lax` cookie (`Secure` over HTTPS) whose hash is stored, that
 *   expires (30 days) and is revoked on sign-out. Attempts are rate-limited per address. The page
 *   gets a CSRF token it sends back in `X-CSRF-Token` with every state-changing request
 *   (`requireUser` checks it, and the `Origin`).
 * - `POST /v1/web/logout`, `GET /v1/web/me`.
 * - `POST /v1/sessions/<label>/ticket`: a one-use ticket, valid 60 s, for the browser's attach
 *   WebSocket (browsers cannot set headers; a cookie alone never opens a WebSocket).
 * - `POST /v1/device/code` → a device code (for the CLI) and a short user code (for the person);
 *   `POST /v1/device/token` → `authorization_pending` / `slow_down` / `expired_token` /
 *   `access_denied`, or a new API token once a signed-in user approved the code on `/device`
 *   (`GET /v1/device/<code>`, `POST /v1/device/approve`).
 */
import type { BlockList } from "node:net";
import { clientAddress } from "../client-address.ts";
import { randomBytes, randomInt } from "node:crypto";
import type { Context } from "hono";
import { Hono } from "hono";
import { deleteCookie, setCookie } from "hono/cookie";
import { z } from "zod";
import { CattyError, type AttachTicket, type DeviceRequest, type WebUser } from "../../src/protocol/index.ts";
import { hashToken, newToken } from "../tokens.ts";
import { jsonBody, requireUser, sessionOf, type AppEnv, type RouteDeps } from "./common.ts";

export const SESSION_COOKIE = "catty_session";
const SESSION_DAYS = 30;
const TICKET_MS = 60_000;
export const DEVICE_CODE_MS = 10 * 60_000;
export const DEVICE_INTERVAL_S = 5;
/** User codes: no vowels or look-alikes, so they read and type easily and spell nothing. */
const CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ";

/**
 * Sliding one-minute windows of events per key (an address). At most `maxKeys` keys are held: past
 * that the key hit longest ago is forgotten (never all of them, so many new addresses do not wipe
 * the count of one being limited).
 */
export class RateLimit {
  /** Keys in the order they were last hit, oldest first. */
  private readonly hits = new Map<string, number[]>();
  constructor(private readonly max: number, private readonly windowMs = 60_000, private readonly maxKeys = 10_000) {}
  /** Whether `key` has had `max` events in the window. */
  exceeded(key: string, now = Date.now()): boolean {
    const held = this.hits.get(key);
    if (!held) return false;
    const recent = held.filter((t) => now - t < this.windowMs);
    if (recent.length === 0) this.hits.delete(key);
    else if (recent.length < held.length) this.hits.set(key, recent);
    return recent.length >= this.max;
  }
  hit(key: string, now = Date.now()): void {
    const held = this.hits.get(key) ?? [];
    // Moved to the end: the map stays in order of last hit.
    this.hits.delete(key);
    this.hits.set(key, [...held.filter((t) => now - t < this.windowMs), now]);
    for (const oldest of this.hits.keys()) {
      if (this.hits.size <= this.maxKeys) break;
      this.hits.delete(oldest);
    }
  }
  /** How many keys are held. */
  get size(): number {
    return this.hits.size;
  }
  /** Counts an event; false when over the limit. */
  take(key: string, now = Date.now()): boolean {
    if (this.exceeded(key, now)) return false;
    this.hit(key, now);
    return true;
  }
}

/** The client's address: the connection's, or what a trusted proxy in front says (see client-address.ts). */
function address(c: Context<AppEnv>, trusted: BlockList | null): string {
  const peer = c.env?.requestIP(c.req.raw)?.address ?? "unknown";
  return clientAddress(peer, c.req.header("x-forwarded-for"), trusted);
}

/** Whether the client reached this server over HTTPS (a TLS-terminating proxy in front counts: see `publicOrigin`). */
const isHttps = (c: Context<AppEnv>): boolean => c.var.origin.startsWith("https:");

function userCode(): string {
  const pick = (): string => Array.from({ length: 4 }, () => CODE_ALPHABET[randomInt(CODE_ALPHABET.length)]).join("");
  return `${pick()}-${pick()}`;
}

const normalizeCode = (code: string): string => code.toUpperCase().replace(/[^A-Z]/g, "").replace(/^(.{4})(.{4})$/, "$1-$2");

export function webAuthRoutes(deps: RouteDeps): Hono<AppEnv> {
  const { store } = deps;
  const app = new Hono<AppEnv>();
  /** Failed sign-ins per address and minute. */
  const failedLogins = new RateLimit(10);
  const deviceStarts = new RateLimit(20);
  const user = requireUser(store);

  app.post("/web/login", ...jsonBody(z.object({ token: z.string().min(1).max(512) })), async (c) => {
    const from = address(c, deps.trustedProxies);
    if (failedLogins.exceeded(from)) throw new CattyError("too_many_requests", "Too many failed sign-ins from here.", "Wait a minute and try again.");
    const tokenHash = hashToken(c.req.valid("json").token);
    const found = await store.userByTokenHash(tokenHash);
    if (!found) {
      failedLogins.hit(from);
      throw new CattyError("unauthorized", "That token is not valid.", "Create one with `catty-server token create --user NAME` on the server.");
    }
    const id = randomBytes(32).toString("base64url");
    const csrf = randomBytes(24).toString("base64url");
    const now = Date.now();
    await store.insertBrowserSession({
      idHash: hashToken(id),
      userId: found.id,
      csrf,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + SESSION_DAYS * 86_400_000).toISOString(),
      // Revoking the token signs this browser out.
      tokenHash,
    });
    setCookie(c, SESSION_COOKIE, id, { httpOnly: true, sameSite: "Lax", secure: isHttps(c), path: "/", maxAge: SESSION_DAYS * 86_400 });
    return c.json({ user: found.name, csrf } satisfies WebUser);
  });

  app.get("/web/me", user, (c) => c.json({ user: c.var.user.name, csrf: c.var.csrf ?? null } satisfies WebUser));

  app.post("/web/logout", user, async (c) => {
    if (c.var.browserSession) await store.revokeBrowserSession(c.var.browserSession);
    deleteCookie(c, SESSION_COOKIE, { path: "/", secure: isHttps(c) });
    return c.json({ ok: true });
  });

  app.post("/sessions/:label/ticket", user, ...jsonBody(z.object({ view: z.boolean().default(false) })), async (c) => {
    const row = await sessionOf(store, c.var.user, c.req.param("label"));
    const ticket = newToken("tkt");
    await store.insertTicket({
      hash: hashToken(ticket),
      userId: c.var.user.id,
      sessionId: row.id,
      viewer: c.req.valid("json").view,
      expiresAt: new Date(Date.now() + TICKET_MS).toISOString(),
    });
    return c.json({ ticket, expiresIn: TICKET_MS / 1000 } satisfies AttachTicket);
  });

  // The CLI's side of the device-code login.
  app.post("/device/code", async (c) => {
    const from = address(c, deps.trustedProxies);
    if (!deviceStarts.take(from)) throw new CattyError("too_many_requests", "Too many logins started from here.", "Wait a minute and try again.");
    const deviceCode = newToken("dev");
    const now = Date.now();
    let code = userCode();
    for (let i = 0; (await store.deviceCodeByUserCode(code)) && i < 10; i++) code = userCode();
    await store.insertDeviceCode({
      deviceHash: hashToken(deviceCode),
      userCode: code,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + DEVICE_CODE_MS).toISOString(),
      status: "pending",
      userId: null,
      polledAt: null,
      // Shown to the person approving, who should recognize their own terminal.
      requesterAddress: from,
      requesterAgent: (c.req.header("user-agent") ?? "").replace(/[^\x20-\x7e]/g, "").slice(0, 200) || null,
    });
    // The link does not carry the code: the person types the code their terminal shows, so a link
    // someone else sent approves nothing by a click.
    const uri = `${c.var.origin}/device`;
    return c.json({
      deviceCode,
      userCode: code,
      verificationUri: uri,
      verificationUriComplete: uri,
      expiresIn: DEVICE_CODE_MS / 1000,
      interval: DEVICE_INTERVAL_S,
    });
  });

  app.post("/device/token", ...jsonBody(z.object({ deviceCode: z.string().min(1).max(200) })), async (c) => {
    const hash = hashToken(c.req.valid("json").deviceCode);
    const d = await store.deviceCodeByHash(hash);
    const now = Date.now();
    const answer = (error: string, description: string) => c.json({ error, description }, 400);
    if (!d || d.status === "used") return answer("expired_token", "This login code is not known or was already used.");
    if (Date.parse(d.expiresAt) <= now) return answer("expired_token", "The login code expired before it was approved.");
    if (d.status === "denied") return answer("access_denied", "The login was denied in the browser.");
    if (d.status === "pending") {
      const tooSoon = d.polledAt !== null && now - Date.parse(d.polledAt) < (DEVICE_INTERVAL_S * 1000) - 250;
      await store.updateDeviceCode(hash, { polledAt: new Date(now).toISOString() });
      return tooSoon ? answer("slow_down", `Ask at most every ${DEVICE_INTERVAL_S} s.`) : answer("authorization_pending", "Waiting for approval in the browser.");
    }
    // Approved: one new API token for that user, handed out once (of polls racing, one redeems it).
    const userId = await store.redeemDeviceCode(hash, new Date(now).toISOString());
    if (!userId) return answer("expired_token", "This login code is not known or was already used.");
    const owner = await store.userById(userId);
    if (!owner) return answer("access_denied", "The approving user no longer exists.");
    const token = newToken("cat");
    await store.addToken(owner.id, hashToken(token));
    return c.json({ token, user: owner.name });
  });

  // The signed-in person's side: look at a code, approve or deny it.
  app.get("/device/:code", user, async (c) => {
    const d = await store.deviceCodeByUserCode(normalizeCode(c.req.param("code")));
    if (!d || d.status !== "pending" || Date.parse(d.expiresAt) <= Date.now()) {
      throw new CattyError("not_found", "No login is waiting for that code.", "Check the code your terminal shows, or run `catty login` again.");
    }
    const request: DeviceRequest = { userCode: d.userCode, createdAt: d.createdAt, expiresAt: d.expiresAt, requester: { address: d.requesterAddress, userAgent: d.requesterAgent } };
    return c.json(request);
  });

  app.post("/device/approve", user, ...jsonBody(z.object({ userCode: z.string().min(1).max(20), approve: z.boolean() })), async (c) => {
    const body = c.req.valid("json");
    const d = await store.deviceCodeByUserCode(normalizeCode(body.userCode));
    if (!d || d.status !== "pending" || Date.parse(d.expiresAt) <= Date.now()) {
      throw new CattyError("not_found", "No login is waiting for that code.", "Check the code your terminal shows, or run `catty login` again.");
    }
    await store.updateDeviceCode(d.deviceHash, body.approve ? { status: "approved", userId: c.var.user.id } : { status: "denied" });
    return c.json({ ok: true, approved: body.approve });
  });

  return app;
}
