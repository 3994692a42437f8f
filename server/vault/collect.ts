/**
 * The vault's collection (restic's prune): deletes a user's blobs that no tree under the kept
 * roots refers to (mark and sweep), and pack objects left with no blob.
 */
import type { Log } from "../../src/lib/log.ts";
import type { BlobStore } from "../blobs/types.ts";
import type { Store } from "../store/types.ts";
import { blobId } from "./crypto.ts";
import type { Keyring } from "./keys.ts";
import { MAX_DEPTH, type BlobReader } from "./pack-reader.ts";

export const packPrefix = (userId: string): string => `vault/${userId}/`;

export interface CollectResult {
  blobs: number;
  packs: number;
}

export interface CollectDeps {
  store: Pick<Store, "blobsOfUser" | "deleteBlobs">;
  blobs: Pick<BlobStore, "list" | "delete">;
  keyring: Keyring;
  log: Log;
}

/**
 * Deletes the user's blobs that no tree under `roots` refers to (read through `reader`), and
 * pack objects left with no blob. The caller makes sure no save of the user is in progress
 * meanwhile. Pack objects no blob was ever indexed in (an upload cut short) go once older than
 * `orphanAgeMs`. A root that cannot be read stops the collection: what it refers to is unknown.
 */
export async function collectUser(
  deps: CollectDeps,
  reader: BlobReader,
  userId: string,
  roots: readonly string[],
  opts: { now: number; orphanAgeMs: number },
): Promise<CollectResult> {
  const { store, blobs, log } = deps;
  const keys = await deps.keyring.keysOf(userId);
  const live = new Set<string>();
  const seen = new Set<string>();
  const mark = async (hash: string, depth: number): Promise<void> => {
    if (seen.has(hash) || depth > MAX_DEPTH) return;
    seen.add(hash);
    live.add(blobId(keys, hash));
    const tree = await reader.tree(hash);
    for (const e of tree.e) {
      if (e.t === "f") for (const c of e.c) live.add(blobId(keys, c));
      else if (e.t === "d") await mark(e.h, depth + 1);
    }
  };
  for (const root of roots) await mark(root, 0);
  const rows = await store.blobsOfUser(userId);
  const dead = rows.filter((row) => !live.has(row.id));
  const livePacks = new Set(rows.filter((row) => live.has(row.id)).map((row) => row.pack));
  const indexedPacks = new Set(rows.map((row) => row.pack));
  const deadPacks = new Set(dead.map((row) => row.pack).filter((p) => !livePacks.has(p)));
  await store.deleteBlobs(userId, dead.map((row) => row.id));
  for (const info of await blobs.list(packPrefix(userId))) {
    const orphan = !indexedPacks.has(info.key) && opts.now - (info.modifiedAt ?? opts.now) >= opts.orphanAgeMs;
    if (orphan) deadPacks.add(info.key);
  }
  for (const pack of deadPacks) await blobs.delete(pack).catch((err: unknown) => log.warn("could not delete a pack", { pack, err }));
  return { blobs: dead.length, packs: deadPacks.size };
}
