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
 * Reading walks trees from a save's root: `tar` streams a save as a tar archive (restores,
 * downloads). Every blob read is checked: it opens only if its AES-GCM tag holds, and its keyed
 * id (HMAC of its hash) is sealed with it, as associated data or in its group's list; so what opens
 * is exactly what was sealed under that hash, which the server checked when it stored it. Hashing
 * every blob again as well cost a sixth of a restore. `verify` makes sure a save about to become
 * the latest is complete. `collect` deletes blobs no kept save refers to (mark and sweep).
 */
import { randomBytes } from "node:crypto";
import { CattyError } from "../../src/protocol/errors.ts";
import type { Log } from "../../src/lib/log.ts";
import { decodePack, decodeTree, Hash, ManifestWriter, MAX_BLOB_BYTES, type Tree } from "../../src/lib/snapshot/format.ts";
import type { BlobStore } from "../blobs/types.ts";
import type { BlobLocation, Store } from "../store/types.ts";
import { blobId, decodeGroup, encodeGroup, GROUP_AAD, newWrappedUserKey, openBlob, sealBlobs, unwrapUserKeys, type SealUnit, type UserKeys } from "./crypto.ts";
import { TAR_END, TarBatches, tarHeader, tarPadding, type TarEntry } from "./tar.ts";

export interface VaultDeps {
  store: Store;
  blobs: BlobStore;
  master: Buffer;
  log: Log;
}

/** Blobs a tar stream reads ahead of what it has written, and their bytes at most (beyond one file). */
const READ_AHEAD = 64;
const READ_AHEAD_BYTES = 16 * 1024 * 1024;
/** Trees nest at most this deep. */
const MAX_DEPTH = 256;
/** Packs read whole are kept in memory up to this many bytes. */
const PACK_CACHE_BYTES = 64 * 1024 * 1024;
/** A blob smaller than this is read by fetching its whole pack (its neighbours are likely next). */
const WHOLE_PACK_BELOW = 256 * 1024;
/** Blobs smaller than this are sealed in groups (`encodeGroup`) of about `GROUP_BYTES`, `GROUP_MEMBERS` at most. */
const GROUP_BELOW = 64 * 1024;
const GROUP_BYTES = 256 * 1024;
const GROUP_MEMBERS = 4096;
/** How every tree's bytes begin (`encodeTree`). */
const TREE_PREFIX = new TextEncoder().encode('{"v":1,"e":[');
const looksLikeTree = (bytes: Uint8Array): boolean => bytes.length >= TREE_PREFIX.length && TREE_PREFIX.every((b, i) => bytes[i] === b);
/** An opened group is at most this large (its list and its members). */
const MAX_GROUP_BYTES = 1024 * 1024;
/** Opened groups a reader keeps (a restore reads a group's members one after another). */
const GROUP_CACHE = 64;
/** Blob locations the readers' indexes keep, over all users (each about 400 bytes with its id and trees). */
const INDEX_ENTRIES = 100_000;

/**
 * Runs a storage call, again after 200 ms and 800 ms if it throws (a storage that answered 500 or
 * dropped the connection); a `CattyError` (the blob is not there) is final at once.
 */
async function retrying<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (err instanceof CattyError || attempt >= 2) throw err;
      await Bun.sleep(200 * 4 ** attempt);
    }
  }
}

export const packPrefix = (userId: string): string => `vault/${userId}/`;

export interface StoredPack {
  /** Blobs newly stored (those the store had are skipped). */
  blobs: number;
  /** Their plaintext bytes. */
  bytes: number;
  /** The stored ids of every blob of the pack (new or not): known to be stored now. */
  ids: string[];
}

export interface CollectResult {
  blobs: number;
  packs: number;
}

export function createVault(deps: VaultDeps) {
  const { store, blobs, master, log } = deps;
  const keyCache = new Map<string, Promise<UserKeys>>();
  function keysOf(userId: string): Promise<UserKeys> {
    let keys = keyCache.get(userId);
    if (!keys) {
      keys = (async () => {
        const wrapped = (await store.userKey(userId)) ?? (await store.insertUserKey(userId, newWrappedUserKey(master)));
        return unwrapUserKeys(master, wrapped);
      })();
      keys.catch(() => keyCache.delete(userId));
      keyCache.set(userId, keys);
    }
    return keys;
  }

  /**
   * What reading a user's saves learnt, by content hash: blob ids, where the blobs are (also
   * learnt as packs are stored), decoded trees; and which trees checking saves found complete
   * (every blob below them stored). None of it changes until one of the user's blobs is deleted
   * (a collection, by any replica, moves the count), so restores of the same save, or of one much
   * like it, do not look it all up again, and a save is checked without walking what was checked
   * before. The least recently used users' go first past `INDEX_ENTRIES` locations.
   */
  interface UserIndex {
    deletions: number;
    ids: Map<string, string>;
    locations: Map<string, BlobLocation>;
    trees: Map<string, Tree>;
    complete: Set<string>;
  }
  const indexes = new Map<string, UserIndex>();
  async function indexOf(userId: string): Promise<UserIndex> {
    const deletions = await store.blobDeletions(userId);
    let index = indexes.get(userId);
    if (index?.deletions !== deletions) index = { deletions, ids: new Map(), locations: new Map(), trees: new Map(), complete: new Set() };
    indexes.delete(userId);
    indexes.set(userId, index);
    let entries = 0;
    for (const i of indexes.values()) entries += i.locations.size;
    for (const [user, i] of indexes) {
      if (entries <= INDEX_ENTRIES || i === index) break;
      entries -= i.locations.size;
      indexes.delete(user);
    }
    if (index.locations.size > INDEX_ENTRIES) [index.ids, index.locations, index.trees] = [new Map(), new Map(), new Map()];
    return index;
  }

  /**
   * Reads a user's blobs, checking each (see above); caches packs it read whole and groups it
   * opened, and keeps what it learns in `index` (a reader's own, unless given the user's).
   */
  function reader(userId: string, index: Pick<UserIndex, "ids" | "locations" | "trees"> = { ids: new Map(), locations: new Map(), trees: new Map() }) {
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
    return {
      /** Looks up where blobs are, ahead of reading them (in as few queries as the store allows). */
      async locate(hashes: Iterable<string>): Promise<void> {
        const keys = await keysOf(userId);
        const byId = new Map<string, string>();
        for (const h of hashes) if (!locations.has(h)) byId.set(idOf(keys, h), h);
        if (byId.size === 0) return;
        for (const [id, loc] of await store.blobLocations(userId, [...byId.keys()])) locations.set(byId.get(id)!, loc);
      },
      async read(hash: string): Promise<Uint8Array> {
        const keys = await keysOf(userId);
        const id = idOf(keys, hash);
        let loc = locations.get(hash);
        if (!loc) {
          loc = (await store.blobLocations(userId, [id])).get(id);
          if (!loc) throw new CattyError("not_found", `Blob ${hash.slice(0, 12)}… of the save is not stored.`);
        }
        let plain: Uint8Array;
        if (loc.grouped) {
          const member = (await groupAt(keys, loc, hash)).get(id);
          if (!member) throw new CattyError("internal", `Blob ${hash.slice(0, 12)}… is not in the group its index names.`);
          plain = member;
        } else {
          const sealed = await sealedAt(loc, hash);
          try {
            plain = await openBlob(keys, id, sealed, MAX_BLOB_BYTES);
          } catch {
            throw damaged(hash);
          }
        }
        return plain;
      },
      async tree(hash: string): Promise<Tree> {
        const known = trees.get(hash);
        if (known) return known;
        const bytes = await this.read(hash);
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
  }

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
      const index = await indexOf(userId);
      const ids = records.map((r) => blobId(keys, r.hash));
      const present = await store.blobsPresent(userId, ids);
      const key = `${packPrefix(userId)}${randomBytes(16).toString("hex")}`;
      const fresh: Array<{ id: string; plain: Uint8Array }> = [];
      const seen = new Set<string>();
      records.forEach((r, i) => {
        const id = ids[i]!;
        if (present.has(id) || seen.has(id)) return;
        seen.add(id);
        fresh.push({ id, plain: r.bytes });
      });
      // Large blobs are sealed each on its own; small ones in groups, in the order they came, with
      // trees apart from files: a restore reads every tree first, and would otherwise open every
      // group for its trees and then again for its files. (What looks like a tree only decides
      // where a blob is placed; reading does not depend on it.)
      const units: Array<SealUnit & { ids: string[]; grouped: boolean }> = [];
      const forming = { trees: { members: [] as typeof fresh, bytes: 0 }, files: { members: [] as typeof fresh, bytes: 0 } };
      const closeGroup = (group: { members: typeof fresh; bytes: number }): void => {
        if (group.members.length > 0) units.push({ aad: GROUP_AAD, plain: encodeGroup(group.members), ids: group.members.map((m) => m.id), grouped: true });
        group.members = [];
        group.bytes = 0;
      };
      for (const blob of fresh) {
        if (blob.plain.length >= GROUP_BELOW) {
          units.push({ aad: blob.id, plain: blob.plain, ids: [blob.id], grouped: false });
          continue;
        }
        const group = looksLikeTree(blob.plain) ? forming.trees : forming.files;
        group.members.push(blob);
        group.bytes += blob.plain.length;
        if (group.bytes >= GROUP_BYTES || group.members.length >= GROUP_MEMBERS) closeGroup(group);
      }
      closeGroup(forming.files);
      closeGroup(forming.trees);
      const parts: Uint8Array[] = [];
      const rows: Array<BlobLocation & { id: string }> = [];
      let offset = 0;
      const bytes = fresh.reduce((n, b) => n + b.plain.length, 0);
      (await sealBlobs(keys, units)).forEach((sealed, i) => {
        const length = sealed.reduce((n, p) => n + p.length, 0);
        const unit = units[i]!;
        parts.push(...sealed);
        for (const id of unit.ids) rows.push(unit.grouped ? { id, pack: key, offset, length, grouped: true } : { id, pack: key, offset, length });
        offset += length;
      });
      if (rows.length === 0) return { blobs: 0, bytes: 0, ids };
      await retrying(() => blobs.put(key, Buffer.concat(parts)));
      const inserted = await store.insertBlobs(userId, rows);
      // Where the rows this pack inserted point is known now: the first restore need not look it
      // up. Not a row another transfer inserted first: its pack is that one, not this. (An index a
      // deletion has ended since it was taken is dropped at its next use, with this in it.)
      if (indexes.get(userId) === index) {
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
      const done = (await indexOf(userId)).complete;
      // Its own reader: a save about to become the latest has its trees read from storage.
      const r = reader(userId);
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

    /**
     * The save under `root` as a tar stream (names relative to the workspace), checking every blob.
     * Trees are read as the walk comes to them: entering a directory reads its subdirectories'
     * trees and looks up where everything they list is, one query per directory, ahead of the
     * walk; so the stream starts as soon as the root is read and runs without waiting on the
     * database. With `manifest`, the archive is followed by its files' chunks (`ManifestWriter`), so
     * a restore knows them without hashing what it wrote.
     */
    async *tar(userId: string, root: string, opts: { mtimeSec: number; manifest?: boolean }): AsyncGenerator<Uint8Array> {
      const r = reader(userId, await indexOf(userId));
      /** Trees read (or being read), each once what it lists has been looked up. */
      const trees = new Map<string, Promise<Tree>>();
      const treeOf = (hash: string): Promise<Tree> => {
        let tree = trees.get(hash);
        if (!tree) {
          tree = r.tree(hash).then(async (t) => {
            await r.locate(t.e.flatMap((e) => (e.t === "d" ? [e.h] : e.t === "f" ? e.c : [])));
            return t;
          });
          // Read ahead: a failure surfaces when the walk comes to the tree.
          tree.catch(() => {});
          trees.set(hash, tree);
        }
        return tree;
      };
      await r.locate([root]);

      type Item = { entry: TarEntry; chunks: readonly string[] };
      /** Every entry below `hash` in tar order, with its file's chunks, in runs up to a subdirectory. */
      async function* dir(prefix: string, hash: string, depth: number): AsyncGenerator<Item[]> {
        // A tree met again deeper down (trees are shared by hash) is checked again here.
        if (depth > MAX_DEPTH) throw new CattyError("bad_request", `The save's directories nest deeper than ${MAX_DEPTH} levels.`);
        const tree = await treeOf(hash);
        for (const e of tree.e) if (e.t === "d") void treeOf(e.h);
        let run: Item[] = [];
        for (const e of tree.e) {
          const name = prefix === "" ? e.n : `${prefix}/${e.n}`;
          if (e.t === "d") {
            run.push({ entry: { name, type: "dir", mode: e.m, size: 0, mtime: opts.mtimeSec }, chunks: [] });
            yield run;
            run = [];
            yield* dir(name, e.h, depth + 1);
          } else if (e.t === "l") {
            run.push({ entry: { name, type: "symlink", mode: 0o777, size: 0, mtime: opts.mtimeSec, linkname: e.l }, chunks: [] });
          } else {
            run.push({ entry: { name, type: "file", mode: e.m, size: e.s, mtime: e.mt / 1000 }, chunks: e.c });
          }
        }
        if (run.length > 0) yield run;
      }

      // Blobs are read (fetched, decrypted, decompressed) up to READ_AHEAD ahead of the output, so
      // that several decompress side by side on the worker threads. The walk runs ahead too; it is
      // waited for only when nothing read is left to write.
      const walk = dir("", root, 0);
      let queue: Item[] = [];
      let taken = 0;
      let next: Promise<IteratorResult<Item[]>> | null = null;
      let arrived: IteratorResult<Item[]> | null = null;
      let exhausted = false;
      const out = new TarBatches();
      const manifest = opts.manifest ? new ManifestWriter() : null;
      const ahead: Array<{ entry: TarEntry; reads: Array<Promise<Uint8Array>> }> = [];
      let pending = 0;
      let pendingBytes = 0;
      const fill = async (): Promise<void> => {
        while (!exhausted && pending < READ_AHEAD && (pendingBytes < READ_AHEAD_BYTES || pending === 0)) {
          if (taken === queue.length) {
            if (!next) {
              next = walk.next();
              next.then((got) => void (arrived = got), () => {});
            }
            if (!arrived && ahead.length > 0) return;
            const got = arrived ?? (await next);
            next = arrived = null;
            if (got.done) exhausted = true;
            else [queue, taken] = [got.value, 0];
            continue;
          }
          const { entry, chunks } = queue[taken++]!;
          if (entry.type === "file") manifest?.add(entry.size, chunks);
          const reads = chunks.map((c) => r.read(c));
          // Failures surface when the chunk's turn comes; until then they are not "unhandled".
          for (const p of reads) p.catch(() => {});
          pending += reads.length;
          pendingBytes += entry.size;
          ahead.push({ entry, reads });
        }
      };
      for (await fill(); ahead.length > 0; await fill()) {
        const { entry, reads } = ahead.shift()!;
        out.add(tarHeader(entry));
        if (entry.type === "file") {
          let written = 0;
          for (const read of reads) {
            const bytes = await read;
            pending--;
            written += bytes.length;
            if (written > entry.size) break;
            out.add(bytes);
          }
          if (written !== entry.size) throw new CattyError("internal", `${entry.name} in the save has ${written} bytes of content, not ${entry.size}.`);
          pendingBytes -= entry.size;
          out.add(tarPadding(entry.size));
        }
        yield* out.ready();
      }
      out.add(TAR_END);
      if (manifest) out.add(manifest.bytes());
      yield* out.ready(true);
    },

    /**
     * Deletes the user's blobs that no tree under `roots` refers to, and pack objects left with no
     * blob. The caller makes sure no save of the user is in progress meanwhile. Pack objects no
     * blob was ever indexed in (an upload cut short) go once older than `orphanAgeMs`.
     */
    async collect(userId: string, roots: readonly string[], opts: { now: number; orphanAgeMs: number }): Promise<CollectResult> {
      const keys = await keysOf(userId);
      const r = reader(userId);
      const live = new Set<string>();
      const seen = new Set<string>();
      const mark = async (hash: string, depth: number): Promise<void> => {
        if (seen.has(hash) || depth > MAX_DEPTH) return;
        seen.add(hash);
        live.add(blobId(keys, hash));
        const tree = await r.tree(hash);
        for (const e of tree.e) {
          if (e.t === "f") for (const c of e.c) live.add(blobId(keys, c));
          else if (e.t === "d") await mark(e.h, depth + 1);
        }
      };
      // A root that cannot be read stops the collection: what it refers to is unknown.
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
    },
  };
}

export type Vault = ReturnType<typeof createVault>;
