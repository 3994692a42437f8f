/** `POST /v1/uploads`: a `catty new` workspace archive, streamed into storage under its cap. */
import { Hono } from "hono";
import { requireUser, type AppEnv, type RouteDeps } from "./common.ts";

export function uploadRoutes(deps: RouteDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use("*", requireUser(deps.store));
  app.post("/", async (c) => c.json(await deps.saves.receiveUpload(c.var.user, c.req.raw), 201));
  return app;
}
