/**
 * What the server says about itself: `/healthz` (open; with `?challenge=<hex>` it proves it holds
 * this data dir's server key), `/v1/whoami` and `/v1/config` (the limits the CLI checks first).
 */
import { createHmac } from "node:crypto";
import { Hono } from "hono";
import { VERSION } from "../../src/lib/version.ts";
import { CattyError } from "../../src/protocol/index.ts";
import { requireUser, type AppEnv, type RouteDeps } from "./common.ts";

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

export function accountRoutes(deps: RouteDeps): Hono<AppEnv> {
  // Mounted at /v1 beside other routers: the auth goes on each route, not on "/v1/*".
  const app = new Hono<AppEnv>();
  const user = requireUser(deps.store);
  app.get("/whoami", user, (c) => c.json({ user: c.var.user.name }));
  app.get("/config", user, (c) => c.json({ maxUploadBytes: deps.limits.maxUploadBytes }));
  return app;
}
