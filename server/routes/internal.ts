/**
 * `/v1/internal`: what replicas ask of each other (see replicas.ts), each request signed with the
 * replicas' internal key for this replica, once (`X-Catty-Internal`); anything else is refused.
 * Mounted only where there are replicas (PostgreSQL), on the main listener or on the internal one. The session's relay
 * replica is asked to serve a forwarded attach, a stop, a handed file; any replica is told that a
 * session moved or ended, and the replica that started a session hands over its program's
 * environment; a replica that starts asks what the others are (`/replica`).
 */
import { Hono } from "hono";
import { z } from "zod";
import { CattyError, isLive } from "../../src/protocol/index.ts";
import { INTERNAL_HEADER } from "../replicas.ts";
import type { SessionRow } from "../store/types.ts";
import { jsonBody, MAX_JSON_BYTES, readCapped, upgradeClient, type AppEnv, type RouteDeps } from "./common.ts";

const HandedFile = z.object({ name: z.string().min(1).max(255), url: z.string().min(1).max(4096), size: z.number().int().nonnegative() });

export function internalRoutes(deps: RouteDeps): Hono<AppEnv> {
  const { store, lifecycle, relay, replicas } = deps;
  const app = new Hono<AppEnv>();
  app.use("*", async (c, next) => {
    const url = new URL(c.req.url);
    // The signature binds the body: it is read whole first (small: JSON), and handed on as read.
    let body: Uint8Array = new Uint8Array(0);
    if (c.req.raw.body) {
      body = await readCapped(c.req.raw, MAX_JSON_BYTES, () => new CattyError("too_large", `The request body is larger than ${MAX_JSON_BYTES} bytes.`));
      c.req.raw = new Request(c.req.raw, { body });
    }
    if (!replicas.verify(c.req.method, url.pathname + url.search, body, c.req.header(INTERNAL_HEADER))) {
      throw new CattyError("forbidden", "Only another replica of this server may call this (each signed request works once).");
    }
    await next();
  });
  const sessionOf = async (id: string): Promise<SessionRow> => {
    const row = await store.sessionById(id);
    if (!row) throw new CattyError("not_found", `No session ${id}.`);
    return row;
  };

  // A client that landed on another replica, passed through to this one (the relay replica).
  app.get("/sessions/:id/attach", async (c) => {
    return upgradeClient(c, relay, await sessionOf(c.req.param("id")), c.req.query("view") === "1");
  });

  app.post("/sessions/:id/stop", async (c) => {
    const row = await sessionOf(c.req.param("id"));
    if (isLive(row.status)) await lifecycle.stop(row, { here: true });
    return c.json({ ok: true });
  });

  app.post("/sessions/:id/files", ...jsonBody(HandedFile), async (c) => {
    const row = await sessionOf(c.req.param("id"));
    return c.json({ path: await relay.putFile(row.id, c.req.valid("json")) });
  });

  app.post("/sessions/:id/moved", async (c) => {
    const row = await sessionOf(c.req.param("id"));
    // A late word: the session came back here meanwhile.
    if (row.relayReplica !== replicas.id) {
      deps.log.debug("the session moved to another replica", { label: row.label, replica: row.relayReplica });
      relay.moved(row.id);
      lifecycle.movedAway(row.id);
    }
    return c.json({ ok: true });
  });

  app.post("/sessions/:id/ended", async (c) => {
    const row = await sessionOf(c.req.param("id"));
    if (!isLive(row.status)) relay.endClients(row.id, { type: "exit", code: row.exitCode ?? 1, status: row.status, reason: row.endReason });
    return c.json({ ok: true });
  });

  // What this replica says of itself to a replica that starts (see topology.ts).
  app.get("/replica", (c) => c.json(replicas.about));

  app.post("/sessions/:id/handover", (c) => c.json({ env: lifecycle.handOver(c.req.param("id")) }));

  return app;
}
