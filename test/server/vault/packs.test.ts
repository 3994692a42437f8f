/** The vault's pack writer and reader: what one writes the other reads back, checked; damage and lies are caught. */
import { expect, test } from "bun:test";
import { blobId } from "../../../server/vault/crypto.ts";
import { createBlobReader } from "../../../server/vault/pack-reader.ts";
import { readPackHeader } from "../../../server/vault/pack-header.ts";
import { GROUP_BELOW, sealPack } from "../../../server/vault/pack-writer.ts";
import { sha256 } from "../../../src/lib/snapshot/format.ts";
import { tempDirs } from "../../helpers/fs.ts";
import { layerRig } from "./layers.ts";

const tempDir = tempDirs("catty-packs-");

test("small blobs share a group, large ones stand alone; the reader reads each back by its hash and looks each location up once", async () => {
  const r = await layerRig(tempDir);
  const keys = await r.keyring.keysOf(r.alice);
  const contents = [...Array.from({ length: 20 }, (_, i) => `small ${i}`), "x".repeat(GROUP_BELOW + 10)].map((s) => new TextEncoder().encode(s));
  const plain = contents.map((bytes) => ({ id: blobId(keys, sha256(bytes)), plain: bytes }));
  const pack = `vault/${r.alice}/p1`;
  const sealed = await sealPack(keys, pack, plain);
  expect(sealed.rows.length).toBe(21);
  expect(new Set(sealed.rows.filter((row) => row.grouped).map((row) => row.offset)).size).toBe(1);
  expect(sealed.rows.find((row) => row.id === plain.at(-1)!.id)!.grouped).toBeUndefined();
  await r.blobs.put(pack, Buffer.concat(sealed.parts));
  await r.store.insertBlobs(r.alice, sealed.rows);
  let lookups = 0;
  const store = { blobLocations: (u: string, ids: readonly string[]) => (lookups++, r.store.blobLocations(u, ids)) };
  const reader = createBlobReader({ store, blobs: r.blobs, keyring: r.keyring }, r.alice);
  await reader.locate(contents.map((c) => sha256(c)));
  expect(lookups).toBe(1);
  for (const c of contents) expect(Buffer.from(await reader.read(sha256(c))).equals(Buffer.from(c))).toBe(true);
  expect(lookups).toBe(1);
  await expect(reader.read(sha256(new TextEncoder().encode("never stored")))).rejects.toThrow(/not stored/);
  await r.store.close();
});

test("a flipped byte in a pack, a pack gone, and a tree that is not one: each is refused with what is wrong", async () => {
  const r = await layerRig(tempDir);
  const keys = await r.keyring.keysOf(r.alice);
  const big = crypto.getRandomValues(new Uint8Array(GROUP_BELOW + 1));
  const notATree = new TextEncoder().encode("not a tree");
  const pack = `vault/${r.alice}/p2`;
  const sealed = await sealPack(keys, pack, [big, notATree].map((b) => ({ id: blobId(keys, sha256(b)), plain: b })));
  const bytes = Buffer.concat(sealed.parts);
  bytes[100]! ^= 1;
  await r.blobs.put(pack, bytes);
  await r.store.insertBlobs(r.alice, sealed.rows);
  const reader = () => createBlobReader({ store: r.store, blobs: r.blobs, keyring: r.keyring }, r.alice);
  await expect(reader().read(sha256(big))).rejects.toThrow(/damaged/);
  await expect(reader().tree(sha256(notATree))).rejects.toThrow(/malformed/);
  await r.blobs.delete(pack);
  await expect(reader().read(sha256(notATree))).rejects.toThrow(/missing from storage/);
  await r.store.close();
});

test("a pack's header lists where its blobs are; a header altered, or moved to another pack, is refused with what is wrong", async () => {
  const r = await layerRig(tempDir);
  const keys = await r.keyring.keysOf(r.alice);
  const contents = ["one", "two", "x".repeat(GROUP_BELOW + 1)].map((s) => new TextEncoder().encode(s));
  const pack = `vault/${r.alice}/p3`;
  const sealed = await sealPack(keys, pack, contents.map((b) => ({ id: blobId(keys, sha256(b)), plain: b })));
  const bytes = Buffer.concat(sealed.parts);
  const header = await readPackHeader(keys, pack, bytes);
  expect(header).toEqual({ ok: true, rows: expect.arrayContaining(sealed.rows) });
  expect(header.ok && header.rows.length).toBe(3);
  expect(await readPackHeader(keys, `vault/${r.alice}/elsewhere`, bytes)).toMatchObject({ ok: false, problem: "damaged", message: expect.stringMatching(/does not decrypt/) });
  const altered = Buffer.from(bytes);
  altered[altered.length - 20]! ^= 1;
  expect(await readPackHeader(keys, pack, altered)).toMatchObject({ ok: false, problem: "damaged" });
  const claims = Buffer.from(bytes);
  claims.writeUInt32BE(bytes.length, bytes.length - 8);
  expect(await readPackHeader(keys, pack, claims)).toMatchObject({ ok: false, message: expect.stringMatching(/claims more bytes/) });
  expect(await readPackHeader(keys, pack, bytes.subarray(0, bytes.length - 8))).toMatchObject({ ok: false, problem: "legacy" });
  await r.store.close();
});
