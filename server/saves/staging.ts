/**
 * Blobs the server keeps whole for a while: archive uploads (`catty new` from before
 * content-addressed uploads) streamed into storage within their cap, and files handed to a
 * running session, kept until its agent has fetched them.
 */
import { CattyError } from "../../src/protocol/index.ts";
import type { Log } from "../../src/lib/log.ts";
import type { BlobStore } from "../blobs/types.ts";
import type { SessionRow, Store, User } from "../store/types.ts";

export interface StagingDeps {
  store: Pick<Store, "insertUpload">;
  blobs: Pick<BlobStore, "put" | "delete" | "presignGet">;
  log: Log;
  /** Cap on an upload's bytes. */
  maxUploadBytes: number;
  ttlSec: number;
  now: () => number;
}

export function createStaging(deps: StagingDeps) {
  const { store, blobs, log, ttlSec, now } = deps;
  return {
    /** Streams an archive upload into storage, refusing it past the cap without keeping anything. */
    async receiveUpload(user: User, req: Request): Promise<{ id: string; size: number }> {
      const declared = Number(req.headers.get("content-length") ?? NaN);
      const cap = deps.maxUploadBytes;
      const tooLarge = (): CattyError =>
        new CattyError(
          "too_large",
          `The upload is larger than this server's cap of ${Math.round(cap / 1e6)} MB.`,
          "Exclude large paths with .gitignore, or start with --no-upload.",
        );
      if (Number.isFinite(declared) && declared > cap) throw tooLarge();
      if (!req.body) throw new CattyError("bad_request", "The upload is empty.");
      const id = crypto.randomUUID();
      const key = `uploads/${id}.tar.gz`;
      let size = 0;
      const counted = req.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, ctl) {
            size += chunk.length;
            if (size > cap) ctl.error(tooLarge());
            else ctl.enqueue(chunk);
          },
        }),
      );
      try {
        await blobs.put(key, counted);
      } catch (err) {
        await blobs.delete(key).catch(() => {});
        if (size > cap) throw tooLarge();
        throw err;
      }
      await store.insertUpload({ id, userId: user.id, key, size, createdAt: new Date(now()).toISOString() });
      return { id, size };
    },

    /**
     * Keeps a file handed to a running session (≤ `FILE_MAX_BYTES`, read whole) until its agent
     * has fetched it: resolves to the agent's download URL and a `drop` that deletes it.
     * Leftovers (a server that died meanwhile) go with the next sweep.
     */
    async stageFile(row: SessionRow, bytes: Uint8Array): Promise<{ url: string; drop(): Promise<void> }> {
      const key = `files/${row.id}/${crypto.randomUUID()}`;
      await blobs.put(key, bytes);
      return {
        url: await blobs.presignGet(key, ttlSec),
        drop: () => blobs.delete(key).catch((err: unknown) => log.warn("could not delete a handed file's blob", { key, err })),
      };
    },
  };
}
