/**
 * What saves leave behind, deleted: retention applied to each session's saves
 * (`vault/retention.ts`), transfers past their ticket's expiry, archive blobs and uploads nobody
 * will use, files handed to sessions; and each user's blobs no kept save refers to, collected
 * (`vault.collect`), and what they stored before storage described itself described
 * (`vault.describe`). A collection never runs for a user while one of their saves or uploads is in
 * flight, and a new one waits for it (`Collections`).
 */
import type { Log } from "../../src/lib/log.ts";
import type { BlobStore } from "../blobs/types.ts";
import type { SaveRow, Store } from "../store/types.ts";
import { savesToKeep } from "../vault/retention.ts";
import type { Vault } from "../vault/vault.ts";
import { vaultRoot } from "../vault/catalog.ts";

/**
 * Takes and releases named leases shared by every replica (see replicas.ts): a collection of a
 * user's blobs holds `collect:<user>`.
 */
export interface Leases {
  lease(name: string): Promise<boolean>;
  release(name: string): Promise<void>;
}

const collectLease = (userId: string): string => `collect:${userId}`;

/** Collections of users' blobs: those running in this process, and the lease that tells other replicas'. */
export interface Collections {
  /**
   * Waits for a collection of the user's blobs to end: `here` before a transfer is recorded,
   * `elsewhere` after (a collection checks for transfers after taking its lease, so one of the
   * two sees the other).
   */
  here(userId: string): Promise<unknown>;
  elsewhere(userId: string): Promise<void>;
  /** Runs `collect` holding the user's lease, unless a collection of theirs runs or a transfer of theirs is in flight: null then. */
  run<T>(userId: string, nowMs: number, collect: () => Promise<T>): Promise<T | null>;
}

export function createCollections(deps: { store: Pick<Store, "leaseHeld" | "userHasTransfers">; leases: Leases; now: () => number; waitMs: number }): Collections {
  const { store, leases, now } = deps;
  const running = new Map<string, Promise<unknown>>();
  return {
    async here(userId) {
      await running.get(userId);
    },
    async elsewhere(userId) {
      const deadline = now() + deps.waitMs;
      while (now() < deadline && (await store.leaseHeld(collectLease(userId), new Date(now()).toISOString()))) await Bun.sleep(100);
    },
    async run(userId, nowMs, collect) {
      if (running.has(userId)) return null;
      // The lease first, then the check for transfers: a transfer recorded meanwhile waits for the lease.
      if (!(await leases.lease(collectLease(userId)))) return null;
      if (await store.userHasTransfers(userId, nowMs)) {
        await leases.release(collectLease(userId));
        return null;
      }
      const done = collect();
      running.set(userId, done);
      try {
        return await done;
      } finally {
        running.delete(userId);
        await leases.release(collectLease(userId));
      }
    },
  };
}

export interface SweepDeps {
  store: Store;
  blobs: Pick<BlobStore, "list" | "delete">;
  vault: Pick<Vault, "collect" | "forgetSave" | "describe">;
  log: Log;
  collections: Collections;
  retentionDays: number;
  /** Transfers' lifetime: archive save blobs and handed files younger than this are left alone. */
  ttlSec: number;
  uploadTtlMs: number;
  now: () => number;
  /** Drops what this process remembers of transfers expired at `nowMs`. */
  forgetTransfers(nowMs: number): void;
}

/** Packs from before packs had headers that one sweep looks at, at most (see `vault/backfill.ts`). */
const DESCRIBE_PACKS_PER_SWEEP = 200;

const ageOf = (modifiedAt: number | undefined, now: number): number => (modifiedAt === undefined ? 0 : now - modifiedAt);

export function createSweep(deps: SweepDeps) {
  const { store, blobs, log, ttlSec, uploadTtlMs, now } = deps;

  const forget = async (key: string): Promise<void> => {
    await blobs.delete(key).catch((err: unknown) => log.warn("could not delete a blob", { key, err }));
  };

  /** Applies retention to one session's saves (of `userId`); resolves to the ones kept. */
  async function prune(userId: string, rows: SaveRow[]): Promise<SaveRow[]> {
    const keep = savesToKeep(rows, now(), deps.retentionDays);
    for (const old of rows) {
      if (keep.has(old.id)) continue;
      await store.deleteSave(old.id);
      if (vaultRoot(old.key)) await deps.vault.forgetSave(userId, old.sessionId, old.id);
      else await forget(old.key);
    }
    return rows.filter((r) => keep.has(r.id));
  }

  return {
    prune,
    forget,

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
      deps.forgetTransfers(t);
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
      const budget = { packs: DESCRIBE_PACKS_PER_SWEEP };
      for (const userId of await store.usersWithBlobs()) {
        const result = await deps.collections.run(userId, t, async () => {
          try {
            const kept: SaveRow[] = [];
            for (const rows of Map.groupBy(await store.savesOfUser(userId), (s) => s.sessionId).values()) kept.push(...(await prune(userId, rows)));
            const roots = [
              ...kept.map((s) => vaultRoot(s.key)),
              ...(await store.uploadsOfUser(userId)).map((u) => vaultRoot(u.key)),
              ...liveSessions.filter((r) => r.userId === userId).map((r) => vaultRoot(r.restoreKey)),
            ].filter((r): r is string => r !== null);
            const result = await deps.vault.collect(userId, roots, { now: t, orphanAgeMs: ttlSec * 1000 });
            // Under the same lease: no pack of the user's is written or deleted meanwhile.
            await deps.vault.describe(userId, kept, budget).then(
              (described) => (described.packs > 0 || described.saves > 0) && log.info("described saves from before storage described itself", { user: userId, ...described }),
              (err: unknown) => log.warn("could not describe a user's saves from before storage described itself; the next sweep tries again", { user: userId, err }),
            );
            return result;
          } catch (err) {
            log.error("could not collect a user's unused save blobs", { user: userId, err });
            return null;
          }
        });
        if (!result) continue;
        collected += result.blobs;
        if (result.blobs > 0 || result.packs > 0) log.info("collected unused save blobs", { user: userId, ...result });
      }
      if (deleted.length > 0) log.info("swept unused blobs", { count: deleted.length });
      return { deleted, collected };
    },
  };
}
