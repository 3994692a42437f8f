/**
 * `/v1/vault/<ticket>/…`: where saves and uploads send their blobs, and where saves are read
 * back. The signed ticket is the credential, not a bearer token (see `saves.ts`):
 * - `POST …/missing` `{hashes}` → `{missing}`: which blobs the store lacks;
 * - `PUT …/pack` (a pack, `src/lib/snapshot/format.ts`) → `{blobs, bytes}` stored;
 * - `GET …/tar`: a save as a tar (or, when the ticket says so, tar.gz) stream.
 */
import { Hono } from "hono";
import { z } from "zod";
import { MAX_PACK_BYTES, MAX_QUERY_HASHES } from "../../src/lib/snapshot/format.ts";
import { CattyError } from "../../src/protocol/index.ts";
import { jsonBody, readCapped, type AppEnv, type RouteDeps } from "./common.ts";

const MissingQuery = z.object({ hashes: z.array(z.string()).max(MAX_QUERY_HASHES) });

export function vaultRoutes(deps: RouteDeps): Hono<AppEnv> {
  const { saves } = deps;
  const app = new Hono<AppEnv>();
  app.post("/:ticket/missing", ...jsonBody(MissingQuery), async (c) =>
    c.json({ missing: await saves.missing(c.req.param("ticket"), c.req.valid("json").hashes) }),
  );
  app.put("/:ticket/pack", async (c) => {
    const ticket = c.req.param("ticket");
    // Checked before the body is read, so a stale link costs no upload.
    await saves.missing(ticket, []);
    const pack = await readCapped(c.req.raw, MAX_PACK_BYTES, () => new CattyError("too_large", `A pack may carry at most ${MAX_PACK_BYTES} bytes.`));
    return c.json(await saves.putPack(ticket, pack));
  });
  app.get("/:ticket/tar", async (c) => {
    const { stream, gzip, name } = await saves.readTar(c.req.param("ticket"));
    return new Response(stream, {
      headers: {
        "Content-Type": gzip ? "application/gzip" : "application/x-tar",
        // The name is a session label (checked when the ticket is read): nothing to escape.
        "Content-Disposition": name ? `attachment; filename="${name}.tar${gzip ? ".gz" : ""}"` : "attachment",
        "Cache-Control": "no-store",
      },
    });
  });
  return app;
}
