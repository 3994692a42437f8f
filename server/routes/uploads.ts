/**
 * `/v1/uploads`: a `catty new` workspace. `POST /start` begins an upload whose blobs go to the
 * vault route, `POST /<id>/commit` checks it is complete; `POST /` takes a `.tar.gz` archive
 * instead, streamed into storage under its cap.
 */
import { Hono } from "hono";
import { UploadCommit } from "../../src/protocol/index.ts";
import { jsonBody, requireUser, type AppEnv, type RouteDeps } from "./common.ts";

export function uploadRoutes(deps: RouteDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use("*", requireUser(deps.store));
  app.post("/", async (c) => c.json(await deps.saves.receiveUpload(c.var.user, c.req.raw), 201));
  app.post("/start", async (c) => c.json(await deps.saves.startUpload(c.var.user), 201));
  app.post("/:id/commit", ...jsonBody(UploadCommit), async (c) =>
    c.json(await deps.saves.commitUpload(c.var.user, c.req.param("id"), c.req.valid("json"))),
  );
  return app;
}
