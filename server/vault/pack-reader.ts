/**
 * The vault's pack reader: reads a user's blobs out of pack objects, checking each. A blob opens
 * only if its AES-GCM tag holds, and its keyed id (HMAC of its hash) is sealed with it, as
 * associated data or in its group's list; so what opens is exactly what was sealed under that
 * hash, which the server checked when it stored it. (Hashing every blob again as well cost a sixth
 * of a restore.) A reader caches packs it read whole and groups it opened, and keeps what it
 * learns in its `ReadIndex` (its own, unless given the user's).
 */
import { CattyError } from "../../src/protocol/errors.ts";
import { decodeTree, MAX_BLOB_BYTES, type Tree } from "../../src/lib/snapshot/format.ts";
import type { BlobStore } from "../blobs/types.ts";
import type { BlobLocation, Store } from "../store/types.ts";
import { blobId, decodeGroup, GROUP_AAD, openBlob, type UserKeys } from "./crypto.ts";
import { emptyReadIndex, type ReadIndex } from "./index.ts";
import type { Keyring } from "./keys.ts";

/** Trees nest at most this deep. */
export const MAX_DEPTH = 256;
/** Packs read whole are kept in memory up to this many bytes. */
const PACK_CACHE_BYTES = 64 * 1024 * 1024;
/** A blob smaller than this is read by fetching its whole pack (its neighbours are likely next). */
const WHOLE_PACK_BELOW = 256 * 1024;
/** An opened group is at most this large (its list and its members). */
export const MAX_GROUP_BYTES = 1024 * 1024;
/** Opened groups a reader keeps (a restore reads a group's members one after another). */
const GROUP_CACHE = 64;

/**
 * Runs a storage call, again after 200 ms and 800 ms if it throws (a storage that answered 500 or
 * dropped the connection); a `CattyError` (the blob is not there) is final at once.
 */
export async function retrying<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (err instanceof CattyError || attempt >= 2) throw err;
      await Bun.sleep(200 * 4 ** attempt);
    }
  }
}

export interface PackReaderDeps {
  store: Pick<Store, "blobLocations">;
  blobs: Pick<BlobStore, "getBytes" | "getRange">;
  keyring: Keyring;
}

export interface BlobReader {
  /** Looks up where blobs are, ahead of reading them (in as few queries as the store allows). */
  locate(hashes: Iterable<string>): Promise<void>;
  /** The blob whose content hash is `hash`: not_found when the index has no such blob, internal when storage lost or damaged it. */
  read(hash: string): Promise<Uint8Array>;
  /** The tree blob `hash`, decoded; bad_request when it is malformed. */
  tree(hash: string): Promise<Tree>;
}

export function createBlobReader(deps: PackReaderDeps, userId: string, index: ReadIndex = emptyReadIndex()): BlobReader {
  const { store, blobs, keyring } = deps;
  const packs = new Map<string, Promise<Uint8Array>>();
  const sizes = new Map<string, number>();
  let cached = 0;
  const { ids, locations, trees } = index;
  const idOf = (keys: UserKeys, hash: string): string => {
    let id = ids.get(hash);
    if (id === undefined) {
      id = blobId(keys, hash);
      ids.set(hash, id);
    }
    return id;
  };
  /** A pack read whole, or being read (reads of the same pack at once share one fetch). */
  const fetchPack = (pack: string): Promise<Uint8Array> => {
    const hit = packs.get(pack);
    if (hit) {
      packs.delete(pack);
      packs.set(pack, hit);
      return hit;
    }
    const fetched = retrying(async () => {
      const body = await blobs.getBytes(pack);
      if (!body) throw new CattyError("internal", `Pack ${pack} of a save is missing from storage.`);
      return body;
    });
    packs.set(pack, fetched);
    fetched.then(
      (bytes) => {
        // Dropped from the cache while it was being read: not counted.
        if (packs.get(pack) !== fetched) return;
        sizes.set(pack, bytes.length);
        cached += bytes.length;
        for (const k of packs.keys()) {
          if (cached <= PACK_CACHE_BYTES || k === pack) break;
          packs.delete(k);
          cached -= sizes.get(k) ?? 0;
          sizes.delete(k);
        }
      },
      () => {
        if (packs.get(pack) === fetched) packs.delete(pack);
      },
    );
    return fetched;
  };
  /** The sealed bytes at `loc`. */
  const sealedAt = async (loc: BlobLocation, hash: string): Promise<Uint8Array> => {
    let sealed: Uint8Array | null;
    if (packs.has(loc.pack) || loc.length < WHOLE_PACK_BELOW) {
      const pack = await fetchPack(loc.pack);
      sealed = pack.subarray(loc.offset, loc.offset + loc.length);
    } else {
      const { pack, offset, length } = loc;
      sealed = await retrying(() => blobs.getRange(pack, offset, length));
    }
    if (!sealed || sealed.length !== loc.length) throw new CattyError("internal", `Blob ${hash.slice(0, 12)}… is cut short in storage.`);
    return sealed;
  };
  const damaged = (hash: string): CattyError => new CattyError("internal", `Blob ${hash.slice(0, 12)}… of the save is damaged in storage (it does not decrypt).`);
  /** Groups opened (or being opened), by where they are; the members of one share it. */
  const groups = new Map<string, Promise<Map<string, Uint8Array>>>();
  const groupAt = (keys: UserKeys, loc: BlobLocation, hash: string): Promise<Map<string, Uint8Array>> => {
    const where = `${loc.pack}@${loc.offset}`;
    let group = groups.get(where);
    if (group) {
      groups.delete(where);
      groups.set(where, group);
      return group;
    }
    group = (async () => {
      const sealed = await sealedAt(loc, hash);
      try {
        return decodeGroup(await openBlob(keys, GROUP_AAD, sealed, MAX_GROUP_BYTES));
      } catch {
        throw damaged(hash);
      }
    })();
    groups.set(where, group);
    group.catch(() => groups.get(where) === group && groups.delete(where));
    for (const k of groups.keys()) {
      if (groups.size <= GROUP_CACHE) break;
      groups.delete(k);
    }
    return group;
  };
  const reader: BlobReader = {
    async locate(hashes) {
      const keys = await keyring.keysOf(userId);
      const byId = new Map<string, string>();
      for (const h of hashes) if (!locations.has(h)) byId.set(idOf(keys, h), h);
      if (byId.size === 0) return;
      for (const [id, loc] of await store.blobLocations(userId, [...byId.keys()])) locations.set(byId.get(id)!, loc);
    },
    async read(hash) {
      const keys = await keyring.keysOf(userId);
      const id = idOf(keys, hash);
      let loc = locations.get(hash);
      if (!loc) {
        loc = (await store.blobLocations(userId, [id])).get(id);
        if (!loc) throw new CattyError("not_found", `Blob ${hash.slice(0, 12)}… of the save is not stored.`);
      }
      if (loc.grouped) {
        const member = (await groupAt(keys, loc, hash)).get(id);
        if (!member) throw new CattyError("internal", `Blob ${hash.slice(0, 12)}… is not in the group its index names.`);
        return member;
      }
      const sealed = await sealedAt(loc, hash);
      try {
        return await openBlob(keys, id, sealed, MAX_BLOB_BYTES);
      } catch {
        throw damaged(hash);
      }
    },
    async tree(hash) {
      const known = trees.get(hash);
      if (known) return known;
      const bytes = await reader.read(hash);
      let tree: Tree;
      try {
        tree = decodeTree(bytes);
      } catch (err) {
        throw new CattyError("bad_request", `Tree ${hash.slice(0, 12)}… of the save is malformed: ${(err as Error).message}.`);
      }
      trees.set(hash, tree);
      return tree;
    },
  };
  return reader;
}
