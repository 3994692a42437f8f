/**
 * The server application: the HTTP API under `/v1` as Hono sub-routers, the two WebSocket
 * endpoints (agents on `/v1/agent/connect`, clients on `/v1/sessions/<label>/attach`), and the
 * sessions' lifecycle. `createApp` builds it from its dependencies and starts nothing: no timer,
 * no socket; tests call `app.request()` on it. `start()` takes over running sessions and starts
 * the periodic checks; startup.ts binds it with `Bun.serve`.
 *
 * WebSockets use Bun's own upgrade (`server.upgrade` with per-socket data) behind Hono's routing,
 * not `hono/bun`'s `upgradeWebSocket`: the relay needs the result of each `send` (0 = dropped,
 * the client is congested), the `drain` event to catch a congested client up, and typed
 * per-socket data, and `hono/bun` (4.13) passes none of these through.
 */
import type { Server, WebSocketHandler } from "bun";
import type { BlockList } from "node:net";
import { Hono } from "hono";
import { logContext, type Log } from "../src/lib/log.ts";
import { CattyError } from "../src/protocol/index.ts";
import type { DiskBlobStore } from "./blobs/disk.ts";
import type { BlobStore } from "./blobs/types.ts";
import type { SessionTimeouts } from "./config.ts";
import { Lifecycle } from "./lifecycle.ts";
import type { Provider } from "./providers/types.ts";
import { Relay, type SocketData } from "./relay.ts";
import { agentRoutes } from "./routes/agent.ts";
import { blobRoutes } from "./routes/blobs.ts";
import { errorResponse, type AppEnv, type RouteDeps } from "./routes/common.ts";
import { accountRoutes, healthRoutes, metricsRoutes, readyRoutes } from "./routes/info.ts";
import { createMetrics, type ServerMetrics } from "./metrics.ts";
import { sessionRoutes } from "./routes/sessions.ts";
import { uploadRoutes } from "./routes/uploads.ts";
import { createSaves, type SaveLimits } from "./saves.ts";
import { vaultRoutes } from "./routes/vault.ts";
import { ticketKey } from "./tickets.ts";
import { createVault } from "./vault/vault.ts";
import { Replicas } from "./replicas.ts";
import { internalRoutes } from "./routes/internal.ts";
import type { Store } from "./store/types.ts";
import { anthropicRoutes, type ApiAccess } from "./anthropic.ts";
import { Inbox } from "./inbox.ts";
import { Notifier, type NotifyFormat } from "./notify.ts";
import { WebPush } from "./push.ts";
import { pushRoutes } from "./routes/push.ts";
import { hookRoutes, inboxRoutes } from "./routes/inbox.ts";
import { webAuthRoutes } from "./routes/web-auth.ts";
import { webRoutes } from "./routes/web.ts";
import { hashToken, newToken } from "./tokens.ts";
import { publicOrigin } from "./client-address.ts";
import { Previews, previewTarget } from "./preview.ts";

export { toSession } from "./routes/sessions.ts";

export interface AppDeps {
  store: Store;
  provider: Provider;
  blobs: BlobStore;
  log: Log;
  limits: SaveLimits;
  timeouts: SessionTimeouts;
  /** The URL agents dial; known once the server listens. */
  agentUrl(): string;
  /** How long a session may miss its agent (machine alive) before it fails. */
  agentLostMs: number;
  /** How long an ending waits for the program before the machine is destroyed. */
  stopTimeoutMs: number;
  /** How long presigned URLs live (and a save not reported within it is abandoned). Default 15 min. */
  transferTtlMs?: number;
  /** How often unused blobs are swept. Default: the transfer TTL, at most 5 min. */
  sweepMs?: number;
  /** See `/healthz?challenge=`. */
  serverKey: string;
  /** Wraps users' save keys (see `vault/crypto.ts`). */
  masterKey: Buffer;
  /** Claude API access for sessions (the operator's key and the upstream). */
  apiAccess?: ApiAccess;
  /** What `/metrics` reports (made here when not given). */
  metrics?: ServerMetrics;
  /** `/metrics` asks for this bearer token when set. */
  metricsToken?: string | null;
  /** The replicas sharing the store (default: a solo one, as on SQLite). */
  replicas?: Replicas;
  /** Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed (see client-address.ts). */
  trustedProxies?: BlockList | null;
  /** `CATTY_PUBLIC_URL`: its scheme is the one requests to its host were sent with (TLS ended before this server). */
  publicUrl?: string | null;
  /** With replicas: `/v1/internal` is served by `internalFetch` (a listener of its own), not by `fetch`. */
  internalListener?: boolean;
  /** The inbox's webhook (`CATTY_NOTIFY_URL`, `CATTY_NOTIFY_FORMAT`); null: none. */
  notify?: { url: string; format: NotifyFormat } | null;
  /** `CATTY_PREVIEW_DOMAIN`: preview links at `LABEL-PORT.<domain>`; null: at `LABEL-PORT.localhost`. */
  previewDomain?: string | null;
}

export interface CattyApp {
  /** For `Bun.serve` (which passes itself as `server`, needed for WebSocket upgrades). */
  fetch(req: Request, server?: Server<SocketData>): Response | Promise<Response>;
  /** Hono's test entry: a request without a socket. */
  request: Hono<AppEnv>["request"];
  /** `/v1/internal` alone, for the internal listener; null unless there are replicas and `internalListener`. */
  internalFetch: ((req: Request, server?: Server<SocketData>) => Response | Promise<Response>) | null;
  websocket: WebSocketHandler<SocketData>;
  /** Takes over sessions a previous process left running, and starts the periodic checks. */
  start(): Promise<void>;
  /** From now on `/readyz` says no, so a load balancer sends nothing new here. */
  drain(): void;
  /** Closes every agent and client link, telling them to dial again (elsewhere, or here once back). */
  closeLinks(): void;
  close(): void;
  /** Resolves once work the app began (a storage sweep) has finished. */
  settled(): Promise<void>;
}

export function createApp(deps: AppDeps): CattyApp {
  const { log } = deps;
  const access: ApiAccess = deps.apiAccess ?? { apiKey: null, upstream: "https://api.anthropic.com" };
  const transferTtlMs = deps.transferTtlMs ?? 15 * 60 * 1000;
  const vault = createVault({ store: deps.store, blobs: deps.blobs, master: deps.masterKey, log });
  const metrics = deps.metrics ?? createMetrics();
  const replicas = deps.replicas ?? new Replicas({ store: deps.store, log, key: null, url: deps.agentUrl, solo: true });
  const saves = createSaves({
    store: deps.store,
    blobs: deps.blobs,
    vault,
    ticketKey: ticketKey(deps.masterKey),
    log,
    limits: deps.limits,
    transferTtlMs,
    metrics,
    leases: replicas,
  });
  const lifecycle = new Lifecycle({
    store: deps.store,
    provider: deps.provider,
    saves,
    log,
    agentLostMs: deps.agentLostMs,
    stopTimeoutMs: deps.stopTimeoutMs,
    timeouts: deps.timeouts,
    sweepMs: deps.sweepMs ?? Math.min(transferTtlMs, 5 * 60 * 1000),
    apiEnv: async (row) => {
      if (!access.apiKey) return null;
      const token = newToken("apx");
      await deps.store.setProxyToken(row.id, hashToken(token));
      return {
        ANTHROPIC_BASE_URL: `${deps.agentUrl()}/v1/anthropic`,
        ANTHROPIC_AUTH_TOKEN: token,
        // Claude Code sends nothing beside its API calls (telemetry, error reports) elsewhere.
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      };
    },
    onEnded: (status) => metrics.ended.inc({ status }),
    replicas,
  });
  const relay = new Relay(lifecycle, log, metrics);
  const inbox = new Inbox();
  const publicUrl = (): string => deps.publicUrl ?? deps.agentUrl();
  const push = new WebPush({ store: deps.store, holder: crypto.randomUUID(), masterKey: deps.masterKey, publicUrl, log });
  const notifier = deps.notify ? new Notifier({ ...deps.notify, publicUrl, log }) : null;
  inbox.events = {
    asked: (...a) => {
      push.asked(...a);
      notifier?.asked(...a);
    },
    settled: (...a) => notifier?.settled(...a),
  };
  const previewDomain = deps.previewDomain ?? null;
  const previews = new Previews({ store: deps.store, tunnels: relay.tunnels, log, domain: previewDomain });
  relay.tunnels.onEnded = (sessionId) => {
    previews.closeSession(sessionId);
    // Its requests and "always allow" rules end with it.
    inbox.sessionEnded(sessionId);
  };
  metrics.sources({ store: deps.store, relay: () => relay.counts(), replicas: async () => (replicas.solo ? 1 : (await replicas.live()).length) });
  let draining = false;
  lifecycle.connect(relay);
  const routeDeps: RouteDeps = {
    store: deps.store,
    provider: deps.provider,
    saves,
    lifecycle,
    relay,
    log,
    limits: deps.limits,
    timeouts: deps.timeouts,
    agentUrl: deps.agentUrl,
    serverKey: deps.serverKey,
    claudeAccess: access.apiKey !== null,
    replicas,
    trustedProxies: deps.trustedProxies ?? null,
    previewDomain,
  };

  const app = new Hono<AppEnv>();
  // Every request has an id (the caller's X-Request-Id when it is a sane one), answered in the
  // header and carried by every log line written while it is handled.
  app.use("*", async (c, next) => {
    const given = c.req.header("x-request-id");
    const id = given && /^[\w.:-]{1,128}$/.test(given) ? given : crypto.randomUUID();
    c.header("X-Request-Id", id);
    await logContext.run({ request: id }, next);
  });
  // The origin the client used: `Origin` checks, `Secure` cookies and links follow it; over HTTPS
  // browsers are told to keep to it (HSTS; not subdomains, where preview links may live).
  const originOf = { trustedProxies: deps.trustedProxies ?? null, publicUrl: deps.publicUrl ?? null };
  app.use("*", async (c, next) => {
    const origin = publicOrigin(c.req.raw, c.env?.requestIP(c.req.raw)?.address ?? "unknown", originOf);
    c.set("origin", origin);
    await next();
    if (!origin.startsWith("https:")) return;
    try {
      c.res.headers.set("strict-transport-security", "max-age=31536000");
    } catch {
      // A response passed through as it came (its headers are immutable): not a page.
    }
  });
  // A preview host (LABEL-PORT.localhost, LABEL-PORT.<preview domain>) is the session's, never the
  // dashboard's or the API's: nothing else is served there (preview.ts).
  app.use("*", async (c, next) => {
    const target = previewTarget(c.req.header("host"), previewDomain);
    if (!target) return next();
    c.res = await previews.serve(c, target);
  });
  // A path that is not valid percent-encoding names nothing; say so before any router decodes it.
  app.use("*", async (c, next) => {
    try {
      decodeURIComponent(new URL(c.req.url).pathname);
    } catch {
      throw new CattyError("bad_request", "The request path is not valid percent-encoding.");
    }
    await next();
  });
  app.route("/healthz", healthRoutes(routeDeps));
  app.route("/readyz", readyRoutes({ store: deps.store, blobs: deps.blobs, draining: () => draining }));
  app.route("/metrics", metricsRoutes(metrics, deps.metricsToken ?? null));
  app.route("/", webRoutes(routeDeps));
  app.route("/v1", accountRoutes(routeDeps));
  app.route("/v1/sessions", sessionRoutes(routeDeps));
  app.route("/v1", webAuthRoutes(routeDeps));
  app.route("/v1/uploads", uploadRoutes(routeDeps));
  app.route("/v1/vault", vaultRoutes(routeDeps));
  app.route("/v1", inboxRoutes(routeDeps, inbox));
  app.route("/v1/push", pushRoutes(routeDeps, push));
  app.route("/v1/agent", agentRoutes(routeDeps));
  // Replicas' calls to each other: nowhere on a server of its own (there is no other to call it).
  const internal = replicas.solo ? null : internalRoutes(routeDeps);
  if (internal && !deps.internalListener) app.route("/v1/internal", internal);
  // Claude Code's permission hook reaches the server as the proxy does (the netns bridge passes /v1/anthropic/ only).
  app.route("/v1/anthropic/catty/permission", hookRoutes(routeDeps, inbox));
  app.route("/v1/anthropic", anthropicRoutes({ store: deps.store, access, log, metrics }));
  if (isDisk(deps.blobs)) app.route("/v1/blobs", blobRoutes(routeDeps, deps.blobs));
  const counted = (code: string): void => metrics.errors.inc({ code });
  app.notFound((c) => errorResponse(new CattyError("not_found", `No route for ${c.req.method} ${c.req.path}.`), c, log, counted));
  app.onError((err, c) => errorResponse(err, c, log, counted));
  let internalApp: Hono<AppEnv> | null = null;
  if (internal && deps.internalListener) {
    internalApp = new Hono<AppEnv>().route("/v1/internal", internal);
    internalApp.notFound((c) => errorResponse(new CattyError("not_found", `No route for ${c.req.method} ${c.req.path}.`), c, log, counted));
    internalApp.onError((err, c) => errorResponse(err, c, log, counted));
  }

  return {
    fetch: (req, server) => app.fetch(req, server),
    request: app.request,
    internalFetch: internalApp ? (req, server) => (internalApp as Hono<AppEnv>).fetch(req, server) : null,
    websocket: relay.websocket,
    start: () => {
      // The VAPID key pair, made now on a first start (server/push.ts).
      void push.publicKey().catch((err: unknown) => log.warn("no VAPID keys yet", { err: (err as Error).message }));
      inbox.start();
      return lifecycle.start();
    },
    drain: () => {
      draining = true;
    },
    closeLinks: () => relay.closeAll(),
    close: () => {
      previews.close();
      inbox.close();
      lifecycle.close();
    },
    settled: () => lifecycle.settled(),
  };
}

const isDisk = (blobs: BlobStore): blobs is DiskBlobStore => blobs.kind === "disk" && "verifyTicket" in blobs;
