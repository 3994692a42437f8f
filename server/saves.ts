/**
 * Workspace saves and uploads on the server side. The agent asks where to put a save, PUTs the
 * archive to a presigned URL, and reports; the save becomes the session's latest only once the
 * server has checked the stored blob is complete. Old saves beyond the keep count are pruned.
 *
 * A session machine runs code an AI wrote, so an agent is not trusted to be frugal: a session has
 * at most one save in flight, each save is capped (`maxSaveBytes`: the disk store's upload ticket
 * carries the cap; S3 presigned PUTs cannot carry one, so the size is checked when the agent
 * reports and an oversized save is deleted), a save the agent never reports expires with its URL,
 * and `sweep` (run periodically) deletes what nobody will use: blobs of saves that were never
 * completed, and uploads never turned into a session.
 */
import { CattyError, type SaveInfo, type ServerToAgent } from "../src/protocol/index.ts";
import type { Log } from "../src/lib/log.ts";
import type { BlobStore } from "./blobs/types.ts";
import type { AgentControl } from "./relay.ts";
import type { SaveRow, SessionRow, Store, User } from "./store/types.ts";

export interface SaveLimits {
  /** Cap on the compressed upload of `catty new`. */
  maxUploadBytes: number;
  /** Cap on one compressed save. */
  maxSaveBytes: number;
  /** Saves kept per session. */
  keepSaves: number;
}

export interface SavesDeps {
  store: Store;
  blobs: BlobStore;
  log: Log;
  limits: SaveLimits;
  /** How long a presigned URL stays valid; a save not reported by then is abandoned. */
  transferTtlMs: number;
  /** Uploads not turned into a session within this time are deleted (default 1 h). */
  uploadTtlMs?: number;
  /** The clock, for tests. */
  now?: () => number;
}

/** A save the agent was given a URL for and has not reported yet. */
interface PendingSave {
  saveId: string;
  key: string;
  reason: string;
  expiresAt: number;
}

export const toSaveInfo = (r: SaveRow): SaveInfo => ({
  id: r.id,
  createdAt: r.createdAt,
  size: r.size,
  files: r.files,
  reason: r.reason,
});

const ageOf = (modifiedAt: number | undefined, now: number): number => (modifiedAt === undefined ? 0 : now - modifiedAt);

export function createSaves(deps: SavesDeps) {
  const { store, blobs, log, limits } = deps;
  const now = deps.now ?? Date.now;
  const ttlSec = Math.max(1, Math.ceil(deps.transferTtlMs / 1000));
  const uploadTtlMs = deps.uploadTtlMs ?? 60 * 60 * 1000;
  /** At most one save in flight per session, by session id. */
  const pending = new Map<string, PendingSave>();

  const forget = async (key: string): Promise<void> => {
    await blobs.delete(key).catch((err: unknown) => log.warn("could not delete a blob", { key, err }));
  };

  /** Drops a session's save in flight, and whatever of it was stored. */
  async function abandon(sessionId: string): Promise<void> {
    const p = pending.get(sessionId);
    if (!p) return;
    pending.delete(sessionId);
    await forget(p.key);
  }

  async function prune(sessionId: string): Promise<void> {
    const saves = await store.listSaves(sessionId);
    for (const old of saves.slice(limits.keepSaves)) {
      await store.deleteSave(old.id);
      await forget(old.key);
    }
  }

  async function saveRequest(row: SessionRow, msg: Extract<AgentControl, { type: "save_request" }>): Promise<ServerToAgent> {
    const current = pending.get(row.id);
    if (current && current.saveId !== msg.id && current.expiresAt > now()) {
      return {
        type: "save_target",
        id: msg.id,
        url: null,
        error: `save ${current.saveId} is still in progress: one save at a time`,
      };
    }
    if (current && current.saveId !== msg.id) await abandon(row.id);
    const key = `saves/${row.id}/${msg.id}.tar.gz`;
    pending.set(row.id, { saveId: msg.id, key, reason: msg.reason, expiresAt: now() + ttlSec * 1000 });
    try {
      const url = await blobs.presignPut(key, ttlSec, { maxBytes: limits.maxSaveBytes });
      return { type: "save_target", id: msg.id, url, error: null };
    } catch (err) {
      pending.delete(row.id);
      log.error("could not presign a save", { label: row.label, err });
      return { type: "save_target", id: msg.id, url: null, error: "storage unavailable" };
    }
  }

  async function saveDone(row: SessionRow, msg: Extract<AgentControl, { type: "save_done" }>): Promise<ServerToAgent> {
    const p = pending.get(row.id);
    if (!p || p.saveId !== msg.id) return { type: "save_result", id: msg.id, ok: false, error: "unknown save" };
    const refuse = async (error: string): Promise<ServerToAgent> => {
      await abandon(row.id);
      log.warn("save refused; the previous save stays the latest", { label: row.label, error });
      return { type: "save_result", id: msg.id, ok: false, error };
    };
    const stored = await blobs.stat(p.key).catch(() => null);
    if (!stored) return refuse("nothing was stored");
    // S3 cannot cap a presigned PUT, so the cap is checked here too.
    if (stored.size > limits.maxSaveBytes) return refuse(`the save is ${stored.size} bytes, over this server's cap of ${limits.maxSaveBytes}`);
    if (stored.size !== msg.size) return refuse(`stored ${stored.size} bytes, expected ${msg.size}`);
    await store.insertSave({
      id: msg.id,
      sessionId: row.id,
      key: p.key,
      createdAt: new Date(now()).toISOString(),
      size: msg.size,
      files: msg.files,
      reason: p.reason,
    });
    pending.delete(row.id);
    await prune(row.id);
    log.info("save stored", { label: row.label, size: msg.size, files: msg.files, reason: p.reason });
    return { type: "save_result", id: msg.id, ok: true, error: null };
  }

  return {
    /** Where the agent restores the workspace from on (re)connect, until it has. */
    async restoreFor(row: SessionRow): Promise<{ url: string; size: number | null } | null> {
      if (!row.restoreKey) return null;
      const info = await blobs.stat(row.restoreKey);
      return { url: await blobs.presignGet(row.restoreKey, ttlSec), size: info?.size ?? null };
    },

    async control(row: SessionRow, msg: AgentControl, fail: (reason: string) => Promise<void>): Promise<ServerToAgent | null> {
      switch (msg.type) {
        case "save_request":
          return saveRequest(row, msg);
        case "save_done":
          return saveDone(row, msg);
        case "restored": {
          const key = row.restoreKey;
          await store.updateSession(row.id, { restoreKey: null });
          if (key?.startsWith("uploads/")) await forget(key);
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

    /**
     * The session's agent link changed (dropped, or a new one said hello): a save it asked for on
     * the old link is abandoned (the agent gives up on requests when its link drops).
     */
    agentReconnected(sessionId: string): void {
      void abandon(sessionId);
    },

    /** Whether an upload to `key` is expected now: the blob route refuses any other. */
    expectsUpload(key: string): boolean {
      for (const p of pending.values()) if (p.key === key) return p.expiresAt > now();
      return false;
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
      return { ...toSaveInfo(latest), url: await blobs.presignGet(latest.key, ttlSec) };
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

    /**
     * Deletes what nobody will use: saves in flight past their URL's expiry, blobs under `saves/`
     * that belong to no stored save and are older than a URL lives, uploads not turned into a
     * session within their time, and upload blobs nothing refers to.
     */
    async sweep(): Promise<{ deleted: string[] }> {
      const t = now();
      const deleted: string[] = [];
      const drop = async (key: string): Promise<void> => {
        await forget(key);
        deleted.push(key);
      };
      for (const [sessionId, p] of [...pending]) {
        if (p.expiresAt > t) continue;
        pending.delete(sessionId);
        await drop(p.key);
      }
      const inFlight = new Set([...pending.values()].map((p) => p.key));
      for (const blob of await blobs.list("saves/")) {
        if (inFlight.has(blob.key) || ageOf(blob.modifiedAt, t) < ttlSec * 1000) continue;
        if (!(await store.saveKeyExists(blob.key))) await drop(blob.key);
      }
      for (const u of await store.staleUploads(new Date(t - uploadTtlMs).toISOString())) {
        await store.deleteUpload(u.id);
        await drop(u.key);
      }
      const restoring = new Set((await store.liveSessions()).map((r) => r.restoreKey));
      for (const blob of await blobs.list("uploads/")) {
        if (restoring.has(blob.key) || ageOf(blob.modifiedAt, t) < uploadTtlMs) continue;
        if (!(await store.uploadKeyExists(blob.key))) await drop(blob.key);
      }
      for (const blob of await blobs.list("files/")) {
        if (ageOf(blob.modifiedAt, t) >= ttlSec * 1000) await drop(blob.key);
      }
      if (deleted.length > 0) log.info("swept unused blobs", { count: deleted.length });
      return { deleted };
    },
  };
}

export type Saves = ReturnType<typeof createSaves>;
