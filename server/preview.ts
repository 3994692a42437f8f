/**
 * Preview links: every port a session listens on opens in a browser at a host of its own,
 * `LABEL-PORT.localhost:<server port>` (browsers send `*.localhost` to loopback) or
 * `LABEL-PORT.<CATTY_PREVIEW_DOMAIN>`, proxied by this server to the session's port over a
 * forward link to its agent (tunnels.ts, the server's own streams). HTTP and WebSockets pass.
 *
 * A preview host is never the dashboard's origin, and nothing of the dashboard is served there:
 * the dashboard's cookie is host-only (the browser never sends it to a preview host) and a page
 * of the session can neither read it nor call the API with it (a cookie request from another
 * origin is refused; see `requireUser`). Getting in:
 * - from the dashboard (signed in): `GET /v1/sessions/<label>/preview/<port>` gives a one-use
 *   ticket valid for a minute and sends the browser to `<preview>/__catty/signin?ticket=`, which
 *   exchanges it for a cookie of that preview host alone (`catty_preview`, HttpOnly);
 * - with a share link (`catty forward LABEL PORT --share`): `<preview>/__catty/share/<token>`
 *   sets the share token itself as that cookie, so its expiry and revocation hold at once.
 * Every grant is checked by `grantAllows`, here and nowhere else. The session's program never
 * sees the cookie (it is taken out of the request).
 */
import type { Server, ServerWebSocket } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server as NetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getCookie, setCookie } from "hono/cookie";
import type { Context } from "hono";
import type { Log } from "../src/lib/log.ts";
import { pipeSocket } from "../src/lib/mux.ts";
import { CattyError, isLive, Label } from "../src/protocol/index.ts";
import type { AppEnv } from "./routes/common.ts";
import type { PortGrant, SessionRow, Store } from "./store/types.ts";
import { hashToken, newToken } from "./tokens.ts";
import type { Tunnels } from "./tunnels.ts";

export const PREVIEW_COOKIE = "catty_preview";
/** How long a preview host stays signed in; a ticket lives a minute. */
const COOKIE_MS = 12 * 3600_000;
export const TICKET_MS = 60_000;
const HOP_BY_HOP = ["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer"];

export interface PreviewTarget {
  label: string;
  port: number;
}

/** The session and port a preview host names (`brave-tiger-1234-3000.localhost:4815`), or null for any other host. */
export function previewTarget(host: string | undefined | null, domain: string | null): PreviewTarget | null {
  if (!host || host.length > 300) return null;
  const m = /^([a-z]{2,16}-[a-z]{2,16}-\d{4})-(\d{1,5})\.([a-z0-9.-]+?)\.?(?::\d{1,5})?$/.exec(host.toLowerCase());
  if (!m) return null;
  const [, label, portText, parent] = m as unknown as [string, string, string, string];
  if (parent !== "localhost" && parent !== domain) return null;
  const port = Number(portText);
  if (port < 1 || port > 65535 || !Label.safeParse(label).success) return null;
  return { label, port };
}

/** The preview link of one port, as seen from a request that reached this server at `origin`; null when there is none. */
export function previewUrl(origin: string, target: PreviewTarget, domain: string | null): string | null {
  const host = `${target.label}-${target.port}`;
  if (domain) return `https://${host}.${domain}/`;
  const u = new URL(origin);
  if (!["localhost", "127.0.0.1", "[::1]"].includes(u.hostname)) return null;
  return `${u.protocol}//${host}.localhost${u.port ? `:${u.port}` : ""}/`;
}

/**
 * The one check of what a grant allows: `kinds` of grant, for this session and port, of a live
 * session that still belongs to the user the grant was made for.
 */
export function grantAllows(grant: PortGrant | null, row: SessionRow | null, target: PreviewTarget, kinds: PortGrant["kind"][]): row is SessionRow {
  return (
    grant !== null &&
    row !== null &&
    kinds.includes(grant.kind) &&
    grant.sessionId === row.id &&
    grant.userId === row.userId &&
    row.label === target.label &&
    grant.port === target.port &&
    isLive(row.status)
  );
}

/** Makes a grant; returns its token (only its hash is stored). */
export async function newGrant(store: Store, kind: PortGrant["kind"], row: SessionRow, port: number, ttlMs: number): Promise<{ token: string; grant: PortGrant }> {
  const token = newToken(kind === "share" ? "shr" : "pvw");
  const now = Date.now();
  const grant: PortGrant = {
    hash: hashToken(token),
    kind,
    userId: row.userId,
    sessionId: row.id,
    port,
    createdAt: new Date(now).toISOString(),
    expiresAt: new Date(now + ttlMs).toISOString(),
    revokedAt: null,
  };
  await store.insertPortGrant(grant);
  return { token, grant };
}

/** A browser's WebSocket on a preview host, joined to one the server opened to the session's port. */
export interface PreviewData {
  kind: "preview";
  sessionId: string;
  label: string;
  malformed: number;
  upstream: WebSocket;
  /** What the session sent before the browser's side opened. */
  early: Array<string | Buffer>;
  ended?: undefined;
}

/** Local unix sockets (in a directory only this server's user may enter), one per session port, each connection a stream to it. */
class PortSockets {
  private dir: string | null = null;
  private readonly listeners = new Map<string, { path: string; server: NetServer; ready: Promise<void> }>();

  constructor(private readonly tunnels: Tunnels) {}

  async path(sessionId: string, port: number): Promise<string> {
    const key = `${sessionId}:${port}`;
    let l = this.listeners.get(key);
    if (!l) {
      this.dir ??= mkdtempSync(join(tmpdir(), "catty-preview-"));
      const path = join(this.dir, `${this.listeners.size}.sock`);
      const server = createServer({ allowHalfOpen: true }, (socket) => {
        const stream = this.tunnels.localStream(sessionId, port);
        if (!stream) return void socket.destroy();
        pipeSocket(stream, socket);
      });
      const ready = new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(path, () => resolve());
      });
      l = { path, server, ready };
      this.listeners.set(key, l);
    }
    await l.ready;
    return l.path;
  }

  closeSession(sessionId: string): void {
    for (const [key, l] of this.listeners) {
      if (!key.startsWith(`${sessionId}:`)) continue;
      l.server.close();
      this.listeners.delete(key);
    }
  }

  close(): void {
    for (const l of this.listeners.values()) l.server.close();
    this.listeners.clear();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface PreviewDeps {
  store: Store;
  tunnels: Tunnels;
  log: Log;
  domain: string | null;
}

const page = (status: number, title: string, text: string): Response =>
  new Response(`<!doctype html><meta charset="utf-8"><title>${title}</title><h1>${title}</h1><p>${text}</p>`, {
    status,
    headers: { "content-type": "text/html; charset=utf-8", "content-security-policy": "default-src 'none'", "cache-control": "no-store" },
  });

export class Previews {
  private readonly sockets: PortSockets;

  constructor(private readonly deps: PreviewDeps) {
    this.sockets = new PortSockets(deps.tunnels);
  }

  /** Serves a request to a preview host. */
  async serve(c: Context<AppEnv>, target: PreviewTarget): Promise<Response> {
    const { store } = this.deps;
    const url = new URL(c.req.url);
    const now = new Date().toISOString();
    const secure = c.var.origin.startsWith("https:");
    const signIn = (token: string, next: string): Response => {
      setCookie(c, PREVIEW_COOKIE, token, { httpOnly: true, sameSite: "Lax", secure, path: "/", maxAge: COOKIE_MS / 1000 });
      // Only a path on this host: never an open redirect.
      const to = /^\/(?![/\\])/.test(next) ? next : "/";
      return c.redirect(to, 302);
    };
    if (url.pathname === "/__catty/signin") {
      const ticket = url.searchParams.get("ticket") ?? "";
      const grant = ticket ? await store.takePortGrant(hashToken(ticket), now) : null;
      const row = grant ? await store.sessionById(grant.sessionId) : null;
      if (!grantAllows(grant, row, target, ["ticket"])) {
        return page(401, "Preview link expired", "This sign-in link works once, for a minute. Open the preview again from the Catty dashboard.");
      }
      const { token } = await newGrant(store, "cookie", row, target.port, COOKIE_MS);
      return signIn(token, url.searchParams.get("next") ?? "/");
    }
    const share = /^\/__catty\/share\/([A-Za-z0-9_-]{10,200})$/.exec(url.pathname);
    if (share) {
      const token = share[1] as string;
      const grant = await store.takePortGrant(hashToken(token), now);
      const row = grant ? await store.sessionById(grant.sessionId) : null;
      if (!grantAllows(grant, row, target, ["share"])) return page(404, "Not found", "This share link has expired or was revoked.");
      return signIn(token, "/");
    }
    const cookie = getCookie(c, PREVIEW_COOKIE);
    const grant = cookie ? await store.takePortGrant(hashToken(cookie), now) : null;
    const row = grant ? await store.sessionById(grant.sessionId) : null;
    if (!grantAllows(grant, row, target, ["cookie", "share"])) {
      if (!cookie) return page(401, "Sign in to see this preview", "Open it from the Catty dashboard (the port's link), or use a share link (catty forward LABEL PORT --share).");
      return page(404, "Not found", "There is no such preview, or it is not yours. Open it from the Catty dashboard.");
    }
    const path = await this.sockets.path(row.id, target.port);
    if (c.req.header("upgrade")?.toLowerCase() === "websocket") return this.webSocket(c, row, target, path, url);
    return this.http(c, target, path, url);
  }

  /** The request's headers for the session: hop-by-hop ones and the preview cookie left out, the host as the program expects. */
  private upstreamHeaders(c: Context<AppEnv>, target: PreviewTarget): Headers {
    const headers = new Headers(c.req.raw.headers);
    for (const h of HOP_BY_HOP) headers.delete(h);
    for (const h of ["sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"]) headers.delete(h);
    const cookies = (headers.get("cookie") ?? "")
      .split(";")
      .map((s) => s.trim())
      .filter((s) => s && !s.startsWith(`${PREVIEW_COOKIE}=`));
    if (cookies.length > 0) headers.set("cookie", cookies.join("; "));
    else headers.delete("cookie");
    headers.set("x-forwarded-host", c.req.header("host") ?? "");
    headers.set("x-forwarded-proto", c.var.origin.startsWith("https:") ? "https" : "http");
    headers.set("host", `localhost:${target.port}`);
    return headers;
  }

  private async http(c: Context<AppEnv>, target: PreviewTarget, path: string, url: URL): Promise<Response> {
    const method = c.req.method;
    let res: Response;
    try {
      res = await fetch(`http://localhost:${target.port}${url.pathname}${url.search}`, {
        method,
        headers: this.upstreamHeaders(c, target),
        body: method === "GET" || method === "HEAD" ? undefined : c.req.raw.body,
        redirect: "manual",
        decompress: false,
        unix: path,
      } as RequestInit);
    } catch (err) {
      this.deps.log.debug("preview request failed", { label: target.label, port: target.port, err: (err as Error).message });
      return page(502, "Nothing answered", `Nothing in session ${target.label} answered on port ${target.port}. Is its server running?`);
    }
    const headers = new Headers(res.headers);
    for (const h of HOP_BY_HOP) headers.delete(h);
    return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
  }

  /** Opens the WebSocket to the session's port first, then takes the browser's upgrade with the subprotocol it chose. */
  private async webSocket(c: Context<AppEnv>, row: SessionRow, target: PreviewTarget, path: string, url: URL): Promise<Response> {
    const server = c.env as Server<unknown> | undefined;
    if (!server) throw new CattyError("bad_request", "Expected a WebSocket upgrade.");
    const protocols = (c.req.header("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim()).filter(Boolean);
    const headers = Object.fromEntries(this.upstreamHeaders(c, target));
    const upstream = new WebSocket(`ws+unix://${path}:${url.pathname}${url.search}`, { headers, protocols } as never);
    (upstream as { binaryType: string }).binaryType = "nodebuffer";
    const early: Array<string | Buffer> = [];
    upstream.onmessage = (e) => early.push(e.data as string | Buffer);
    const opened = await new Promise<boolean>((resolve) => {
      upstream.onopen = () => resolve(true);
      upstream.onerror = () => resolve(false);
      upstream.onclose = () => resolve(false);
    });
    if (!opened) return page(502, "Nothing answered", `Nothing in session ${target.label} took the WebSocket on port ${target.port}.`);
    const data: PreviewData = { kind: "preview", sessionId: row.id, label: row.label, malformed: 0, upstream, early };
    const responseHeaders = upstream.protocol ? { "sec-websocket-protocol": upstream.protocol } : undefined;
    if (!server.upgrade(c.req.raw, { data, headers: responseHeaders })) {
      upstream.close();
      throw new CattyError("bad_request", "Expected a WebSocket upgrade.");
    }
    return new Response(null);
  }

  closeSession(sessionId: string): void {
    this.sockets.closeSession(sessionId);
  }

  close(): void {
    this.sockets.close();
  }
}

/** The browser's side of a preview WebSocket (the relay's handler passes these here). */
export const previewSocket = {
  open(ws: ServerWebSocket<PreviewData>): void {
    const { upstream, early } = ws.data;
    for (const m of early.splice(0)) ws.send(m);
    upstream.onmessage = (e) => {
      if (ws.readyState === 1) ws.send(e.data as string | Buffer);
    };
    upstream.onclose = (e) => {
      if (ws.readyState <= 1) ws.close(e.code >= 1000 && e.code < 5000 && e.code !== 1005 && e.code !== 1006 ? e.code : 1011, e.reason);
    };
  },
  message(ws: ServerWebSocket<PreviewData>, msg: string | Buffer): void {
    if (ws.data.upstream.readyState === WebSocket.OPEN) ws.data.upstream.send(msg);
  },
  close(ws: ServerWebSocket<PreviewData>, code: number, reason: string): void {
    const up = ws.data.upstream;
    if (up.readyState <= WebSocket.OPEN) up.close(code >= 1000 && code < 5000 && code !== 1005 && code !== 1006 ? code : 1000, reason);
  },
};
