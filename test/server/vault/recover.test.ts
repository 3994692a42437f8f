/**
 * Disaster recovery: saves made on disk and on S3 (s3rver), the database thrown away, an empty one
 * (SQLite and PostgreSQL) rebuilt from the bucket and the master key alone, and every save
 * downloaded byte for byte; `check` names exactly the saves that depend on a damaged pack.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createDiskBlobStore } from "../../../server/blobs/disk.ts";
import { createS3BlobStore } from "../../../server/blobs/s3.ts";
import type { BlobStore } from "../../../server/blobs/types.ts";
import { createUserToken, openStore } from "../../../server/startup.ts";
import type { Store } from "../../../server/store/types.ts";
import { checkVault } from "../../../server/vault/check.ts";
import { blobId, sealBlobs } from "../../../server/vault/crypto.ts";
import { recoverFromStorage } from "../../../server/vault/recover.ts";
import { createVault } from "../../../server/vault/vault.ts";
import { silentLog } from "../../../src/lib/log.ts";
import { tempDirs } from "../../helpers/fs.ts";
import { freshDatabase } from "../../helpers/postgres.ts";
import { startS3rver, type S3Fixture } from "../../helpers/s3.ts";
import { saveOf } from "../../helpers/vault.ts";
import { downloads, MASTER, save, savesOver, sessionRow } from "./layers.ts";

const tempDir = tempDirs("catty-recover-");

let s3: S3Fixture;
beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(() => s3.stop());

const buckets: Array<[string, () => BlobStore]> = [
  ["disk", () => createDiskBlobStore({ dir: join(tempDir(), "blobs"), secret: "ab".repeat(32) })],
  [
    "S3",
    () => createS3BlobStore({ bucket: s3.bucket, endpoint: s3.endpoint, region: "us-east-1", accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, prefix: `t${crypto.randomUUID()}` }),
  ],
];
const databases: Array<[string, () => Promise<Store>]> = [
  ["SQLite", () => openStore({ dataDir: tempDir() })],
  ["PostgreSQL", async () => openStore({ dataDir: tempDir(), databaseUrl: await freshDatabase() })],
];

for (const [bucket, openBucket] of buckets) {
  for (const [database, openDatabase] of databases) {
    describe(`recovery from ${bucket} into ${database}`, () => {
      test("the database thrown away: users, sessions and every save come back from the bucket and the master key, byte for byte", async () => {
        const blobs = openBucket();
        const old = await openStore({ dataDir: tempDir() });
        await createUserToken(old, "alice");
        await createUserToken(old, "bob");
        const [alice, bob] = [(await old.userByName("alice"))!, (await old.userByName("bob"))!];
        let t = Date.now();
        const saves = savesOver(old, blobs, () => t);
        const a = sessionRow(alice.id, "brave-tiger-1234");
        const b = sessionRow(bob.id, "calm-otter-5678");
        for (const row of [a, b]) await old.insertSession(row);
        await save(saves, a, "save-a1", { "a.txt": "alpha", "sub/big.bin": crypto.getRandomValues(new Uint8Array(200_000)) });
        t += 60_000;
        await save(saves, a, "save-a2", { "a.txt": "alpha, edited", "sub/big.bin": "now small" });
        await save(saves, b, "save-b1", { "readme.md": "bob's", "empty.txt": "" });
        const before = { alice: await downloads(old, saves, alice.id), bob: await downloads(old, saves, bob.id) };
        expect(Object.keys(before.alice).length).toBe(2);
        await old.close();

        const fresh = await openDatabase();
        const progress: string[] = [];
        const report = await recoverFromStorage({ store: fresh, blobs, master: MASTER, onProgress: (p) => progress.push(p.step) });
        expect(report).toMatchObject({ users: 2, sessions: 2, saves: 3, problems: [] });
        expect(progress).toContain("packs");
        expect((await fresh.userByName("alice"))!.id).toBe(alice.id);
        expect(await fresh.listTokens()).toEqual([]);
        const recovered = (await fresh.listSessions(alice.id))[0]!;
        expect(recovered).toMatchObject({ label: "brave-tiger-1234", userId: alice.id, status: "stopped", endReason: "recovered from storage" });
        expect(recovered.endedAt).not.toBeNull();
        const after = savesOver(fresh, blobs, () => t);
        expect({ alice: await downloads(fresh, after, alice.id), bob: await downloads(fresh, after, bob.id) }).toEqual(before);
        // A database that is not empty is refused, and nothing is written to it.
        await expect(recoverFromStorage({ store: fresh, blobs, master: MASTER })).rejects.toThrow(/not empty/);
        expect((await checkVault({ store: fresh, blobs, master: MASTER, readData: true })).damaged).toEqual([]);
        await fresh.close();
      });
    });
  }
}

describe("check", () => {
  test("a damaged pack: check names exactly the saves that depend on it (trees always, file blobs with --read-data); a missing pack likewise", async () => {
    const blobs = buckets[0]![1]();
    const store = await openStore({ dataDir: tempDir() });
    await createUserToken(store, "alice");
    const alice = (await store.userByName("alice"))!;
    let t = Date.now();
    const saves = savesOver(store, blobs, () => t);
    const [a, b] = [sessionRow(alice.id, "brave-tiger-1234"), sessionRow(alice.id, "calm-otter-5678")];
    for (const row of [a, b]) await store.insertSession(row);
    await save(saves, a, "save-a1", { "a.txt": "alpha", "sub/b.txt": "beta" });
    const firstPack = (await blobs.list(`vault/${alice.id}/`))[0]!;
    t += 60_000;
    await save(saves, b, "save-b1", { "other.txt": "unrelated" });
    t += 60_000;
    // Reuses a.txt's blob, stored in the first pack.
    await save(saves, a, "save-a2", { "a.txt": "alpha", "c.txt": "gamma" });
    expect((await checkVault({ store, blobs, master: MASTER, readData: true })).damaged).toEqual([]);

    const bytes = Buffer.from((await blobs.getBytes(firstPack.key))!);
    // Every 7th byte but the last 8 (the trailer: a pack whose trailer is gone looks like one from before headers).
    for (let i = 0; i < bytes.length - 8; i += 7) bytes[i]! ^= 1;
    await blobs.put(firstPack.key, bytes);
    const named = async (readData: boolean) => (await checkVault({ store, blobs, master: MASTER, readData })).damaged.map((d) => `${d.label}/${d.save}`).sort();
    expect(await named(false)).toEqual(["brave-tiger-1234/save-a1"]);
    expect(await named(true)).toEqual(["brave-tiger-1234/save-a1", "brave-tiger-1234/save-a2"]);
    const report = await checkVault({ store, blobs, master: MASTER, readData: true });
    expect(report.damaged[0]!.problems.join("\n")).toContain(firstPack.key);
    expect(report.damagedPacks).toEqual([{ pack: firstPack.key, problem: expect.stringMatching(/does not decrypt/) }]);
    await blobs.delete(firstPack.key);
    expect(await named(false)).toEqual(["brave-tiger-1234/save-a1", "brave-tiger-1234/save-a2"]);
    await store.close();
  });

  test("a pack from before headers: old saves still read, and recovery reports the pack it cannot index instead of guessing", async () => {
    const blobs = buckets[0]![1]();
    const store = await openStore({ dataDir: tempDir() });
    await createUserToken(store, "alice");
    const alice = (await store.userByName("alice"))!;
    const vault = createVault({ store, blobs, master: MASTER, log: silentLog });
    // Made the way packs were before headers: sealed units only.
    await vault.storePack(alice.id, saveOf({ "new.txt": "with a header" }).pack);
    const s = saveOf({ "a.txt": "before headers" });
    const keys = await vault.keysOf(alice.id);
    const sealed = await sealBlobs(keys, s.blobs.map((x) => ({ aad: blobId(keys, x.hash), plain: x.bytes })));
    let offset = 0;
    const rows = sealed.map((pieces, i) => {
      const length = pieces.reduce((n, p) => n + p.length, 0);
      const row = { id: blobId(keys, s.blobs[i]!.hash), pack: `vault/${alice.id}/old`, offset, length };
      offset += length;
      return row;
    });
    await blobs.put(`vault/${alice.id}/old`, Buffer.concat(sealed.flat()));
    await store.insertBlobs(alice.id, rows);
    await vault.verify(alice.id, s.root);
    let n = 0;
    for await (const chunk of vault.tar(alice.id, s.root, { mtimeSec: 0 })) n += chunk.length;
    expect(n).toBeGreaterThan(0);
    const report = await recoverFromStorage({ store: await openStore({ dataDir: tempDir() }), blobs, master: MASTER });
    expect(report.users).toBe(1);
    expect(report.packs).toBe(1);
    expect(report.problems).toEqual([expect.stringMatching(new RegExp(`Pack vault/${alice.id}/old has no header`))]);
    await store.close();
  });
});

describe("recovery from a storage someone tampered with", () => {
  test("a record copied under another name, an object that is not a record, a pack whose header was altered: each is reported, the rest recovered, nothing made up", async () => {
    const blobs = buckets[0]![1]();
    const old = await openStore({ dataDir: tempDir() });
    await createUserToken(old, "alice");
    const alice = (await old.userByName("alice"))!;
    let t = Date.now();
    const saves = savesOver(old, blobs, () => t);
    const [a, b] = [sessionRow(alice.id, "brave-tiger-1234"), sessionRow(alice.id, "calm-otter-5678")];
    for (const row of [a, b]) await old.insertSession(row);
    await save(saves, a, "save-a1", { "a.txt": "alpha" });
    const [alphaPack] = await blobs.list(`vault/${alice.id}/`);
    t += 60_000;
    await save(saves, b, "save-b1", { "b.txt": "beta" });
    const before = await downloads(old, saves, alice.id);
    await old.close();

    const [record] = await blobs.list(`vault-saves/${alice.id}/`);
    await blobs.put(`vault-saves/${alice.id}/copied`, (await blobs.getBytes(record!.key))!);
    await blobs.put("vault-keys/not-a-user", new TextEncoder().encode("garbage"));
    const pack = Buffer.from((await blobs.getBytes(alphaPack!.key))!);
    pack[pack.length - 12]! ^= 1;
    await blobs.put(alphaPack!.key, pack);

    const fresh = await openStore({ dataDir: tempDir() });
    const report = await recoverFromStorage({ store: fresh, blobs, master: MASTER });
    expect(report.users).toBe(1);
    expect(report.saves).toBe(2);
    expect(report.problems).toHaveLength(3);
    expect(report.problems.join("\n")).toMatch(/vault-keys\/not-a-user does not decrypt/);
    expect(report.problems.join("\n")).toMatch(new RegExp(`The header of pack ${alphaPack!.key} does not decrypt`));
    expect(report.problems.join("\n")).toMatch(/does not decrypt: it was altered, or sealed with another key/);
    // a's save is listed but its pack could not be indexed, and check says so; b's is whole.
    const damaged = (await checkVault({ store: fresh, blobs, master: MASTER })).damaged.map((d) => `${d.label}/${d.save}`);
    expect(damaged).toEqual(["brave-tiger-1234/save-a1"]);
    await fresh.deleteSave("save-a1");
    expect(await downloads(fresh, savesOver(fresh, blobs, () => t), alice.id)).toEqual({ "calm-otter-5678/save-b1": before["calm-otter-5678/save-b1"]! });
    await fresh.close();
  });
});
