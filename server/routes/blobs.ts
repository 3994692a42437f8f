/**
 * `/v1/blobs/<ticket>`: presigned transfers of the disk blob store (S3 URLs point at the bucket
 * instead). The signed ticket is the credential, not a bearer token. Upload tickets are accepted
 * only while the save they were handed out for is in flight, and carry that save's size cap.
 */
import { Hono } from "hono";
import { handleBlobRequest, type DiskBlobStore } from "../blobs/disk.ts";
import type { AppEnv, RouteDeps } from "./common.ts";

export function blobRoutes(deps: RouteDeps, disk: DiskBlobStore): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const opts = {
    maxPutBytes: Math.max(deps.limits.maxSaveBytes, deps.limits.maxUploadBytes),
    acceptPut: (key: string) => deps.saves.expectsUpload(key),
  };
  app.all("/:ticket", (c) => handleBlobRequest(c.req.raw, disk, opts));
  return app;
}
