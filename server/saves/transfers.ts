/**
 * Saves and uploads in flight: the agent's save protocol (`save_request`, blobs to
 * `/v1/vault/<ticket>`, `save_done`) and `catty new`'s upload (`startUpload`, the same blob
 * routes, `commitUpload`). A session has at most one save in flight, a transfer may add at most
 * its cap, and a save becomes the session's latest only once everything under its root is stored.
 */
import { z } from "zod";
import { CattyError, type ServerToAgent, type UploadCommit, type UploadStart } from "../../src/protocol/index.ts";
import type { Log } from "../../src/lib/log.ts";
import type { ServerMetrics } from "../metrics.ts";
import type { AgentControl } from "../relay.ts";
import type { SaveRow, SessionRow, Store, TransferRow, User } from "../store/types.ts";
import { signTicket, verifyTicket } from "../tickets.ts";
import type { Vault } from "../vault/vault.ts";
import { VAULT_KEY } from "../vault/catalog.ts";
import type { Collections } from "./sweep.ts";

const WriteTicket = z.object({ w: z.string() });

/** A save's transfer id: the agent names its saves, so only within its session. */
const saveTransferId = (sessionId: string, saveId: string): string => `save:${sessionId}:${saveId}`;

export interface TransfersDeps {
  store: Store;
  vault: Pick<Vault, "verify" | "missing" | "storePack" | "recordSave">;
  ticketKey: Buffer;
  log: Log;
  limits: { maxUploadBytes: number; maxSaveBytes: number };
  ttlSec: number;
  now: () => number;
  metrics?: Pick<ServerMetrics, "saveSeconds" | "saves" | "savedBytes">;
  collections: Collections;
  /** Applies retention to a session's saves (after a new one is stored). */
  prune(userId: string, rows: SaveRow[]): Promise<unknown>;
}

export function createTransfers(deps: TransfersDeps) {
  const { store, vault, log, limits, ttlSec, now } = deps;
  /**
   * Saves and uploads in flight are rows of the store (any replica may take their packs); this
   * replica remembers which blobs the packs it took carried, so that checking the save does not
   * look them up again.
   */
  const storedHere = new Map<string, { ids: Set<string>; expiresAt: number }>();

  const live = (t: TransferRow | null): t is TransferRow => t !== null && t.expiresAt > now();
  const storedBy = (t: TransferRow): Set<string> => storedHere.get(t.id)?.ids ?? new Set();

  /** Drops a session's save in flight; blobs it stored are collected later unless a save refers to them. */
  async function abandon(sessionId: string): Promise<void> {
    await store.deleteSessionTransfers(sessionId);
  }

  const writeUrl = (id: string): string => `/v1/vault/${signTicket(deps.ticketKey, { w: id }, ttlSec, now())}`;

  async function begin(kind: TransferRow["kind"], id: string, userId: string, sessionId: string | null, reason: string): Promise<string> {
    await deps.collections.here(userId);
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
    await deps.collections.elsewhere(userId);
    return writeUrl(id);
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
    abandon,

    /** Forgets what this process remembers of transfers expired at `nowMs`. */
    forgetExpired(nowMs: number): void {
      for (const [id, here] of storedHere) if (here.expiresAt <= nowMs) storedHere.delete(id);
    },

    async saveRequest(row: SessionRow, msg: Extract<AgentControl, { type: "save_request" }>): Promise<ServerToAgent> {
      const current = await store.sessionTransfer(row.id);
      if (live(current) && current.id !== saveTransferId(row.id, msg.id)) {
        return { type: "save_target", id: msg.id, url: null, error: `save ${current.id.slice(current.id.lastIndexOf(":") + 1)} is still in progress: one save at a time` };
      }
      await abandon(row.id);
      return { type: "save_target", id: msg.id, url: await begin("save", saveTransferId(row.id, msg.id), row.userId, row.id, msg.reason), error: null };
    },

    async saveDone(row: SessionRow, msg: Extract<AgentControl, { type: "save_done" }>): Promise<ServerToAgent> {
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
      const save: SaveRow = {
        id: msg.id,
        sessionId: row.id,
        key: `${VAULT_KEY}${msg.root}`,
        createdAt: new Date(now()).toISOString(),
        size: msg.size,
        files: msg.files,
        reason: t.reason,
        added: t.added,
      };
      // Its record in the bucket first: a save the database lists can be recovered without it.
      // Storage failing here does not lose the save (it is stored); only its record is missing.
      await vault.recordSave(row, save).catch((err: unknown) => log.error("could not store a save's record; it cannot be recovered from storage alone", { label: row.label, err }));
      await store.insertSave(save);
      await abandon(row.id);
      storedHere.delete(t.id);
      await deps.prune(row.userId, await store.listSaves(row.id));
      deps.metrics?.saves.inc({ outcome: "stored" });
      deps.metrics?.saveSeconds.observe((now() - t.startedAt) / 1000);
      log.info("save stored", { label: row.label, files: msg.files, size: msg.size, added: t.added, reason: t.reason });
      return { type: "save_result", id: msg.id, ok: true, error: null };
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
  };
}
