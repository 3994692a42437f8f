/**
 * `/v1/blobs/<ticket>`: presigned downloads from the disk blob store (S3 URLs point at the bucket
 * instead): archive saves and uploads from before content-addressed saves, and files handed to a
 * session. The signed ticket is the credential, not a bearer token. Saves and uploads are sent
 * through `/v1/vault/…`, so no upload is taken here.
 */
import { Hono } from "hono";
import { handleBlobRequest, type DiskBlobStore } from "../blobs/disk.ts";
import type { AppEnv, RouteDeps } from "./common.ts";

export function blobRoutes(deps: RouteDeps, disk: DiskBlobStore): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const opts = {
    maxPutBytes: Math.max(deps.limits.maxSaveBytes, deps.limits.maxUploadBytes),
    // Saves and uploads go through the vault: this server hands out no upload links for blobs.
    acceptPut: () => false,
  };
  app.all("/:ticket", (c) => handleBlobRequest(c.req.raw, disk, opts));
  return app;
}
