/**
 * `check` on a live server: a save that retention deletes (and collection takes the blobs of)
 * while the check walks it is not reported, and a save made while it runs, in a pack it did not
 * list, is checked whole; what the check reports was damaged.
 */
import { expect, test } from "bun:test";
import type { Store } from "../../../server/store/types.ts";
import { checkVault } from "../../../server/vault/check.ts";
import { tempDirs } from "../../helpers/fs.ts";
import { waitFor } from "../../helpers/wait.ts";
import { layerRig, MASTER, save, savesOver, sessionRow } from "./layers.ts";

const tempDir = tempDirs("catty-check-");

/** Alice with two saves a day apart; `oneSave(days)` makes another `days` later (retention keeps 30 days, and always the latest). */
async function liveServer() {
  const { store, blobs, alice } = await layerRig(tempDir);
  let now = Date.parse("2026-01-01T00:00:00Z");
  const saves = savesOver(store, blobs, () => now);
  const row = sessionRow(alice, "brave-tiger-1234");
  await store.insertSession(row);
  let n = 0;
  const oneSave = async (days: number): Promise<void> => {
    n++;
    now += days * 24 * 3_600_000;
    await save(saves, row, `save-${String(n).padStart(4, "0")}`, { "stays.txt": "in every save", "changes.txt": `save ${n}` });
  };
  await oneSave(0);
  await oneSave(1);
  return { store, blobs, saves, row, oneSave };
}

/** `store` with the `nth` call of `method` held until `release` is called; `reached` resolves when it is. */
function holding(store: Store, method: keyof Store, nth: number) {
  let calls = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let reached = false;
  const held = new Proxy(store, {
    get: (target, prop, receiver) => {
      const value = Reflect.get(target, prop, receiver);
      if (prop !== method || typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        if (++calls === nth) {
          reached = true;
          await gate;
        }
        return value.apply(target, args);
      };
    },
  }) as Store;
  return { held, release, reached: () => waitFor(() => reached, { timeoutMs: 10_000, what: `call ${nth} of ${String(method)}` }) };
}

test("saves retention deletes while the check walks them (their blobs collected) are not reported", async () => {
  const s = await liveServer();
  // Held as it starts walking the first save: its first lookup of where blobs are.
  const h = holding(s.store, "blobLocations", 1);
  const checking = checkVault({ store: h.held, blobs: s.blobs, master: MASTER, readData: true });
  await h.reached();
  await s.oneSave(60); // save-0003, two months on: the others are past retention
  expect((await s.store.listSaves(s.row.id)).map((x) => x.id)).toEqual(["save-0003"]);
  expect((await s.saves.sweep()).collected).toBeGreaterThan(0); // what only they used
  h.release();
  const report = await checking;
  expect(report.damaged).toEqual([]);
  expect(report.damagedPacks).toEqual([]);
  expect(report.saves).toBe(2);
  await s.store.close();
});

test("a save made after the check listed the packs, checked whole; damage in its pack is still found", async () => {
  const s = await liveServer();
  // Held after the packs are listed: the user's saves are read next.
  const h = holding(s.store, "savesOfUser", 2);
  const checking = checkVault({ store: h.held, blobs: s.blobs, master: MASTER, readData: true });
  await h.reached();
  const before = new Set((await s.blobs.list("vault/")).map((b) => b.key));
  await s.oneSave(1);
  h.release();
  const report = await checking;
  expect(report.damaged).toEqual([]);
  expect(report.saves).toBe(3);
  // The same, with the new save's pack damaged: that save, and only it, is named.
  const fresh = (await s.blobs.list("vault/")).find((b) => !before.has(b.key))!;
  const bytes = Buffer.from((await s.blobs.getBytes(fresh.key))!);
  for (let i = 0; i < bytes.length - 8; i += 5) bytes[i]! ^= 1;
  await s.blobs.put(fresh.key, bytes);
  expect((await checkVault({ store: s.store, blobs: s.blobs, master: MASTER, readData: true })).damaged.map((d) => d.save)).toEqual(["save-0003"]);
  await s.store.close();
});
