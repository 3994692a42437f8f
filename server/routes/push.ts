/**
 * `/v1/push`: the server's VAPID public key (for `PushManager.subscribe`), and the user's push
 * subscriptions — added by a device's Notify me, listed and removed in the dashboard (server/push.ts).
 */
import { Hono } from "hono";
import { z } from "zod";
import { CattyError } from "../../src/protocol/index.ts";
import { PushSubscriptionJson, type WebPush } from "../push.ts";
import { jsonBody, requireUser, type AppEnv, type RouteDeps } from "./common.ts";

export const PushDevice = z.object({ id: z.string(), push: z.string(), createdAt: z.string() });

export function pushRoutes(deps: Pick<RouteDeps, "store">, push: WebPush): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const user = requireUser(deps.store);
  app.get("/key", user, async (c) => c.json({ publicKey: await push.publicKey() }));
  // A device as listed: its push service's origin, never the endpoint (a capability of its own).
  app.get("/subscriptions", user, async (c) => c.json((await push.list(c.var.user.id)).map((s) => ({ id: s.id, push: new URL(s.endpoint).origin, createdAt: s.createdAt }))));
  app.post("/subscriptions", user, ...jsonBody(PushSubscriptionJson), async (c) => {
    const row = await push.subscribe(c.var.user.id, c.req.valid("json"));
    return c.json({ id: row.id, push: new URL(row.endpoint).origin, createdAt: row.createdAt }, 201);
  });
  app.delete("/subscriptions/:id", user, async (c) => {
    if (!(await push.unsubscribe(c.var.user.id, c.req.param("id")))) throw new CattyError("not_found", "No such device.", "Reload the dashboard to see your devices.");
    return c.json({ removed: c.req.param("id") });
  });
  return app;
}
