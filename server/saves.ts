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
 *
 * The parts, in `saves/`: transfers in flight (`transfers.ts`), reading saves back
 * (`reading.ts`), blobs kept whole for a while (`staging.ts`), and the sweep with the
 * collections' lease (`sweep.ts`). This module joins them and answers the agent's save messages.
 */
import type { ServerToAgent } from "../src/protocol/index.ts";
import type { ServerMetrics } from "./metrics.ts";
import type { Log } from "../src/lib/log.ts";
import type { BlobStore } from "./blobs/types.ts";
import type { AgentControl } from "./relay.ts";
import type { SessionRow, Store } from "./store/types.ts";
import type { Vault } from "./vault/vault.ts";
import { createReading } from "./saves/reading.ts";
import { createStaging } from "./saves/staging.ts";
import { createCollections, createSweep, type Leases } from "./saves/sweep.ts";
import { createTransfers } from "./saves/transfers.ts";

export { toSaveInfo } from "./saves/reading.ts";
export { vaultRoot } from "./vault/catalog.ts";
export type { Leases } from "./saves/sweep.ts";

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

export function createSaves(deps: SavesDeps) {
  const { store, blobs, vault, log, limits } = deps;
  const now = deps.now ?? Date.now;
  const ttlSec = Math.max(1, Math.ceil(deps.transferTtlMs / 1000));
  const leases: Leases = deps.leases ?? { lease: async () => true, release: async () => {} };
  const collections = createCollections({ store, leases, now, waitMs: deps.transferTtlMs });
  const reading = createReading({ store, blobs, vault, ticketKey: deps.ticketKey, ttlSec, now });
  const staging = createStaging({ store, blobs, log, maxUploadBytes: limits.maxUploadBytes, ttlSec, now });
  // Each calls the other only later, when a save is stored or a sweep runs.
  const t = createTransfers({ store, vault, ticketKey: deps.ticketKey, log, limits, ttlSec, now, metrics: deps.metrics, collections, prune: (userId, rows) => sweeping.prune(userId, rows) });
  const sweeping = createSweep({
    store,
    blobs,
    vault,
    log,
    collections,
    retentionDays: limits.retentionDays,
    ttlSec,
    uploadTtlMs: deps.uploadTtlMs ?? 60 * 60 * 1000,
    now,
    forgetTransfers: t.forgetExpired,
  });

  return {
    restoreFor: reading.restoreFor,
    readTar: reading.readTar,
    savesOf: reading.savesOf,
    download: reading.download,
    missing: t.missing,
    putPack: t.putPack,
    startUpload: t.startUpload,
    commitUpload: t.commitUpload,
    receiveUpload: staging.receiveUpload,
    stageFile: staging.stageFile,
    sweep: sweeping.sweep,

    async control(row: SessionRow, msg: AgentControl, fail: (reason: string) => Promise<void>): Promise<ServerToAgent | null> {
      switch (msg.type) {
        case "save_request":
          return t.saveRequest(row, msg);
        case "save_done":
          return t.saveDone(row, msg);
        case "restored": {
          const key = row.restoreKey;
          await store.updateSession(row.id, { restoreKey: null });
          if (key?.startsWith("uploads/")) await sweeping.forget(key);
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
      return t.abandon(sessionId);
    },
  };
}

export type Saves = ReturnType<typeof createSaves>;
