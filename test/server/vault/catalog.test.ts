/** The storage's records: each opens only under its own name and key; a record that is not one is refused, saying what is wrong. */
import { expect, test } from "bun:test";
import { readSaveRecord, readUserRecord, saveRecordKey, userRecordKey, writeSaveRecord, writeUserRecord } from "../../../server/vault/catalog.ts";
import { sealBlobs } from "../../../server/vault/crypto.ts";
import { tempDirs } from "../../helpers/fs.ts";
import { layerRig, MASTER, sessionRow } from "./layers.ts";

const tempDir = tempDirs("catty-catalog-");

test("a user's record opens with the master key at its own name only; another master key is told to check CATTY_MASTER_KEY", async () => {
  const r = await layerRig(tempDir);
  const user = { id: r.alice, name: "alice", createdAt: "2026-01-01T00:00:00.000Z", wrapped: "d3JhcHBlZA==" };
  await writeUserRecord(r.blobs, MASTER, user);
  const key = userRecordKey(r.alice);
  const bytes = (await r.blobs.getBytes(key))!;
  expect(Buffer.from(bytes).includes("alice")).toBe(false);
  expect(await readUserRecord(MASTER, key, bytes)).toEqual({ v: 1, ...user });
  await expect(readUserRecord(MASTER, userRecordKey("someone-else"), bytes)).rejects.toThrow(/does not decrypt/);
  await expect(readUserRecord(Buffer.alloc(32, 1), key, bytes)).rejects.toThrow(/CATTY_MASTER_KEY/);
  await r.store.close();
});

test("a save's record: named by a keyed hash (no session or save id in its name), read back whole; one whose fields are not a save's is refused", async () => {
  const r = await layerRig(tempDir);
  const keys = await r.keyring.keysOf(r.alice);
  const session = sessionRow(r.alice, "brave-tiger-1234");
  const save = { id: "save-0001", sessionId: session.id, key: `vault:${"ab".repeat(32)}`, createdAt: "2026-01-01T00:00:00.000Z", size: 5, files: 1, reason: "periodic", added: 5 };
  await writeSaveRecord(r.blobs, keys, session, save);
  const key = saveRecordKey(keys, r.alice, session.id, save.id);
  expect(key).not.toContain(session.id);
  expect(key).not.toContain(save.id);
  const record = await readSaveRecord(keys, key, (await r.blobs.getBytes(key))!);
  expect(record).toMatchObject({ session: { id: session.id, label: "brave-tiger-1234", userId: r.alice }, save });
  // Sealed right, but not a save's record (a label that is not one).
  const [forged] = await sealBlobs(keys, [{ aad: `catty record v1 ${key}`, plain: new TextEncoder().encode(JSON.stringify({ ...record, session: { ...record.session, label: "../../etc" } })) }]);
  await expect(readSaveRecord(keys, key, Buffer.concat(forged!))).rejects.toThrow(/is not a record this server reads/);
  await r.store.close();
});
