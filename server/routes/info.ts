/**
 * What the server says about itself: `/healthz` (open; with `?challenge=<hex>` it proves it holds
 * this data dir's server key), `/v1/whoami` and `/v1/config` (the limits the CLI checks first),
 * `DELETE /v1/token` (`catty logout`: the token the request carries is revoked).
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { Hono } from "hono";
import { VERSION } from "../../src/lib/version.ts";
import { CattyError, type UsageReport } from "../../src/protocol/index.ts";
import { usageMonth } from "../anthropic.ts";
import type { BlobStore } from "../blobs/types.ts";
import type { ServerMetrics } from "../metrics.ts";
import { tokenTotal, type Store } from "../store/types.ts";
import { tokenIdOfHash } from "../../src/lib/token-id.ts";
import { hashToken } from "../tokens.ts";
import { bearer, requireUser, type AppEnv, type RouteDeps } from "./common.ts";

const CHALLENGE = /^[0-9a-fA-F]{16,256}$/;

/**
 * `proof` = HMAC-SHA256 with the contents of `<data-dir>/server-key` (64 hex characters) as the
 * key and the challenge string as the message, as lowercase hex.
 */
export function healthProof(serverKey: string, challenge: string): string {
  return createHmac("sha256", serverKey).update(challenge).digest("hex");
}

export function healthRoutes(deps: RouteDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", (c) => {
    const challenge = c.req.query("challenge");
    if (challenge === undefined) return c.json({ ok: true, version: VERSION });
    if (!CHALLENGE.test(challenge)) throw new CattyError("bad_request", "The challenge must be 16 to 256 hex digits.");
    return c.json({ ok: true, version: VERSION, proof: healthProof(deps.serverKey, challenge) });
  });
  return app;
}

/** How long `/readyz` waits for the database and the storage. */
const READY_TIMEOUT_MS = 3000;

/**
 * `/readyz`: 200 when the database and the storage answer (within 3 s each), else 503 naming
 * what did not; 503 too once the server is draining before it stops.
 */
export function readyRoutes(deps: { store: Store; blobs: BlobStore; draining(): boolean }): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", async (c) => {
    if (deps.draining()) return c.json({ ok: false, problems: ["shutting down"] }, 503);
    const check = async (what: string, probe: () => Promise<unknown>): Promise<string | null> => {
      let timer: Timer | undefined;
      const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS)));
      try {
        await Promise.race([probe(), late]);
        return null;
      } catch (err) {
        return `${what}: ${err instanceof Error ? err.message : String(err)}`;
      } finally {
        clearTimeout(timer);
      }
    };
    const problems = (
      await Promise.all([check("database", () => deps.store.countUsers()), check("storage", () => deps.blobs.stat("readyz/probe"))])
    ).filter((p): p is string => p !== null);
    return problems.length === 0 ? c.json({ ok: true }) : c.json({ ok: false, problems }, 503);
  });
  return app;
}

/** `/metrics` in Prometheus' text format; with a token configured, only for its bearer. */
export function metricsRoutes(metrics: ServerMetrics, token: string | null): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", async (c) => {
    if (token !== null && !safeEqual(c.req.header("authorization") ?? "", `Bearer ${token}`)) {
      throw new CattyError("unauthorized", "The metrics need the bearer token the server was given (CATTY_METRICS_TOKEN).");
    }
    return c.body(await metrics.text(), 200, { "Content-Type": metrics.registry.contentType });
  });
  return app;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A user's usage in `month`, per session and in all, with their quota. */
export async function usageReport(store: Store, userId: string, month: string): Promise<UsageReport> {
  const rows = await store.usageOf(userId, month);
  const sessions = rows.map((r) => ({ label: r.label, requests: r.requests, input: r.input, output: r.output, cacheCreation: r.cacheCreation, cacheRead: r.cacheRead, tokens: tokenTotal(r) }));
  const sum = (k: "requests" | "input" | "output" | "cacheCreation" | "cacheRead" | "tokens"): number => sessions.reduce((a, s) => a + s[k], 0);
  return {
    month,
    quota: await store.tokenQuota(userId),
    total: { requests: sum("requests"), input: sum("input"), output: sum("output"), cacheCreation: sum("cacheCreation"), cacheRead: sum("cacheRead"), tokens: sum("tokens") },
    sessions,
  };
}

export function accountRoutes(deps: RouteDeps): Hono<AppEnv> {
  // Mounted at /v1 beside other routers: the auth goes on each route, not on "/v1/*".
  const app = new Hono<AppEnv>();
  const user = requireUser(deps.store);
  app.get("/whoami", user, (c) => c.json({ user: c.var.user.name }));
  app.get("/config", user, (c) => c.json({ maxUploadBytes: deps.limits.maxUploadBytes }));
  app.get("/regions", user, (c) => c.json(deps.provider.regions.map((r, i) => ({ id: r.id, name: r.name, default: i === 0 }))));
  app.get("/usage", user, async (c) => {
    const month = c.req.query("month") ?? usageMonth();
    if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(month)) throw new CattyError("bad_request", `"${month}" is not a month (YYYY-MM).`);
    return c.json(await usageReport(deps.store, c.var.user.id, month));
  });
  // Revokes the API token this request carries, and signs out the browsers it signed in.
  app.delete("/token", user, async (c) => {
    const token = bearer(c.req.header("authorization"));
    if (!token) throw new CattyError("bad_request", "Only an API token (Authorization: Bearer) is revoked this way.", "A browser signs out with its Sign out button.");
    const hash = hashToken(token);
    await deps.store.revokeToken(hash);
    return c.json({ revoked: tokenIdOfHash(hash) });
  });
  return app;
}
