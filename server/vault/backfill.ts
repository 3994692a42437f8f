/**
 * Storage written before it described itself, described now: a pack with no header gets one
 * (rewritten with the header after its bytes, which stay where they were), a kept save with no
 * record gets one, and so does its user. Made from the database, so that recovery from storage
 * alone (`recover.ts`) finds old saves too. The sweep runs it for a user while it holds the
 * user's collection lease (no pack of theirs is written or deleted meanwhile), a bounded number
 * of packs per sweep; packs found described are remembered for the process's life.
 */
import type { Log } from "../../src/lib/log.ts";
import type { BlobStore } from "../blobs/types.ts";
import type { SaveRow, Store } from "../store/types.ts";
import { SAVE_RECORDS, saveRecordKey, vaultRoot, writeSaveRecord } from "./catalog.ts";
import { packPrefix } from "./collect.ts";
import type { Keyring } from "./keys.ts";
import { hasPackHeader, sealPackHeader, type PackUnit } from "./pack-header.ts";
import { retrying } from "./pack-reader.ts";

export interface BackfillDeps {
  store: Pick<Store, "sessionById" | "blobsOfUser" | "blobLocations">;
  blobs: BlobStore;
  keyring: Keyring;
  log: Log;
}

export interface BackfillResult {
  packs: number;
  saves: number;
}

/** The units of a pack of `size` bytes from its rows; null when the rows overlap or run past its end (the database and the pack disagree). */
export function unitsOf(rows: ReadonlyArray<{ id: string; offset: number; length: number; grouped?: boolean }>, size: number): PackUnit[] | null {
  const byOffset = new Map<number, PackUnit & { offset: number }>();
  for (const row of rows) {
    const unit = byOffset.get(row.offset);
    if (!unit) byOffset.set(row.offset, { offset: row.offset, length: row.length, grouped: row.grouped === true, ids: [row.id] });
    else if (unit.length !== row.length || !unit.grouped || row.grouped !== true) return null;
    else unit.ids.push(row.id);
  }
  const units: PackUnit[] = [];
  let at = 0;
  for (const unit of [...byOffset.values()].sort((a, b) => a.offset - b.offset)) {
    if (unit.offset < at) return null;
    // Bytes no row names any more (blobs collected from a pack others keep alive): a unit of no blob.
    if (unit.offset > at) units.push({ length: unit.offset - at, grouped: false, ids: [] });
    units.push({ length: unit.length, grouped: unit.grouped, ids: unit.ids });
    at = unit.offset + unit.length;
  }
  if (at > size) return null;
  if (at < size) units.push({ length: size - at, grouped: false, ids: [] });
  return units;
}

export function createBackfill(deps: BackfillDeps) {
  const { store, blobs, keyring, log } = deps;
  const described = new Set<string>();

  /** Gives `pack` (of `size` bytes, with no header) its header; false when its rows do not fit it. */
  async function describePack(userId: string, pack: string, size: number, ids: string[]): Promise<boolean> {
    const rows = [...(await store.blobLocations(userId, ids))].map(([id, loc]) => ({ id, ...loc })).filter((r) => r.pack === pack);
    const units = unitsOf(rows, size);
    const bytes = units && (await retrying(() => blobs.getBytes(pack)));
    if (!units || !bytes || bytes.length !== size) {
      log.warn("a pack written before packs had headers does not match its index; left as it is (`catty-server check` tells which saves need it)", { pack });
      return false;
    }
    const header = await sealPackHeader(await keyring.keysOf(userId), pack, units);
    await retrying(() => blobs.put(pack, Buffer.concat([bytes, ...header])));
    return true;
  }

  return {
    /**
     * Describes what the user's storage lacks, looking at `budget.packs` packs at most (and
     * counting them off it); `kept` are the user's kept saves.
     */
    async run(userId: string, kept: readonly SaveRow[], budget: { packs: number }): Promise<BackfillResult> {
      const result: BackfillResult = { packs: 0, saves: 0 };
      await keyring.recorded(userId);
      const keys = await keyring.keysOf(userId);
      const recorded = new Set((await blobs.list(`${SAVE_RECORDS}${userId}/`)).map((b) => b.key));
      for (const save of kept) {
        if (!vaultRoot(save.key) || recorded.has(saveRecordKey(keys, userId, save.sessionId, save.id))) continue;
        const session = await store.sessionById(save.sessionId);
        if (!session) continue;
        await writeSaveRecord(blobs, keys, session, save);
        result.saves++;
      }
      const packs = (await blobs.list(packPrefix(userId))).filter((p) => !described.has(p.key));
      if (packs.length === 0) return result;
      const idsByPack = Map.groupBy(await store.blobsOfUser(userId), (row) => row.pack);
      for (const pack of packs) {
        const ids = idsByPack.get(pack.key);
        // A pack no row names is the collection's to delete.
        if (!ids) continue;
        if (budget.packs <= 0) break;
        budget.packs--;
        if (!(await hasPackHeader(blobs, pack.key, pack.size))) {
          if (!(await describePack(userId, pack.key, pack.size, ids.map((r) => r.id)))) continue;
          result.packs++;
        }
        described.add(pack.key);
      }
      return result;
    },
  };
}
