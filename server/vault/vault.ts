/**
 * The store of saves: content-addressed, deduplicated, encrypted blobs in pack objects.
 *
 * Whoever writes a save (the agent, the CLI's upload) sends plaintext blobs named by their
 * SHA-256 (`src/lib/snapshot/format.ts`); the server checks each blob against its hash, seals it
 * with the user's key (`crypto.ts`; small blobs in groups sealed together) and stores what one
 * request sealed as one pack object (`vault/<userId>/<random>`), indexed in the database by each
 * blob's keyed id. The server encrypts, not the agent: keys never enter a session machine, and a
 * blob is checked against its hash before it is kept, so a session cannot plant content under a
 * hash that another of the user's sessions would then restore.
 *
 * Layers, as restic keeps them (backend → repository → restore / prune): the `BlobStore` below;
 * the user's keys (`keys.ts`), the index of what is where (`index.ts`, the database and what this
 * process learnt), packs written (`pack-writer.ts`) and read, each blob checked
 * (`pack-reader.ts`); above them the restore stream (`restore.ts`) and the collection
 * (`collect.ts`). Packs carry their own index (`pack-header.ts`), and the bucket holds each user's
 * wrapped key and each save's record (`catalog.ts`): `recover.ts` rebuilds the database's part from
 * them, `check.ts` checks every save. This module joins them: `storePack` stores what a transfer sent, `verify` makes
 * sure a save about to become the latest is complete, `tar` streams a save, `collect` deletes
 * blobs no kept save refers to.
 */
import { randomBytes } from "node:crypto";
import { CattyError } from "../../src/protocol/errors.ts";
import type { Log } from "../../src/lib/log.ts";
import { decodePack, Hash } from "../../src/lib/snapshot/format.ts";
import type { BlobStore } from "../blobs/types.ts";
import type { SaveRow, SessionRow, Store } from "../store/types.ts";
import { saveRecordKey, writeSaveRecord } from "./catalog.ts";
import { createBackfill, type BackfillResult } from "./backfill.ts";
import { collectUser, packPrefix, type CollectResult } from "./collect.ts";
import { blobId } from "./crypto.ts";
import { createIndexCache } from "./index.ts";
import { createKeyring } from "./keys.ts";
import { createBlobReader, MAX_DEPTH, retrying } from "./pack-reader.ts";
import { sealPack, type PlainBlob } from "./pack-writer.ts";
import { tarStream, type TarOptions } from "./restore.ts";

export { packPrefix, type CollectResult } from "./collect.ts";

export interface VaultDeps {
  store: Store;
  blobs: BlobStore;
  master: Buffer;
  log: Log;
}

export interface StoredPack {
  /** Blobs newly stored (those the store had are skipped). */
  blobs: number;
  /** Their plaintext bytes. */
  bytes: number;
  /** The stored ids of every blob of the pack (new or not): known to be stored now. */
  ids: string[];
}

export function createVault(deps: VaultDeps) {
  const { store, blobs, log } = deps;
  const keyring = createKeyring({ store, master: deps.master, blobs });
  const { keysOf } = keyring;
  const indexes = createIndexCache({ store });
  const readers = { store, blobs, keyring };
  const backfill = createBackfill({ store, blobs, keyring, log });

  return {
    keysOf,

    /** Which of `hashes` the user's store lacks. */
    async missing(userId: string, hashes: readonly string[]): Promise<string[]> {
      for (const h of hashes) if (!Hash.safeParse(h).success) throw new CattyError("bad_request", `${JSON.stringify(h).slice(0, 80)} is not a blob hash.`);
      const keys = await keysOf(userId);
      const ids = hashes.map((h) => blobId(keys, h));
      const present = await store.blobsPresent(userId, ids);
      return hashes.filter((_, i) => !present.has(ids[i]!));
    },

    /** Checks, seals and stores the blobs of a pack (see `decodePack`); nothing is kept if any blob is bad. */
    async storePack(userId: string, pack: Uint8Array): Promise<StoredPack> {
      let records;
      try {
        records = decodePack(pack);
      } catch (err) {
        throw new CattyError("bad_request", `The pack was refused: ${(err as Error).message}.`);
      }
      const keys = await keysOf(userId);
      const index = await indexes.indexOf(userId);
      const ids = records.map((r) => blobId(keys, r.hash));
      const present = await store.blobsPresent(userId, ids);
      const key = `${packPrefix(userId)}${randomBytes(16).toString("hex")}`;
      const fresh: PlainBlob[] = [];
      const seen = new Set<string>();
      records.forEach((r, i) => {
        const id = ids[i]!;
        if (present.has(id) || seen.has(id)) return;
        seen.add(id);
        fresh.push({ id, plain: r.bytes });
      });
      const bytes = fresh.reduce((n, b) => n + b.plain.length, 0);
      const { parts, rows } = await sealPack(keys, key, fresh);
      if (rows.length === 0) return { blobs: 0, bytes: 0, ids };
      await retrying(() => keyring.recorded(userId));
      await retrying(() => blobs.put(key, Buffer.concat(parts)));
      const inserted = await store.insertBlobs(userId, rows);
      // Where the rows this pack inserted point is known now: the first restore need not look it
      // up. Not a row another transfer inserted first: its pack is that one, not this. (An index a
      // deletion has ended since it was taken is dropped at its next use, with this in it.)
      if (indexes.isCurrent(userId, index)) {
        const hashOf = new Map(records.map((r, i) => [ids[i]!, r.hash]));
        for (const { id, ...loc } of rows) {
          if (!inserted.has(id)) continue;
          const hash = hashOf.get(id)!;
          index.ids.set(hash, id);
          index.locations.set(hash, loc);
        }
      }
      return { blobs: rows.length, bytes, ids };
    },

    /**
     * Throws (bad_request, naming what is wrong) unless the tree `root` and everything below it
     * is stored and well-formed. `stored`: ids known to be stored (just sent), not looked up again.
     */
    async verify(userId: string, root: string, stored: ReadonlySet<string> = new Set()): Promise<void> {
      const done = (await indexes.indexOf(userId)).complete;
      // Its own reader: a save about to become the latest has its trees read from storage.
      const r = createBlobReader(readers, userId);
      const keys = await keysOf(userId);
      const walk = async (hash: string, depth: number): Promise<void> => {
        if (done.has(hash)) return;
        if (depth > MAX_DEPTH) throw new CattyError("bad_request", `The save's directories nest deeper than ${MAX_DEPTH} levels.`);
        const tree = await r.tree(hash).catch((err: unknown) => {
          if (err instanceof CattyError && err.code === "not_found") throw new CattyError("bad_request", `The save's tree ${hash.slice(0, 12)}… is not stored.`);
          throw err;
        });
        const chunks = [...new Set(tree.e.flatMap((e) => (e.t === "f" ? e.c : [])))];
        const ids = chunks.map((c) => blobId(keys, c)).filter((id) => !stored.has(id));
        const present = await store.blobsPresent(userId, ids);
        const lacking = ids.filter((id) => !present.has(id)).length;
        if (lacking > 0) throw new CattyError("bad_request", `The save refers to ${lacking} blob${lacking === 1 ? "" : "s"} that are not stored.`);
        for (const e of tree.e) if (e.t === "d") await walk(e.h, depth + 1);
        done.add(hash);
      };
      await walk(root, 0);
    },

    /** Stores the save's record in the bucket (`catalog.ts`), so that it can be recovered without the database. */
    async recordSave(session: SessionRow, save: SaveRow): Promise<void> {
      const keys = await keysOf(session.userId);
      await retrying(() => writeSaveRecord(blobs, keys, session, save));
    },

    /** Deletes a save's record (the save is no longer kept). */
    async forgetSave(userId: string, sessionId: string, saveId: string): Promise<void> {
      await blobs.delete(saveRecordKey(await keysOf(userId), userId, sessionId, saveId)).catch((err: unknown) => log.warn("could not delete a save's record", { err }));
    },

    /** The save under `root` as a tar stream, checking every blob (see `restore.ts`). */
    async *tar(userId: string, root: string, opts: TarOptions): AsyncGenerator<Uint8Array> {
      yield* tarStream(createBlobReader(readers, userId, await indexes.indexOf(userId)), root, opts);
    },

    /**
     * Gives what the user's storage holds from before it described itself its description (see
     * `backfill.ts`); the caller holds the user's collection lease.
     */
    describe(userId: string, kept: readonly SaveRow[], budget: { packs: number }): Promise<BackfillResult> {
      return backfill.run(userId, kept, budget);
    },

    /** Deletes the user's blobs that no tree under `roots` refers to (see `collect.ts`). */
    collect(userId: string, roots: readonly string[], opts: { now: number; orphanAgeMs: number }): Promise<CollectResult> {
      return collectUser({ store, blobs, keyring, log }, createBlobReader(readers, userId), userId, roots, opts);
    },
  };
}

export type Vault = ReturnType<typeof createVault>;
