/**
 * Saves from before storage described itself: the sweep gives their packs headers (bytes where
 * they were, so the database's index still holds) and their saves and users records, after which
 * they recover from storage alone, byte for byte.
 */
import { expect, test } from "bun:test";
import { createUserToken, openStore } from "../../../server/startup.ts";
import { unitsOf } from "../../../server/vault/backfill.ts";
import { checkVault } from "../../../server/vault/check.ts";
import { blobId } from "../../../server/vault/crypto.ts";
import { hasPackHeader } from "../../../server/vault/pack-header.ts";
import { GROUP_BELOW, sealPack } from "../../../server/vault/pack-writer.ts";
import { recoverFromStorage } from "../../../server/vault/recover.ts";
import { createVault } from "../../../server/vault/vault.ts";
import { createDiskBlobStore } from "../../../server/blobs/disk.ts";
import { silentLog } from "../../../src/lib/log.ts";
import { join } from "node:path";
import { tempDirs } from "../../helpers/fs.ts";
import { saveOf } from "../../helpers/vault.ts";
import { downloads, MASTER, savesOver, sessionRow } from "./layers.ts";

const tempDir = tempDirs("catty-backfill-");

test("a pack's units from its rows: groups share one, bytes no row names become units of no blob; rows that overlap or run past the end describe nothing", () => {
  const rows = [
    { id: "a", offset: 10, length: 5, grouped: true },
    { id: "b", offset: 10, length: 5, grouped: true },
    { id: "c", offset: 15, length: 3 },
  ];
  expect(unitsOf(rows, 20)).toEqual([
    { length: 10, grouped: false, ids: [] },
    { length: 5, grouped: true, ids: ["a", "b"] },
    { length: 3, grouped: false, ids: ["c"] },
    { length: 2, grouped: false, ids: [] },
  ]);
  expect(unitsOf([...rows, { id: "d", offset: 12, length: 4 }], 20)).toBeNull();
  expect(unitsOf(rows, 17)).toBeNull();
  expect(unitsOf([{ id: "x", offset: 0, length: 4 }, { id: "y", offset: 0, length: 4 }], 4)).toBeNull();
});

test("the sweep describes a pack and a save from before headers and records; then they recover from storage alone, byte for byte", async () => {
  const store = await openStore({ dataDir: tempDir() });
  const blobs = createDiskBlobStore({ dir: join(tempDir(), "blobs"), secret: "ab".repeat(32) });
  await createUserToken(store, "alice");
  const alice = (await store.userByName("alice"))!;
  const keys = await createVault({ store, blobs, master: MASTER, log: silentLog }).keysOf(alice.id);
  // A pack as they were written: sealed units only, the first a blob no save needs (collected, so
  // the pack keeps bytes no row names), then the save's blobs, small ones in groups.
  const s = saveOf({ "a.txt": "alpha", "sub/b.txt": "beta", "big.bin": crypto.getRandomValues(new Uint8Array(GROUP_BELOW + 100)) });
  const unneeded = crypto.getRandomValues(new Uint8Array(GROUP_BELOW + 1));
  const key = `vault/${alice.id}/old`;
  const plain = [{ id: blobId(keys, new Bun.CryptoHasher("sha256").update(unneeded).digest("hex")), plain: unneeded }, ...s.blobs.map((b) => ({ id: blobId(keys, b.hash), plain: b.bytes }))];
  const sealed = await sealPack(keys, key, plain);
  const end = Math.max(...sealed.rows.map((r) => r.offset + r.length));
  await blobs.put(key, Buffer.concat(sealed.parts).subarray(0, end));
  await store.insertBlobs(alice.id, sealed.rows);
  const row = sessionRow(alice.id, "brave-tiger-1234");
  await store.insertSession(row);
  await store.insertSave({ id: "save-old1", sessionId: row.id, key: `vault:${s.root}`, createdAt: new Date().toISOString(), size: 1, files: 3, reason: "periodic", added: null });
  const saves = savesOver(store, blobs, Date.now);
  const before = await downloads(store, saves, alice.id);
  expect(await hasPackHeader(blobs, key, end)).toBe(false);
  expect(await blobs.list("vault-keys/")).toEqual([]);

  const check = () => checkVault({ store, blobs, master: MASTER, readData: true });
  expect(await check()).toMatchObject({ damaged: [], damagedPacks: [], undescribedPacks: 1 });
  await saves.sweep();
  expect(await check()).toMatchObject({ damaged: [], damagedPacks: [], undescribedPacks: 0 });
  const [pack] = await blobs.list(`vault/${alice.id}/`);
  expect(pack!.size).toBeGreaterThan(end);
  expect(await hasPackHeader(blobs, key, pack!.size)).toBe(true);
  expect((await blobs.list("vault-keys/")).length).toBe(1);
  expect((await blobs.list(`vault-saves/${alice.id}/`)).length).toBe(1);
  // The index the database holds still reads the pack.
  expect(await downloads(store, saves, alice.id)).toEqual(before);
  // A second sweep leaves the described pack alone.
  await saves.sweep();
  expect((await blobs.list(`vault/${alice.id}/`))[0]!.modifiedAt).toBe(pack!.modifiedAt);
  await store.close();

  const fresh = await openStore({ dataDir: tempDir() });
  const report = await recoverFromStorage({ store: fresh, blobs, master: MASTER });
  expect(report).toMatchObject({ users: 1, packs: 1, sessions: 1, saves: 1, problems: [] });
  expect(await downloads(fresh, savesOver(fresh, blobs, Date.now), alice.id)).toEqual(before);
  await fresh.close();
});
