/**
 * Workspace saves and uploads on the server side. A save is content-addressed (see
 * `vault/vault.ts`): the agent asks to save, gets a URL for its blobs (`/v1/vault/<ticket>`),
 * sends those the store lacks, and reports the save's root; the save becomes the session's
 * latest only once the server has checked that everything under that root is stored. `catty new`
 * uploads the same way (`startUpload`, `commitUpload`). Saves are read back as tar streams from a
 * read ticket (`restoreFor`, `download`). Saves from before content-addressed saves (one
 * `.tar.gz` blob each) are still read.
 *
 * A session machine runs code an AI wrote, so an agent is not trusted to be frugal: a session has
 * at most one save in flight, a save may add at most `maxSaveBytes`, a save the agent never
 * reports expires with its ticket, and `sweep` (run periodically) applies retention
 * (`vault/retention.ts`) and collects blobs no kept save refers to. A collection never runs for
 * a user while one of their saves or uploads is in flight, and a new one waits for it.
 */
import { z } from "zod";
import { CattyError, Label, type SaveInfo, type ServerToAgent, type UploadCommit, type UploadStart } from "../src/protocol/index.ts";
import type { ServerMetrics } from "./metrics.ts";
import type { Log } from "../src/lib/log.ts";
import type { BlobStore } from "./blobs/types.ts";
import type { AgentControl } from "./relay.ts";
import type { SaveRow, SessionRow, Store, TransferRow, User } from "./store/types.ts";
import { Hash } from "../src/lib/snapshot/format.ts";
import { savesToKeep } from "./vault/retention.ts";
import { signTicket, verifyTicket } from "./tickets.ts";
import type { Vault } from "./vault/vault.ts";

export interface SaveLimits {
  /** Cap on what one `catty new` upload may add (bytes of new content). */
  maxUploadBytes: number;
  /** Cap on what one save may add (bytes of new content). */
  maxSaveBytes: number;
  /** Days a session's daily saves are kept (its latest save is kept as long as the session). */
  retentionDays: number;
}

export interface SavesDeps {
  store: Store;
  blobs: BlobStore;
  vault: Vault;
  /** Signs the tickets of `/v1/vault/<ticket>` (see `vault/tickets.ts`). */
  ticketKey: Buffer;
  log: Log;
  limits: SaveLimits;
  /** How long a ticket stays valid; a save not reported by then is abandoned. */
  transferTtlMs: number;
  /** Uploads not turned into a session within this time are deleted (default 1 h). */
  uploadTtlMs?: number;
  /** The clock, for tests. */
  now?: () => number;
  /** Save durations, outcomes and bytes stored are counted here. */
  metrics?: Pick<ServerMetrics, "saveSeconds" | "saves" | "savedBytes">;
  /** Leases across replicas (default: this process's alone). */
  leases?: Leases;
}

/**
 * Takes and releases named leases shared by every replica (see replicas.ts): a collection of a
 * user's blobs holds `collect:<user>`.
 */
export interface Leases {
  lease(name: string): Promise<boolean>;
  release(name: string): Promise<void>;
}

const VAULT_KEY = "vault:";
/** A save's or upload's key in the database: `vault:<root>` for content-addressed ones, else the archive's blob key. */
export const vaultRoot = (key: string | null): string | null => (key?.startsWith(VAULT_KEY) ? key.slice(VAULT_KEY.length) : null);

const WriteTicket = z.object({ w: z.string() });
const ReadTicket = z.object({
  u: z.string(),
  r: Hash,
  z: z.literal(1).optional(),
  t: z.number().int(),
  n: Label.optional(),
  /** The stream is followed by its files' chunks (`vault.tar`'s manifest): a restore's. */
  m: z.literal(1).optional(),
});

export const toSaveInfo = (r: SaveRow): SaveInfo => ({
  id: r.id,
  createdAt: r.createdAt,
  size: r.size,
  files: r.files,
  reason: r.reason,
  added: r.added,
});

/**
 * A pull stream over an async generator, once it has produced its first piece: an error before
 * that is thrown here (the caller can still answer with it), an error after it errors the stream.
 */
async function streamOf(gen: AsyncGenerator<Uint8Array>): Promise<ReadableStream<Uint8Array>> {
  let first: IteratorResult<Uint8Array> | null = await gen.next();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = first ?? (await gen.next());
        first = null;
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      } catch (err) {
        controller.error(err);
      }
    },
    async cancel() {
      await gen.return(undefined);
    },
  });
}

/** How a save is read out: gzipped or not, its files' times, the download's name, and the manifest after it. */
interface ReadOptions {
  gzip: boolean;
  mtime: string;
  name?: string;
  manifest?: boolean;
}

/** A save's transfer id: the agent names its saves, so only within its session. */
const saveTransferId = (sessionId: string, saveId: string): string => `save:${sessionId}:${saveId}`;

const ageOf = (modifiedAt: number | undefined, now: number): number => (modifiedAt === undefined ? 0 : now - modifiedAt);

export function createSaves(deps: SavesDeps) {
  const { store, blobs, vault, log, limits } = deps;
  const now = deps.now ?? Date.now;
  const ttlSec = Math.max(1, Math.ceil(deps.transferTtlMs / 1000));
  const uploadTtlMs = deps.uploadTtlMs ?? 60 * 60 * 1000;
  const leases: Leases = deps.leases ?? { lease: async () => true, release: async () => {} };
  /**
   * Saves and uploads in flight are rows of the store (any replica may take their packs); this
   * replica remembers which blobs the packs it took carried, so that checking the save does not
   * look them up again.
   */
  const storedHere = new Map<string, { ids: Set<string>; expiresAt: number }>();
  /** Collections running in this process, by user. */
  const collecting = new Map<string, Promise<unknown>>();
  const collectLease = (userId: string): string => `collect:${userId}`;

  const forget = async (key: string): Promise<void> => {
    await blobs.delete(key).catch((err: unknown) => log.warn("could not delete a blob", { key, err }));
  };

  const live = (t: TransferRow | null): t is TransferRow => t !== null && t.expiresAt > now();
  const storedBy = (t: TransferRow): Set<string> => storedHere.get(t.id)?.ids ?? new Set();

  /** Drops a session's save in flight; blobs it stored are collected later unless a save refers to them. */
  async function abandon(sessionId: string): Promise<void> {
    await store.deleteSessionTransfers(sessionId);
  }

  /** Waits while another replica collects the user's blobs (it began before this transfer was recorded). */
  async function collectionDone(userId: string): Promise<void> {
    const deadline = now() + deps.transferTtlMs;
    while (now() < deadline && (await store.leaseHeld(collectLease(userId), new Date(now()).toISOString()))) await Bun.sleep(100);
  }

  const writeUrl = (id: string): string => `/v1/vault/${signTicket(deps.ticketKey, { w: id }, ttlSec, now())}`;

  /** A URL the holder may fetch the save under `root` from, as tar (or tar.gz, named after `name`), until it expires. */
  const readUrl = (userId: string, root: string, opts: ReadOptions): string => {
    const payload = {
      u: userId,
      r: root,
      t: Math.floor(Date.parse(opts.mtime) / 1000) || 0,
      ...(opts.gzip ? { z: 1 } : {}),
      ...(opts.name ? { n: opts.name } : {}),
      ...(opts.manifest ? { m: 1 } : {}),
    };
    return `/v1/vault/${signTicket(deps.ticketKey, payload, ttlSec, now())}/tar`;
  };

  /** Where a stored save or upload (`key`) is read from. */
  const urlOf = async (userId: string, key: string, opts: ReadOptions): Promise<string> => {
    const root = vaultRoot(key);
    return root ? readUrl(userId, root, opts) : blobs.presignGet(key, ttlSec);
  };

  /** Applies retention to one session's saves; resolves to the ones kept. */
  async function prune(rows: SaveRow[]): Promise<SaveRow[]> {
    const keep = savesToKeep(rows, now(), limits.retentionDays);
    for (const old of rows) {
      if (keep.has(old.id)) continue;
      await store.deleteSave(old.id);
      if (!vaultRoot(old.key)) await forget(old.key);
    }
    return rows.filter((r) => keep.has(r.id));
  }

  async function begin(kind: TransferRow["kind"], id: string, userId: string, sessionId: string | null, reason: string): Promise<string> {
    await collecting.get(userId);
    // Recorded first, then any collection waited for: a collection checks for transfers after
    // taking its lease, so one of the two sees the other.
    await store.insertTransfer({
      id,
      kind,
      userId,
      sessionId,
      reason,
      startedAt: now(),
      expiresAt: now() + ttlSec * 1000,
      added: 0,
      cap: kind === "save" ? limits.maxSaveBytes : limits.maxUploadBytes,
    });
    await collectionDone(userId);
    return writeUrl(id);
  }

  async function saveRequest(row: SessionRow, msg: Extract<AgentControl, { type: "save_request" }>): Promise<ServerToAgent> {
    const current = await store.sessionTransfer(row.id);
    if (live(current) && current.id !== saveTransferId(row.id, msg.id)) {
      return { type: "save_target", id: msg.id, url: null, error: `save ${current.id.slice(current.id.lastIndexOf(":") + 1)} is still in progress: one save at a time` };
    }
    await abandon(row.id);
    return { type: "save_target", id: msg.id, url: await begin("save", saveTransferId(row.id, msg.id), row.userId, row.id, msg.reason), error: null };
  }

  async function saveDone(row: SessionRow, msg: Extract<AgentControl, { type: "save_done" }>): Promise<ServerToAgent> {
    const t = await store.transferById(saveTransferId(row.id, msg.id));
    if (!t || t.kind !== "save" || t.sessionId !== row.id) return { type: "save_result", id: msg.id, ok: false, error: "unknown save" };
    try {
      await vault.verify(row.userId, msg.root, storedBy(t));
    } catch (err) {
      await abandon(row.id);
      const error = err instanceof CattyError ? err.message : String(err);
      deps.metrics?.saves.inc({ outcome: "refused" });
      log.warn("save refused; the previous save stays the latest", { label: row.label, error });
      return { type: "save_result", id: msg.id, ok: false, error };
    }
    await store.insertSave({
      id: msg.id,
      sessionId: row.id,
      key: `${VAULT_KEY}${msg.root}`,
      createdAt: new Date(now()).toISOString(),
      size: msg.size,
      files: msg.files,
      reason: t.reason,
      added: t.added,
    });
    await abandon(row.id);
    storedHere.delete(t.id);
    await prune(await store.listSaves(row.id));
    deps.metrics?.saves.inc({ outcome: "stored" });
    deps.metrics?.saveSeconds.observe((now() - t.startedAt) / 1000);
    log.info("save stored", { label: row.label, files: msg.files, size: msg.size, added: t.added, reason: t.reason });
    return { type: "save_result", id: msg.id, ok: true, error: null };
  }

  /** The transfer a write ticket names, if it is still wanted. */
  async function transferOf(ticket: string): Promise<TransferRow> {
    const { w } = verifyTicket(deps.ticketKey, ticket, WriteTicket, { nowMs: now() });
    const t = await store.transferById(w);
    if (!live(t)) {
      throw new CattyError("forbidden", "This link is no longer wanted (the save or upload was abandoned or has expired). Ask the server for a new one.");
    }
    return t;
  }

  return {
    /** Where the agent restores the workspace from on (re)connect, until it has. */
    async restoreFor(row: SessionRow): Promise<{ url: string; size: number | null } | null> {
      if (!row.restoreKey) return null;
      if (vaultRoot(row.restoreKey)) return { url: await urlOf(row.userId, row.restoreKey, { gzip: false, mtime: row.createdAt, manifest: true }), size: null };
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
    agentReconnected(sessionId: string): Promise<void> {
      return abandon(sessionId);
    },

    /** `/v1/vault/<ticket>/missing`: which of the hashes the store lacks. */
    async missing(ticket: string, hashes: string[]): Promise<string[]> {
      const t = await transferOf(ticket);
      return vault.missing(t.userId, hashes);
    },

    /** `/v1/vault/<ticket>/pack`: stores a pack of the transfer's blobs, within its cap. */
    async putPack(ticket: string, pack: Uint8Array): Promise<{ blobs: number; bytes: number }> {
      const t = await transferOf(ticket);
      if (t.added + pack.length > t.cap + 1024 * 1024) {
        throw new CattyError(
          "too_large",
          `This ${t.kind} would add more than this server's cap of ${Math.round(t.cap / 1e6)} MB.`,
          t.kind === "upload" ? "Exclude large paths with .gitignore, or start with --no-upload." : undefined,
        );
      }
      const stored = await vault.storePack(t.userId, pack);
      await store.addTransferBytes(t.id, stored.bytes);
      deps.metrics?.savedBytes.inc({ kind: t.kind }, stored.bytes);
      let here = storedHere.get(t.id);
      if (!here) storedHere.set(t.id, (here = { ids: new Set(), expiresAt: t.expiresAt }));
      for (const id of stored.ids) here.ids.add(id);
      return { blobs: stored.blobs, bytes: stored.bytes };
    },

    /**
     * A read ticket's save as a tar (or tar.gz) stream, for `/v1/vault/<ticket>/tar`. A save that
     * cannot be read from its start (a tree missing or damaged) throws before anything is sent.
     */
    async readTar(ticket: string): Promise<{ stream: ReadableStream<Uint8Array>; gzip: boolean; name: string | null }> {
      const { u, r, z: gz, t, n, m } = verifyTicket(deps.ticketKey, ticket, ReadTicket, { nowMs: now() });
      const tar = await streamOf(vault.tar(u, r, { mtimeSec: t, manifest: m === 1 }));
      const stream = gz ? tar.pipeThrough(new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>) : tar;
      return { stream, gzip: gz === 1, name: n ?? null };
    },

    async savesOf(sessionId: string): Promise<SaveInfo[]> {
      return (await store.listSaves(sessionId)).map(toSaveInfo);
    },

    /** A save of the session (the latest, or the newest made at or before `at`) and a URL for it as a .tar.gz. */
    async download(row: SessionRow, opts: { at?: number; id?: string } = {}): Promise<SaveInfo & { url: string }> {
      const rows = await store.listSaves(row.id);
      const save =
        opts.id !== undefined
          ? rows.find((r) => r.id === opts.id)
          : opts.at !== undefined
            ? rows.find((r) => Date.parse(r.createdAt) <= (opts.at as number))
            : rows[0];
      if (!save) {
        if (opts.id !== undefined) throw new CattyError("not_found", `Session ${row.label} has no save ${opts.id}.`, `Run \`catty saves ${row.label}\` to see its saves.`);
        if (opts.at !== undefined) {
          throw new CattyError("not_found", `Session ${row.label} has no save from ${new Date(opts.at).toISOString()} or earlier.`, `Run \`catty saves ${row.label}\` to see its saves.`);
        }
        throw new CattyError("not_found", `Session ${row.label} has no save yet: the first save happens about 10 seconds after it starts.`);
      }
      return { ...toSaveInfo(save), url: await urlOf(row.userId, save.key, { gzip: true, mtime: save.createdAt, name: row.label }) };
    },

    /** `POST /v1/uploads/start`: an upload whose blobs the CLI sends next. */
    async startUpload(user: User): Promise<UploadStart> {
      const id = crypto.randomUUID();
      return { id, url: await begin("upload", id, user.id, null, "upload") };
    },

    /** `POST /v1/uploads/<id>/commit`: checks the upload is complete and keeps it for the session it starts. */
    async commitUpload(user: User, id: string, body: UploadCommit): Promise<{ id: string; size: number }> {
      const t = await store.transferById(id);
      if (!live(t) || t.kind !== "upload" || t.userId !== user.id) {
        throw new CattyError("not_found", `Upload ${id} is not in progress (it expired, or was committed).`, "Run `catty new` again.");
      }
      await vault.verify(user.id, body.root, storedBy(t));
      await store.insertUpload({ id, userId: user.id, key: `${VAULT_KEY}${body.root}`, size: body.size, createdAt: new Date(now()).toISOString() });
      await store.deleteTransfer(id);
      storedHere.delete(id);
      return { id, size: body.size };
    },

    /** Streams an archive upload into storage, refusing it past the cap without keeping anything. */
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
     * Deletes what nobody will use: transfers past their ticket's expiry, archive blobs no save or
     * upload refers to, uploads not turned into a session within their time, files handed to
     * sessions; applies retention to every session's saves; and collects each user's blobs that
     * no kept save, upload or pending restore refers to.
     */
    async sweep(): Promise<{ deleted: string[]; collected: number }> {
      const t = now();
      const deleted: string[] = [];
      const drop = async (key: string): Promise<void> => {
        await forget(key);
        deleted.push(key);
      };
      await store.deleteExpiredTransfers(t);
      for (const [id, here] of storedHere) if (here.expiresAt <= t) storedHere.delete(id);
      for (const blob of await blobs.list("saves/")) {
        if (ageOf(blob.modifiedAt, t) < ttlSec * 1000) continue;
        if (!(await store.saveKeyExists(blob.key))) await drop(blob.key);
      }
      for (const u of await store.staleUploads(new Date(t - uploadTtlMs).toISOString())) {
        await store.deleteUpload(u.id);
        if (!vaultRoot(u.key)) await drop(u.key);
      }
      const liveSessions = await store.liveSessions();
      const restoring = new Set(liveSessions.map((r) => r.restoreKey));
      for (const blob of await blobs.list("uploads/")) {
        if (restoring.has(blob.key) || ageOf(blob.modifiedAt, t) < uploadTtlMs) continue;
        if (!(await store.uploadKeyExists(blob.key))) await drop(blob.key);
      }
      for (const blob of await blobs.list("files/")) {
        if (ageOf(blob.modifiedAt, t) >= ttlSec * 1000) await drop(blob.key);
      }
      let collected = 0;
      for (const userId of await store.usersWithBlobs()) {
        if (collecting.has(userId)) continue;
        // The lease first, then the check for transfers: a transfer recorded meanwhile waits for the lease (see `begin`).
        if (!(await leases.lease(collectLease(userId)))) continue;
        if (await store.userHasTransfers(userId, t)) {
          await leases.release(collectLease(userId));
          continue;
        }
        const run = (async () => {
          const kept: SaveRow[] = [];
          for (const rows of Map.groupBy(await store.savesOfUser(userId), (s) => s.sessionId).values()) kept.push(...(await prune(rows)));
          const roots = [
            ...kept.map((s) => vaultRoot(s.key)),
            ...(await store.uploadsOfUser(userId)).map((u) => vaultRoot(u.key)),
            ...liveSessions.filter((r) => r.userId === userId).map((r) => vaultRoot(r.restoreKey)),
          ].filter((r): r is string => r !== null);
          return vault.collect(userId, roots, { now: t, orphanAgeMs: ttlSec * 1000 });
        })();
        collecting.set(userId, run);
        try {
          const result = await run;
          collected += result.blobs;
          if (result.blobs > 0 || result.packs > 0) log.info("collected unused save blobs", { user: userId, ...result });
        } catch (err) {
          log.error("could not collect a user's unused save blobs", { user: userId, err });
        } finally {
          collecting.delete(userId);
          await leases.release(collectLease(userId));
        }
      }
      if (deleted.length > 0) log.info("swept unused blobs", { count: deleted.length });
      return { deleted, collected };
    },
  };
}

export type Saves = ReturnType<typeof createSaves>;
