/** The vault's collection: marks what kept roots reach, deletes the rest and packs left empty, and keeps a young orphan pack. */
import { expect, test } from "bun:test";
import { collectUser } from "../../../server/vault/collect.ts";
import { blobId } from "../../../server/vault/crypto.ts";
import { createBlobReader } from "../../../server/vault/pack-reader.ts";
import { sealPack } from "../../../server/vault/pack-writer.ts";
import { silentLog } from "../../../src/lib/log.ts";
import { tempDirs } from "../../helpers/fs.ts";
import { saveOf } from "../../helpers/vault.ts";
import { layerRig } from "./layers.ts";

const tempDir = tempDirs("catty-collect-layer-");

test("blobs no kept root reaches go, with packs left empty; a pack no row names goes only once old enough", async () => {
  const r = await layerRig(tempDir);
  const keys = await r.keyring.keysOf(r.alice);
  const store = async (name: string, files: Record<string, string>) => {
    const s = saveOf(files);
    const sealed = await sealPack(keys, `vault/${r.alice}/${name}`, s.blobs.map((b) => ({ id: blobId(keys, b.hash), plain: b.bytes })));
    await r.blobs.put(`vault/${r.alice}/${name}`, Buffer.concat(sealed.parts));
    await r.store.insertBlobs(r.alice, sealed.rows);
    return s;
  };
  const kept = await store("kept", { "a.txt": "kept" });
  await store("dropped", { "b.txt": "dropped" });
  await r.blobs.put(`vault/${r.alice}/orphan`, new Uint8Array(10));
  const deps = { store: r.store, blobs: r.blobs, keyring: r.keyring, log: silentLog };
  const reader = () => createBlobReader({ store: r.store, blobs: r.blobs, keyring: r.keyring }, r.alice);
  const young = await collectUser(deps, reader(), r.alice, [kept.root], { now: Date.now(), orphanAgeMs: 3_600_000 });
  expect(young).toEqual({ blobs: 2, packs: 1 });
  expect((await r.blobs.list(`vault/${r.alice}/`)).map((b) => b.key).sort()).toEqual([`vault/${r.alice}/kept`, `vault/${r.alice}/orphan`]);
  const old = await collectUser(deps, reader(), r.alice, [kept.root], { now: Date.now() + 7_200_000, orphanAgeMs: 3_600_000 });
  expect(old).toEqual({ blobs: 0, packs: 1 });
  expect((await r.blobs.list(`vault/${r.alice}/`)).map((b) => b.key)).toEqual([`vault/${r.alice}/kept`]);
  expect((await r.store.blobsOfUser(r.alice)).length).toBe(kept.blobs.length);
  await r.store.close();
});
