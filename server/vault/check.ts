/**
 * `catty-server check [--read-data]` (restic's `check`): every kept save's trees are read and
 * opened, and every blob they name must be indexed, in a pack that exists and is long enough;
 * with `readData`, every blob is read and opened too, and every pack's header is read and
 * compared with the index (what recovery would rely on). Reports each damaged save with what is
 * wrong, and each damaged pack header. It only reads, so it is safe on a live server; a save deleted by retention while it
 * ran is not reported.
 */
import type { BlobStore } from "../blobs/types.ts";
import type { Store } from "../store/types.ts";
import { vaultRoot } from "./catalog.ts";
import { packPrefix } from "./collect.ts";
import { emptyReadIndex } from "./index.ts";
import { createKeyring } from "./keys.ts";
import type { UserKeys } from "./crypto.ts";
import { readPackTail } from "./pack-header.ts";
import { createBlobReader, MAX_DEPTH } from "./pack-reader.ts";
import type { Progress } from "./recover.ts";

export interface DamagedSave {
  user: string;
  session: string;
  label: string;
  save: string;
  createdAt: string;
  /** What is wrong, a few lines at most. */
  problems: string[];
}

export interface CheckReport {
  saves: number;
  blobs: number;
  damaged: DamagedSave[];
  /** With `readData`: packs whose header is damaged or leaves out blobs the index places in them (recovery could not index those blobs). */
  damagedPacks: Array<{ pack: string; problem: string }>;
  /**
   * With `readData`: packs with no header: from before headers and not yet described by the
   * sweep, or with their end cut off (the sweep describes those again from the index). Recovery
   * would skip them.
   */
  undescribedPacks: number;
}

export interface CheckDeps {
  store: Store;
  blobs: BlobStore;
  master: Buffer;
  readData?: boolean;
  onProgress?: (p: Omit<Progress, "step"> & { step: "saves" | "packs" }) => void;
}

const MAX_PROBLEMS = 5;

export async function checkVault(deps: CheckDeps): Promise<CheckReport> {
  const { store, blobs } = deps;
  const keyring = createKeyring({ store, master: deps.master });
  const report: CheckReport = { saves: 0, blobs: 0, damaged: [], damagedPacks: [], undescribedPacks: 0 };
  const users = await store.usersWithBlobs();
  const all = (await Promise.all(users.map(async (u) => (await store.savesOfUser(u)).map((s) => ({ user: u, save: s }))))).flat();
  let done = 0;
  for (const user of users) {
    const index = emptyReadIndex();
    const reader = createBlobReader({ store, blobs, keyring }, user, index);
    const sizes: ReadonlyMap<string, number> = new Map((await blobs.list(packPrefix(user))).map((b) => [b.key, b.size]));
    /** Each blob's problem (null: none), checked once for all the user's saves. */
    const checked = new Map<string, Promise<string | null>>();
    const checkBlob = (hash: string): Promise<string | null> => {
      let result = checked.get(hash);
      if (!result) {
        result = (async () => {
          const loc = index.locations.get(hash);
          if (!loc) return `blob ${hash.slice(0, 12)}… is not indexed`;
          // A pack written since the listing (a save made meanwhile, on a live server) is looked at on its own.
          const size = sizes.get(loc.pack) ?? (await blobs.stat(loc.pack))?.size;
          if (size === undefined) return `pack ${loc.pack} is missing from storage`;
          if (loc.offset + loc.length > size) return `pack ${loc.pack} is cut short`;
          if (!deps.readData) return null;
          return reader.read(hash).then(
            () => null,
            (err: unknown) => `${(err as Error).message} (pack ${loc.pack})`,
          );
        })();
        checked.set(hash, result);
      }
      return result;
    };
    for (const save of await store.savesOfUser(user)) {
      deps.onProgress?.({ step: "saves", done: done++, total: all.length });
      const root = vaultRoot(save.key);
      if (!root) continue;
      report.saves++;
      const problems = new Set<string>();
      const walk = async (hash: string, depth: number): Promise<void> => {
        if (problems.size >= MAX_PROBLEMS || depth > MAX_DEPTH) return;
        await reader.locate([hash]);
        const treeProblem = await checkBlob(hash);
        if (treeProblem) return void problems.add(treeProblem);
        let tree;
        try {
          tree = await reader.tree(hash);
        } catch (err) {
          return void problems.add(`tree ${hash.slice(0, 12)}…: ${(err as Error).message}`);
        }
        const chunks = tree.e.flatMap((e) => (e.t === "f" ? e.c : []));
        await reader.locate(chunks);
        for (const c of chunks) {
          const problem = await checkBlob(c);
          if (problem) problems.add(problem);
        }
        for (const e of tree.e) if (e.t === "d") await walk(e.h, depth + 1);
      };
      await walk(root, 0);
      if (problems.size === 0) continue;
      // Deleted meanwhile (retention, on a live server): not damage.
      if (!(await store.listSaves(save.sessionId)).some((s) => s.id === save.id)) continue;
      const session = await store.sessionById(save.sessionId);
      report.damaged.push({ user, session: save.sessionId, label: session?.label ?? save.sessionId, save: save.id, createdAt: save.createdAt, problems: [...problems] });
    }
    report.blobs += checked.size;
    if (deps.readData) await checkHeaders(deps, report, user, await keyring.keysOf(user), sizes);
  }
  return report;
}

/** Reads each of the user's packs' header and compares it with the index. */
async function checkHeaders(deps: CheckDeps, report: CheckReport, user: string, keys: UserKeys, sizes: ReadonlyMap<string, number>): Promise<void> {
  const { store, blobs } = deps;
  const indexed = Map.groupBy(await store.blobsOfUser(user), (row) => row.pack);
  let done = 0;
  for (const [pack, listedSize] of sizes) {
    deps.onProgress?.({ step: "packs", done: done++, total: sizes.size });
    let header = await readPackTail(blobs, keys, pack, listedSize);
    if (!header.ok) {
      // Deleted by a collection, or given its header by the sweep, since it was listed (a live server): not damage.
      const now = await blobs.stat(pack);
      if (!now) continue;
      if (now.size !== listedSize) header = await readPackTail(blobs, keys, pack, now.size);
    }
    if (!header.ok) {
      if (header.problem === "legacy") report.undescribedPacks++;
      else report.damagedPacks.push({ pack, problem: header.message });
      continue;
    }
    const listed = new Set(header.rows.map((r) => r.id));
    const unlisted = (indexed.get(pack) ?? []).filter((r) => !listed.has(r.id)).length;
    if (unlisted > 0) report.damagedPacks.push({ pack, problem: `The header of pack ${pack} leaves out ${unlisted} blob${unlisted === 1 ? "" : "s"} the index places in it.` });
  }
}
