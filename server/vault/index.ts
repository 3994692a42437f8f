/**
 * The vault's index layer: what reading a user's saves learnt, by content hash: blob ids, where
 * the blobs are (also learnt as packs are stored), decoded trees; and which trees checking saves
 * found complete (every blob below them stored). None of it changes until one of the user's blobs
 * is deleted (a collection, by any replica, moves the count), so restores of the same save, or of
 * one much like it, do not look it all up again, and a save is checked without walking what was
 * checked before. The least recently used users' go first past `maxEntries` locations.
 */
import type { Tree } from "../../src/lib/snapshot/format.ts";
import type { BlobLocation, Store } from "../store/types.ts";

/** Blob locations the indexes keep, over all users (each about 400 bytes with its id and trees). */
export const INDEX_ENTRIES = 100_000;

/** What one reader learns as it reads: ids, locations and trees by content hash. */
export interface ReadIndex {
  ids: Map<string, string>;
  locations: Map<string, BlobLocation>;
  trees: Map<string, Tree>;
}

export interface UserIndex extends ReadIndex {
  /** The user's deletion count this index was taken at. */
  deletions: number;
  /** Trees found complete by `verify`. */
  complete: Set<string>;
}

export const emptyReadIndex = (): ReadIndex => ({ ids: new Map(), locations: new Map(), trees: new Map() });

export interface IndexCache {
  /** The user's index, a fresh one if blobs of the user were deleted since the last was taken. */
  indexOf(userId: string): Promise<UserIndex>;
  /** Whether `index` is still the user's current one (not replaced since it was taken). */
  isCurrent(userId: string, index: UserIndex): boolean;
}

export function createIndexCache(deps: { store: Pick<Store, "blobDeletions">; maxEntries?: number }): IndexCache {
  const maxEntries = deps.maxEntries ?? INDEX_ENTRIES;
  const indexes = new Map<string, UserIndex>();
  return {
    async indexOf(userId) {
      const deletions = await deps.store.blobDeletions(userId);
      let index = indexes.get(userId);
      if (index?.deletions !== deletions) index = { deletions, ...emptyReadIndex(), complete: new Set() };
      indexes.delete(userId);
      indexes.set(userId, index);
      let entries = 0;
      for (const i of indexes.values()) entries += i.locations.size;
      for (const [user, i] of indexes) {
        if (entries <= maxEntries || i === index) break;
        entries -= i.locations.size;
        indexes.delete(user);
      }
      if (index.locations.size > maxEntries) [index.ids, index.locations, index.trees] = [new Map(), new Map(), new Map()];
      return index;
    },
    isCurrent(userId, index) {
      return indexes.get(userId) === index;
    },
  };
}
