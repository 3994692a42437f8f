/**
 * Workspace saves and uploads on the server side. The agent asks where to put a save, PUTs the
 * archive to a presigned URL, and reports; the save becomes the session's latest only once the
 * server has checked the stored blob is complete. Old saves beyond the keep count are pruned.
 */
import { CattyError, type SaveInfo, type ServerToAgent } from "../src/protocol/index.ts";
import type { Log } from "../src/lib/log.ts";
import type { BlobStore } from "./blobs/types.ts";
import type { AgentControl } from "./relay.ts";
import type { SaveRow, SessionRow, Store, User } from "./store/types.ts";

/** How long a presigned URL handed out for one transfer stays valid. */
const URL_TTL_SEC = 15 * 60;
/** Uploads not turned into a session within this time are deleted. */
const UPLOAD_TTL_MS = 60 * 60 * 1000;

export interface SaveLimits {
  /** `CATTY_MAX_UPLOAD_BYTES`: cap on the compressed upload of `catty new` (default 100 MB). */
  maxUploadBytes: number;
  /** `CATTY_KEEP_SAVES`: saves kept per session (default 5). */
  keepSaves: number;
}

export const toSaveInfo = (r: SaveRow): SaveInfo => ({
  id: r.id,
  createdAt: r.createdAt,
  size: r.size,
  files: r.files,
  reason: r.reason,
});

export function createSaves(deps: { store: Store; blobs: BlobStore; log: Log; limits: SaveLimits }) {
  const { store, blobs, log, limits } = deps;
  /** Saves handed a URL and not yet reported, by id. */
  const pending = new Map<string, { sessionId: string; key: string; reason: string }>();

  async function prune(sessionId: string): Promise<void> {
    const saves = await store.listSaves(sessionId);
    for (const old of saves.slice(limits.keepSaves)) {
      await store.deleteSave(old.id);
      await blobs.delete(old.key).catch((err: unknown) => log.warn("could not delete old save", { key: old.key, err }));
    }
  }

  return {
    /** Where the agent restores the workspace from on (re)connect, until it has. */
    async restoreFor(row: SessionRow): Promise<{ url: string; size: number | null } | null> {
      if (!row.restoreKey) return null;
      const info = await blobs.stat(row.restoreKey);
      return { url: await blobs.presignGet(row.restoreKey, URL_TTL_SEC), size: info?.size ?? null };
    },

    async control(row: SessionRow, msg: AgentControl, fail: (reason: string) => Promise<void>): Promise<ServerToAgent | null> {
      switch (msg.type) {
        case "save_request": {
          const key = `saves/${row.id}/${msg.id}.tar.gz`;
          pending.set(msg.id, { sessionId: row.id, key, reason: msg.reason });
          try {
            return { type: "save_target", id: msg.id, url: await blobs.presignPut(key, URL_TTL_SEC), error: null };
          } catch (err) {
            pending.delete(msg.id);
            log.error("could not presign a save", { label: row.label, err });
            return { type: "save_target", id: msg.id, url: null, error: "storage unavailable" };
          }
        }
        case "save_done": {
          const p = pending.get(msg.id);
          pending.delete(msg.id);
          if (!p || p.sessionId !== row.id) return { type: "save_result", id: msg.id, ok: false, error: "unknown save" };
          const stored = await blobs.stat(p.key).catch(() => null);
          if (!stored || stored.size !== msg.size) {
            await blobs.delete(p.key).catch(() => {});
            const error = stored ? `stored ${stored.size} bytes, expected ${msg.size}` : "nothing was stored";
            log.warn("save incomplete; the previous save stays the latest", { label: row.label, error });
            return { type: "save_result", id: msg.id, ok: false, error };
          }
          await store.insertSave({
            id: msg.id,
            sessionId: row.id,
            key: p.key,
            createdAt: new Date().toISOString(),
            size: msg.size,
            files: msg.files,
            reason: p.reason,
          });
          await prune(row.id);
          log.info("save stored", { label: row.label, size: msg.size, files: msg.files, reason: p.reason });
          return { type: "save_result", id: msg.id, ok: true, error: null };
        }
        case "restored": {
          const key = row.restoreKey;
          await store.updateSession(row.id, { restoreKey: null });
          if (key?.startsWith("uploads/")) await blobs.delete(key).catch(() => {});
          log.info("workspace restored", { label: row.label, files: msg.files, bytes: msg.bytes });
          return null;
        }
        case "restore_failed":
          await fail(`the workspace could not be restored: ${msg.error}`);
          return { type: "exit_ack" };
        default: {
          const never: never = msg;
          return never;
        }
      }
    },

    async savesOf(sessionId: string): Promise<SaveInfo[]> {
      return (await store.listSaves(sessionId)).map(toSaveInfo);
    },

    async latestDownload(row: SessionRow): Promise<SaveInfo & { url: string }> {
      const latest = (await store.listSaves(row.id))[0];
      if (!latest) {
        throw new CattyError(
          "not_found",
          `Session ${row.label} has no save yet: the first save happens about 10 seconds after it starts.`,
        );
      }
      return { ...toSaveInfo(latest), url: await blobs.presignGet(latest.key, URL_TTL_SEC) };
    },

    /** Streams an upload into storage, refusing it past the cap without keeping anything. */
    async receiveUpload(user: User, req: Request): Promise<{ id: string; size: number }> {
      const declared = Number(req.headers.get("content-length") ?? NaN);
      const cap = limits.maxUploadBytes;
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
      await store.insertUpload({ id, userId: user.id, key, size, createdAt: new Date().toISOString() });
      return { id, size };
    },

    async cleanUploads(): Promise<void> {
      for (const u of await store.staleUploads(new Date(Date.now() - UPLOAD_TTL_MS).toISOString())) {
        await blobs.delete(u.key).catch(() => {});
        await store.deleteUpload(u.id);
      }
    },
  };
}

export type Saves = ReturnType<typeof createSaves>;
