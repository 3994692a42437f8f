/**
 * The store of saves on disk and on S3 (s3rver): round trips through the agent's builder and
 * uploader and back out as tar, byte for byte with modes and links; encryption (no plaintext or
 * name in the store, another user's key opens nothing, a flipped byte is caught); collection
 * keeps every blob a kept save refers to; retention keeps the right saves.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { createHmac } from "node:crypto";
import { join } from "node:path";
import fc from "fast-check";
import { createDiskBlobStore } from "../../server/blobs/disk.ts";
import { createS3BlobStore } from "../../server/blobs/s3.ts";
import type { BlobStore } from "../../server/blobs/types.ts";
import { createUserToken, openStore } from "../../server/startup.ts";
import type { Store } from "../../server/store/types.ts";
import { blobId, sealBlobs } from "../../server/vault/crypto.ts";
import { savesToKeep } from "../../server/vault/retention.ts";
import { createVault, type Vault } from "../../server/vault/vault.ts";
import { createExcluder, extractArchive } from "../../src/lib/archive.ts";
import { silentLog } from "../../src/lib/log.ts";
import { SnapshotBuilder } from "../../src/lib/snapshot/build.ts";
import { BlobUploader } from "../../src/lib/snapshot/upload.ts";
import { startS3rver, type S3Fixture } from "../helpers/s3.ts";
import { flakyHttp } from "../helpers/flaky-http.ts";
import { tempDirs } from "../helpers/fs.ts";
import { saveOf } from "../helpers/vault.ts";
import { encodePack, sha256 } from "../../src/lib/snapshot/format.ts";
import { pathTree } from "../../src/lib/tree.ts";

const tempDir = tempDirs("catty-vault-");

interface Rig {
  store: Store;
  blobs: BlobStore;
  vault: Vault;
  alice: string;
  bob: string;
}

async function rig(blobs: BlobStore): Promise<Rig> {
  const store = await openStore({ dataDir: tempDir() });
  await createUserToken(store, "alice");
  await createUserToken(store, "bob");
  const vault = createVault({ store, blobs, master: Buffer.alloc(32, 9), log: silentLog });
  return { store, blobs, vault, alice: (await store.userByName("alice"))!.id, bob: (await store.userByName("bob"))!.id };
}

/** Saves `dir` for `user` the way the agent does, straight into the vault. */
async function save(r: Rig, user: string, dir: string, builder = new SnapshotBuilder({ tree: pathTree(dir), exclude: createExcluder(dir, "snapshot", true) })) {
  const uploader = new BlobUploader({
    missing: (h) => r.vault.missing(user, h),
    putPack: async (p) => void (await r.vault.storePack(user, p)),
  });
  const built = await builder.build(uploader, null);
  await uploader.flush();
  await r.vault.verify(user, built.root);
  return { ...built, added: uploader.added };
}

/** Restores the save under `root` into a new directory through the tar stream and the safe extractor. */
async function restore(r: Rig, user: string, root: string): Promise<string> {
  const dest = join(tempDir(), "restored");
  const tar = new Response(ReadableStreamFrom(r.vault.tar(user, root, { mtimeSec: 0 })));
  await extractArchive(new Uint8Array(await tar.arrayBuffer()), dest, { into: "empty" });
  return dest;
}

function ReadableStreamFrom(gen: AsyncGenerator<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream({
    async pull(c) {
      const n = await gen.next();
      if (n.done) c.close();
      else c.enqueue(n.value);
    },
  });
}

/** Every entry under `dir`: files by content and mode, symlinks by target, directories by mode. */
function picture(dir: string, rel = ""): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const path = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, path));
    if (st.isSymbolicLink()) out[path] = `link ${readlinkSync(join(dir, path))}`;
    else if (st.isDirectory()) {
      out[`${path}/`] = `dir ${(st.mode & 0o777).toString(8)}`;
      Object.assign(out, picture(dir, path));
    } else out[path] = `${(st.mode & 0o777).toString(8)} ${new Bun.CryptoHasher("sha256").update(readFileSync(join(dir, path))).digest("hex")}`;
  }
  return out;
}

const fileName = fc.stringMatching(/^[a-zA-Z0-9_][a-zA-Z0-9_. -]{0,20}$/).filter((n) => n !== "." && n !== ".." && !n.endsWith(" ") && n !== ".git");

function stores(): Array<[string, () => Promise<BlobStore>]> {
  return [
    ["disk", async () => createDiskBlobStore({ dir: join(tempDir(), "blobs"), secret: "ab".repeat(32) })],
    [
      "S3",
      async () =>
        createS3BlobStore({ bucket: s3.bucket, endpoint: s3.endpoint, region: "us-east-1", accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, prefix: `t${crypto.randomUUID()}` }),
    ],
  ];
}

let s3: S3Fixture;
beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(() => s3.stop());

for (const [kind, open] of stores()) {
  describe(`saves on ${kind}`, () => {
    test("random trees round-trip byte for byte, with modes, empty and binary files and symlinks", async () => {
      const r = await rig(await open());
      await fc.assert(
        fc.asyncProperty(
          fc.dictionary(fileName, fc.record({ bytes: fc.uint8Array({ maxLength: 3000 }), exec: fc.boolean(), sub: fc.option(fileName, { nil: undefined }) }), { maxKeys: 12 }),
          async (files) => {
            const dir = join(tempDir(), "ws");
            require("node:fs").mkdirSync(dir);
            let n = 0;
            for (const [name, f] of Object.entries(files)) {
              const sub = f.sub && !files[f.sub] ? f.sub : "";
              if (sub) require("node:fs").mkdirSync(join(dir, sub), { recursive: true });
              const path = join(dir, sub, name);
              if (require("node:fs").existsSync(path)) continue;
              writeFileSync(path, f.bytes);
              chmodSync(path, f.exec ? 0o755 : 0o644);
              if (n++ % 3 === 0) symlinkSync(name, join(dir, sub, `${name}.link`));
            }
            const saved = await save(r, r.alice, dir);
            expect(picture(await restore(r, r.alice, saved.root))).toEqual(picture(dir));
          },
        ),
        { numRuns: 15 },
      );
    });

    test("long and non-ASCII names and long link targets round-trip (pax headers)", async () => {
      const r = await rig(await open());
      const dir = join(tempDir(), "ws");
      const deep = join(dir, "d".repeat(80), "e".repeat(80));
      mkdirSync(deep, { recursive: true });
      writeFileSync(join(deep, `${"f".repeat(120)}.txt`), "long");
      writeFileSync(join(dir, "naïve café ☕.md"), "unicode");
      symlinkSync(`${"d".repeat(80)}/${"e".repeat(80)}/${"f".repeat(120)}.txt`, join(dir, "far-link"));
      const saved = await save(r, r.alice, dir);
      expect(picture(await restore(r, r.alice, saved.root))).toEqual(picture(dir));
    });

    test("an edit in the middle of a big file stores only the chunks around it; renames and deletes store almost nothing", async () => {
      const r = await rig(await open());
      const dir = join(tempDir(), "ws");
      const big = new Uint8Array(24 * 1024 * 1024);
      for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
      require("node:fs").mkdirSync(dir);
      writeFileSync(join(dir, "big.bin"), big);
      writeFileSync(join(dir, "small.txt"), "small");
      const builder = new SnapshotBuilder({ tree: pathTree(dir), exclude: createExcluder(dir, "snapshot", true) });
      const first = await save(r, r.alice, dir, builder);
      expect(first.added).toBeGreaterThanOrEqual(big.length);
      big.set(new TextEncoder().encode("an edit in the middle"), 12 * 1024 * 1024);
      writeFileSync(join(dir, "big.bin"), big);
      const edited = await save(r, r.alice, dir, builder);
      expect(edited.added).toBeLessThan(5 * 1024 * 1024);
      require("node:fs").renameSync(join(dir, "small.txt"), join(dir, "renamed.txt"));
      const renamed = await save(r, r.alice, dir, builder);
      // Only the directory's tree (which lists the big file's chunks).
      expect(renamed.added).toBeLessThan(4000);
      expect(picture(await restore(r, r.alice, renamed.root))).toEqual(picture(dir));
      // The first save is still whole.
      const old = await restore(r, r.alice, first.root);
      expect(readFileSync(join(old, "small.txt"), "utf8")).toBe("small");
    });

    test("the store holds no plaintext and no file name; another user's key opens nothing; a flipped byte is caught", async () => {
      const r = await rig(await open());
      const dir = join(tempDir(), "ws");
      require("node:fs").mkdirSync(dir);
      const secret = "the-plaintext-SECRET-content-0123456789";
      writeFileSync(join(dir, "very-distinctive-file-name.txt"), secret.repeat(100));
      writeFileSync(join(dir, "incompressible.bin"), crypto.getRandomValues(new Uint8Array(5000)));
      const saved = await save(r, r.alice, dir);
      const packs = await r.blobs.list("vault/");
      expect(packs.length).toBeGreaterThan(0);
      for (const p of packs) {
        const bytes = Buffer.from((await r.blobs.getRange(p.key, 0, p.size)) as Uint8Array);
        expect(bytes.includes(secret)).toBe(false);
        expect(bytes.includes("very-distinctive-file-name")).toBe(false);
        expect(bytes.includes(Buffer.from(readFileSync(join(dir, "incompressible.bin")).subarray(0, 64)))).toBe(false);
        expect(p.key).not.toContain(saved.root);
      }
      // Bob's saves know nothing of Alice's blobs, even of the same content.
      expect(await r.vault.missing(r.bob, [saved.root])).toEqual([saved.root]);
      await expect(restore(r, r.bob, saved.root)).rejects.toThrow(/not stored/);
      // A flipped byte in Alice's pack: the restore fails and says so.
      const pack = packs.find((p) => p.size > 4000) as { key: string; size: number };
      const bytes = Buffer.from((await r.blobs.getRange(pack.key, 0, pack.size)) as Uint8Array);
      bytes[Math.floor(bytes.length / 2)]! ^= 1;
      await r.blobs.put(pack.key, bytes);
      await expect(restore(r, r.alice, saved.root)).rejects.toThrow(/damaged/);
    });

    test("small blobs are sealed in groups: each opens under its own id, a group's damage is caught, and a row pointing into the wrong group is refused", async () => {
      const r = await rig(await open());
      const files: Record<string, string> = {};
      for (let i = 0; i < 300; i++) files[`d${i % 7}/f${i}.txt`] = `file ${i} `.repeat(50 + (i % 90));
      files["big.txt"] = "0123456789abcdef".repeat(5000);
      const s = saveOf(files);
      await r.vault.storePack(r.alice, s.pack);
      const keys = await r.vault.keysOf(r.alice);
      const ids = s.blobs.map((b) => blobId(keys, b.hash));
      const where = await r.store.blobLocations(r.alice, ids);
      const grouped = [...where.values()].filter((l) => l.grouped);
      // 300 files and 8 trees of up to 64 KB: a few groups of about 256 KB (0.3 MB of text) and one
      // of trees; the big file alone.
      expect(new Set(grouped.map((l) => l.offset)).size).toBeLessThanOrEqual(4);
      expect(grouped.length).toBe(s.blobs.length - 1);
      // Trees are grouped apart from files (a restore reads all trees first).
      const isTree = (bytes: Uint8Array): boolean => new TextDecoder().decode(bytes).startsWith('{"v":1,"e":[');
      const groupOf = (b: { hash: string }): string => `${where.get(blobId(keys, b.hash))!.pack}@${where.get(blobId(keys, b.hash))!.offset}`;
      const treeGroups = new Set(s.blobs.filter((b) => isTree(b.bytes)).map(groupOf));
      expect(treeGroups.size).toBe(1);
      expect(s.blobs.filter((b) => !isTree(b.bytes) && treeGroups.has(groupOf(b)))).toEqual([]);
      expect(where.get(blobId(keys, sha256(new TextEncoder().encode(files["big.txt"]))))?.grouped).toBeUndefined();
      const tar = async (): Promise<Record<string, string>> => {
        const dest = join(tempDir(), "restored");
        await extractArchive(new Uint8Array(await new Response(ReadableStreamFrom(r.vault.tar(r.alice, s.root, { mtimeSec: 0 }))).arrayBuffer()), dest, { into: "empty" });
        const out: Record<string, string> = {};
        for (const path of Object.keys(files)) out[path] = readFileSync(join(dest, path), "utf8");
        return out;
      };
      expect(await tar()).toEqual(files);
      // A row naming a group that does not hold the blob (the index and the packs disagree).
      const stranger = new TextEncoder().encode("a blob stored on its own");
      const strangerId = blobId(keys, sha256(stranger));
      const first = grouped[0]!;
      await r.store.insertBlobs(r.alice, [{ id: strangerId, pack: first.pack, offset: first.offset, length: first.length, grouped: true }]);
      const lie = saveOf({ "x.txt": stranger });
      await r.vault.storePack(r.alice, encodePack(lie.blobs.filter((b) => b.hash !== sha256(stranger))));
      const reading = async (): Promise<number> => {
        let n = 0;
        for await (const chunk of r.vault.tar(r.alice, lie.root, { mtimeSec: 0 })) n += chunk.length;
        return n;
      };
      await expect(reading()).rejects.toThrow(/not in the group its index names/);
      // A flipped byte in a group: every member of it is refused.
      const size = (await r.blobs.list(`vault/${r.alice}/`)).find((b) => b.key === first.pack)!.size;
      const pack = Buffer.from((await r.blobs.getRange(first.pack, 0, size)) as Uint8Array);
      pack[first.offset + 40]! ^= 1;
      await r.blobs.put(first.pack, pack);
      await expect(tar()).rejects.toThrow(/damaged/);
    });

    test("a restore's stream carries its files' chunks after the archive (GNU tar still reads it); a download's does not", async () => {
      const r = await rig(await open());
      const big = "0123456789abcdef".repeat(40_000);
      const s = saveOf({ "a.txt": "alpha", "sub/big.txt": big, "sub/empty.txt": "" });
      await r.vault.storePack(r.alice, s.pack);
      const bytesOf = async (manifest: boolean) => new Uint8Array(await new Response(ReadableStreamFrom(r.vault.tar(r.alice, s.root, { mtimeSec: 0, manifest }))).arrayBuffer());
      const withManifest = await bytesOf(true);
      const { written } = await extractArchive(withManifest, join(tempDir(), "restored"), { record: "manifest" });
      expect(written!.get("a.txt")?.chunks).toEqual([sha256(new TextEncoder().encode("alpha"))]);
      expect(written!.get("sub/empty.txt")?.chunks).toEqual([]);
      expect(written!.get("sub/big.txt")?.chunks).toEqual(saveOf({ "sub/big.txt": big }).blobs.filter((b) => b.bytes.length > 1000).map((b) => b.hash));
      const file = join(tempDir(), "restore.tar");
      writeFileSync(file, withManifest);
      const listed = Bun.spawnSync(["tar", "-tf", file]);
      expect(listed.exitCode).toBe(0);
      expect(listed.stdout.toString().split("\n").filter(Boolean).sort()).toEqual(["a.txt", "sub/", "sub/big.txt", "sub/empty.txt"]);
      const plain = await bytesOf(false);
      expect(withManifest.length).toBeGreaterThan(plain.length);
      expect((await extractArchive(plain, join(tempDir(), "restored"), { record: "manifest" })).written!.get("a.txt")?.chunks).toBeNull();
    });

    test("a restore of a save the server stored or read before looks nothing up; after another replica's collection it does, and reads blobs stored again in new packs", async () => {
      const r = await rig(await open());
      let lookups = 0;
      const counted = new Proxy(r.store, {
        get: (target, prop, receiver) =>
          prop === "blobLocations"
            ? (...args: Parameters<Store["blobLocations"]>) => {
                lookups++;
                return target.blobLocations(...args);
              }
            : Reflect.get(target, prop, receiver),
      });
      const replica = (): Vault => createVault({ store: counted, blobs: r.blobs, master: Buffer.alloc(32, 9), log: silentLog });
      const [a, b] = [replica(), replica()];
      const files = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`d${i % 4}/f${i}.txt`, `file ${i}`]));
      const s = saveOf(files);
      await a.storePack(r.alice, s.pack);
      const restoreWith = async (vault: Vault): Promise<Record<string, string>> => {
        lookups = 0;
        const dest = join(tempDir(), "restored");
        await extractArchive(new Uint8Array(await new Response(ReadableStreamFrom(vault.tar(r.alice, s.root, { mtimeSec: 0 }))).arrayBuffer()), dest, { into: "empty" });
        return Object.fromEntries(Object.keys(files).map((p) => [p, readFileSync(join(dest, p), "utf8")]));
      };
      // The replica that stored the blobs knows where they are.
      expect(await restoreWith(a)).toEqual(files);
      expect(lookups).toBe(0);
      // Another looks them up the first time only.
      expect(await restoreWith(b)).toEqual(files);
      expect(lookups).toBeGreaterThan(0);
      expect(await restoreWith(b)).toEqual(files);
      expect(lookups).toBe(0);
      // Everything collected by b, then stored again: new packs, new locations. a, which knew the
      // old ones, sees the deletion and looks them up again.
      await b.collect(r.alice, [], { now: Date.now() + 3_600_000, orphanAgeMs: 0 });
      expect(await r.blobs.list(`vault/${r.alice}/`)).toEqual([]);
      await b.storePack(r.alice, s.pack);
      expect(await restoreWith(a)).toEqual(files);
      expect(lookups).toBeGreaterThan(0);
      expect(await restoreWith(b)).toEqual(files);
      expect(lookups).toBe(0);
    });

    test("a pack whose blobs another transfer indexed first is not remembered as where they are (it is collected as an orphan)", async () => {
      const r = await rig(await open());
      const files = { "a.txt": "the same content, stored twice" };
      const s = saveOf(files);
      await r.vault.storePack(r.alice, s.pack);
      // A second replica that missed the first's rows (both checked before either indexed) stores
      // the same blobs again, in a pack of its own whose rows are ignored.
      const blind = new Proxy(r.store, {
        get: (target, prop, receiver) => (prop === "blobsPresent" ? async () => new Set<string>() : Reflect.get(target, prop, receiver)),
      });
      const late = createVault({ store: blind, blobs: r.blobs, master: Buffer.alloc(32, 9), log: silentLog });
      const packs = await r.blobs.list(`vault/${r.alice}/`);
      await late.storePack(r.alice, s.pack);
      expect((await r.blobs.list(`vault/${r.alice}/`)).length).toBe(packs.length + 1);
      // The orphan pack goes; no row pointed at it, so no deletion is counted.
      await late.collect(r.alice, [s.root], { now: Date.now() + 3_600_000, orphanAgeMs: 0 });
      expect(await r.blobs.list(`vault/${r.alice}/`)).toEqual(packs);
      expect(picture(await restore({ ...r, vault: late }, r.alice, s.root))).toEqual({ "a.txt": expect.stringMatching(/^644 /) });
    });

    test("small blobs sealed one by one (saves from before groups) still read", async () => {
      const r = await rig(await open());
      const s = saveOf({ "a.txt": "before groups", "sub/b.txt": "also before" });
      const keys = await r.vault.keysOf(r.alice);
      const sealed = await sealBlobs(keys, s.blobs.map((b) => ({ aad: blobId(keys, b.hash), plain: b.bytes })));
      const key = `vault/${r.alice}/old`;
      let offset = 0;
      const rows = sealed.map((pieces, i) => {
        const length = pieces.reduce((n, p) => n + p.length, 0);
        const row = { id: blobId(keys, s.blobs[i]!.hash), pack: key, offset, length };
        offset += length;
        return row;
      });
      await r.blobs.put(key, Buffer.concat(sealed.flat()));
      await r.store.insertBlobs(r.alice, rows);
      await r.vault.verify(r.alice, s.root);
      const dest = join(tempDir(), "restored");
      await extractArchive(new Uint8Array(await new Response(ReadableStreamFrom(r.vault.tar(r.alice, s.root, { mtimeSec: 0 }))).arrayBuffer()), dest, { into: "empty" });
      expect(readFileSync(join(dest, "a.txt"), "utf8")).toBe("before groups");
      expect(readFileSync(join(dest, "sub/b.txt"), "utf8")).toBe("also before");
    });

    test("a save whose tree is malformed (a name that climbs out) is refused, and cannot be read", async () => {
      const r = await rig(await open());
      const bad = new TextEncoder().encode(JSON.stringify({ v: 1, e: [{ t: "l", n: "..", l: "/etc" }] }));
      await r.vault.storePack(r.alice, encodePack([{ hash: sha256(bad), bytes: bad }]));
      await expect(r.vault.verify(r.alice, sha256(bad))).rejects.toThrow(/malformed/);
      await expect(restore(r, r.alice, sha256(bad))).rejects.toThrow(/malformed/);
    });

    test("a save nested deeper than 256 directories is refused, and its stream fails instead of running on", async () => {
      const r = await rig(await open());
      const deep = saveOf({ [`${"d/".repeat(300)}f.txt`]: "deep" });
      await r.vault.storePack(r.alice, deep.pack);
      await expect(r.vault.verify(r.alice, deep.root)).rejects.toThrow(/deeper than 256/);
      await expect(restore(r, r.alice, deep.root)).rejects.toThrow(/deeper than 256/);
      // 200 levels are fine.
      const fine = saveOf({ [`${"d/".repeat(200)}f.txt`]: "fine" });
      await r.vault.storePack(r.alice, fine.pack);
      await r.vault.verify(r.alice, fine.root);
      expect(readFileSync(join(await restore(r, r.alice, fine.root), `${"d/".repeat(200)}f.txt`), "utf8")).toBe("fine");
    });

    test("a pack with a blob that does not match its hash is refused whole", async () => {
      const r = await rig(await open());
      const { encodePack, sha256 } = await import("../../src/lib/snapshot/format.ts");
      const good = new TextEncoder().encode("good");
      const pack = encodePack([
        { hash: sha256(good), bytes: good },
        { hash: sha256(new TextEncoder().encode("claimed")), bytes: new TextEncoder().encode("planted") },
      ]);
      await expect(r.vault.storePack(r.alice, pack)).rejects.toThrow(/does not match its hash/);
      expect(await r.vault.missing(r.alice, [sha256(good)])).toEqual([sha256(good)]);
      expect(await r.blobs.list("vault/")).toEqual([]);
    });

    test("what one replica knew to be complete is checked again after another replica's collection", async () => {
      const r = await rig(await open());
      const other = createVault({ store: r.store, blobs: r.blobs, master: Buffer.alloc(32, 9), log: silentLog });
      const dir = join(tempDir(), "ws");
      mkdirSync(join(dir, "sub"), { recursive: true });
      writeFileSync(join(dir, "sub", "a.txt"), "only in the first save");
      writeFileSync(join(dir, "kept.txt"), "in both");
      const first = await save(r, r.alice, dir);
      require("node:fs").rmSync(join(dir, "sub"), { recursive: true });
      const second = await save(r, r.alice, dir);
      await other.collect(r.alice, [second.root], { now: Date.now(), orphanAgeMs: 60_000 });
      // This replica checked the first save whole before; its blobs are gone now.
      await expect(r.vault.verify(r.alice, first.root)).rejects.toThrow(/not stored/);
      await r.vault.verify(r.alice, second.root);
    });

    test("collection deletes what no kept save refers to and keeps every blob a kept save needs", async () => {
      const r = await rig(await open());
      const dir = join(tempDir(), "ws");
      require("node:fs").mkdirSync(dir);
      writeFileSync(join(dir, "shared.txt"), "shared by both saves");
      writeFileSync(join(dir, "gone.txt"), "only in the first save");
      const first = await save(r, r.alice, dir);
      require("node:fs").rmSync(join(dir, "gone.txt"));
      writeFileSync(join(dir, "new.txt"), "only in the second save");
      const second = await save(r, r.alice, dir);
      // An orphan pack (an upload cut short), old enough to go.
      await r.blobs.put(`vault/${r.alice}/orphan`, new Uint8Array(10));
      const result = await r.vault.collect(r.alice, [second.root], { now: Date.now() + 3_600_000, orphanAgeMs: 60_000 });
      expect(result.blobs).toBeGreaterThan(0);
      expect(picture(await restore(r, r.alice, second.root))).toEqual(picture(dir));
      await expect(restore(r, r.alice, first.root)).rejects.toThrow();
      expect((await r.blobs.list(`vault/${r.alice}/`)).map((b) => b.key)).not.toContain(`vault/${r.alice}/orphan`);
      // Nothing left to collect.
      expect(await r.vault.collect(r.alice, [second.root], { now: Date.now(), orphanAgeMs: 60_000 })).toEqual({ blobs: 0, packs: 0 });
    });
  });
}

describe("storage faults (S3 through a proxy that fails requests)", () => {
  test("storage failing every third request: saves and restores retry and come out whole", async () => {
    await using flaky = flakyHttp(s3.endpoint);
    const blobs = createS3BlobStore({ bucket: s3.bucket, endpoint: flaky.url, region: "us-east-1", accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, prefix: `f${crypto.randomUUID()}` });
    const r = await rig(blobs);
    const dir = join(tempDir(), "ws");
    mkdirSync(dir);
    for (let i = 0; i < 40; i++) writeFileSync(join(dir, `f${i}.txt`), `file ${i}\n`.repeat(100 * i + 1));
    writeFileSync(join(dir, "big.bin"), crypto.getRandomValues(new Uint8Array(65536)));
    flaky.failEvery(3);
    const saved = await save(r, r.alice, dir);
    expect(picture(await restore(r, r.alice, saved.root))).toEqual(picture(dir));
    expect(flaky.failed).toBeGreaterThan(0);
  });

  test("storage failing every request: the save fails, nothing of it is indexed, and the previous save stays whole", async () => {
    await using flaky = flakyHttp(s3.endpoint);
    const blobs = createS3BlobStore({ bucket: s3.bucket, endpoint: flaky.url, region: "us-east-1", accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, prefix: `f${crypto.randomUUID()}` });
    const r = await rig(blobs);
    const dir = join(tempDir(), "ws");
    mkdirSync(dir);
    writeFileSync(join(dir, "a.txt"), "the first save");
    const first = await save(r, r.alice, dir);
    writeFileSync(join(dir, "a.txt"), "the second save, never stored");
    flaky.failEvery(1);
    await expect(save(r, r.alice, dir)).rejects.toThrow();
    flaky.failEvery(0);
    const { sha256 } = await import("../../src/lib/snapshot/format.ts");
    const lost = sha256(new TextEncoder().encode("the second save, never stored"));
    expect(await r.vault.missing(r.alice, [lost])).toEqual([lost]);
    const back = await restore(r, r.alice, first.root);
    expect(readFileSync(join(back, "a.txt"), "utf8")).toBe("the first save");
  });
});

describe("blob names", () => {
  test("a blob's stored id is HMAC-SHA256 of its content hash under the user's naming key, as saves were always indexed", () => {
    const keys = { seal: Buffer.alloc(32, 1), name: Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7)) };
    for (const text of ["", "a", "catty"]) {
      const hash = sha256(new TextEncoder().encode(text));
      expect(blobId(keys, hash)).toBe(createHmac("sha256", keys.name).update(hash).digest("hex"));
    }
    expect(blobId({ ...keys, name: Buffer.alloc(32, 2) }, sha256(new Uint8Array(0)))).not.toBe(blobId(keys, sha256(new Uint8Array(0))));
  });
});

describe("retention", () => {
  test("every save of the last hour, the newest of each hour for a day, the newest of each day for the period, and always the latest", () => {
    const now = Date.parse("2026-11-29T12:00:00Z");
    const at = (minutesAgo: number, id: string) => ({ id, createdAt: new Date(now - minutesAgo * 60_000).toISOString() });
    const saves = [
      at(1, "m1"),
      at(30, "m30"),
      at(59, "m59"),
      at(61, "h1-new"),
      at(62, "h1-old"), // same clock hour as h1-new? only if both fall in one bucket
      at(5 * 60, "h5"),
      at(23 * 60, "h23"),
      at(2 * 24 * 60, "d2"),
      at(2 * 24 * 60 + 5, "d2-older"),
      at(40 * 24 * 60, "d40"),
    ];
    const keep = savesToKeep(saves, now, 30);
    for (const id of ["m1", "m30", "m59", "h1-new", "h5", "h23", "d2"]) expect(keep.has(id)).toBe(true);
    for (const id of ["h1-old", "d2-older", "d40"]) expect(keep.has(id)).toBe(false);
    // An old session's only save stays.
    expect(savesToKeep([at(90 * 24 * 60, "only")], now, 30)).toEqual(new Set(["only"]));
  });
});
