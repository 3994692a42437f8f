/**
 * Saves in memory, for tests: a `VaultClient` that keeps what it is sent (checking every blob
 * against its hash, as the server does), and readers of the trees it holds.
 */
import { decodePack, decodeTree, encodePack, encodeTree, sha256, type PackRecord, type TreeEntry } from "../../src/lib/snapshot/format.ts";
import type { VaultClient } from "../../src/lib/snapshot/upload.ts";
import type { BlobStore } from "../../server/blobs/types.ts";
import { createSaves, type SavesDeps } from "../../server/saves.ts";
import type { Store } from "../../server/store/types.ts";
import { ticketKey } from "../../server/tickets.ts";
import { createVault } from "../../server/vault/vault.ts";
import { silentLog } from "../../src/lib/log.ts";

export interface MemoryVault extends VaultClient {
  blobs: Map<string, Uint8Array>;
  queries: number;
  packs: number;
  /** Every file of the save under `root`: path → content (symlinks as `-> target`), modes, and chunks. */
  files(root: string): Record<string, string>;
  chunks(root: string): Record<string, string[]>;
  modes(root: string): Record<string, number>;
}

export function memoryVault(): MemoryVault {
  const blobs = new Map<string, Uint8Array>();
  const walk = (hash: string, prefix: string, visit: (path: string, e: TreeEntry) => void): void => {
    const tree = decodeTree(blobs.get(hash) as Uint8Array);
    for (const e of tree.e) {
      const path = prefix + e.n;
      visit(path, e);
      if (e.t === "d") walk(e.h, `${path}/`, visit);
    }
  };
  const v: MemoryVault = {
    blobs,
    queries: 0,
    packs: 0,
    async missing(hashes) {
      v.queries++;
      return hashes.filter((h) => !blobs.has(h));
    },
    async putPack(pack) {
      v.packs++;
      for (const r of decodePack(pack)) blobs.set(r.hash, r.bytes);
    },
    files(root) {
      const out: Record<string, string> = {};
      walk(root, "", (path, e) => {
        if (e.t === "f") out[path] = Buffer.concat(e.c.map((c) => blobs.get(c) as Uint8Array)).toString();
        else if (e.t === "l") out[path] = `-> ${e.l}`;
      });
      return out;
    },
    chunks(root) {
      const out: Record<string, string[]> = {};
      walk(root, "", (path, e) => {
        if (e.t === "f") out[path] = e.c;
      });
      return out;
    },
    modes(root) {
      const out: Record<string, number> = {};
      walk(root, "", (path, e) => {
        if (e.t !== "l") out[path] = e.m;
      });
      return out;
    },
  };
  return v;
}

/**
 * The blobs of a save holding `files` (path → content; nested paths make directories), as an
 * agent would send them, and its root.
 */
export function saveOf(files: Record<string, string | Uint8Array>): { root: string; blobs: PackRecord[]; pack: Uint8Array } {
  const blobs = new Map<string, Uint8Array>();
  const build = (entries: Array<[string, string | Uint8Array]>): string => {
    const dirs = new Map<string, Array<[string, string | Uint8Array]>>();
    const tree: TreeEntry[] = [];
    for (const [path, content] of entries) {
      const slash = path.indexOf("/");
      if (slash >= 0) {
        const name = path.slice(0, slash);
        dirs.set(name, [...(dirs.get(name) ?? []), [path.slice(slash + 1), content]]);
        continue;
      }
      const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
      const hash = sha256(bytes);
      blobs.set(hash, bytes);
      tree.push({ t: "f", n: path, m: 0o644, s: bytes.length, mt: 1_700_000_000_000, c: bytes.length === 0 ? [] : [hash] });
    }
    for (const [name, sub] of dirs) tree.push({ t: "d", n: name, m: 0o755, h: build(sub) });
    const bytes = encodeTree(tree);
    const hash = sha256(bytes);
    blobs.set(hash, bytes);
    return hash;
  };
  const root = build(Object.entries(files));
  const records = [...blobs].map(([hash, bytes]) => ({ hash, bytes }));
  return { root, blobs: records, pack: encodePack(records) };
}

/** The server's saves over `store` and `blobs`, with small caps. */
export function savesOver(store: Store, blobs: BlobStore, opts: Partial<SavesDeps> = {}) {
  const master = Buffer.alloc(32, 3);
  return createSaves({
    store,
    blobs,
    vault: createVault({ store, blobs, master, log: silentLog }),
    ticketKey: ticketKey(master),
    log: silentLog,
    limits: { maxUploadBytes: 1000, maxSaveBytes: 1000, retentionDays: 30 },
    transferTtlMs: 60_000,
    ...opts,
  });
}
