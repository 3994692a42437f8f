/** The vault's restore stream over a blob reader: a save as tar, files in order with their modes; a file whose chunks do not add up is refused. */
import { expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { BlobReader } from "../../../server/vault/pack-reader.ts";
import { tarStream } from "../../../server/vault/restore.ts";
import { extractArchive } from "../../../src/lib/archive.ts";
import { decodeTree, encodeTree, sha256 } from "../../../src/lib/snapshot/format.ts";
import { tempDirs } from "../../helpers/fs.ts";
import { saveOf } from "../../helpers/vault.ts";

const tempDir = tempDirs("catty-restore-");

/** A reader over blobs in memory, counting lookups. */
function memoryReader(blobs: Map<string, Uint8Array>): BlobReader & { located: number } {
  const r = {
    located: 0,
    async locate() {
      r.located++;
    },
    async read(hash: string) {
      const b = blobs.get(hash);
      if (!b) throw new Error(`no blob ${hash}`);
      return b;
    },
    async tree(hash: string) {
      return decodeTree(await r.read(hash));
    },
  };
  return r;
}

const bytesOf = async (gen: AsyncGenerator<Uint8Array>): Promise<Uint8Array> => {
  const parts: Uint8Array[] = [];
  for await (const p of gen) parts.push(p);
  return Buffer.concat(parts);
};

test("a save streams as a tar archive that extracts to its files, one lookup per directory", async () => {
  const files = { "a.txt": "alpha", "sub/b.txt": "beta", "sub/deeper/c.txt": "gamma".repeat(1000) };
  const s = saveOf(files);
  const reader = memoryReader(new Map(s.blobs.map((b) => [b.hash, b.bytes])));
  const dest = join(tempDir(), "out");
  await extractArchive(await bytesOf(tarStream(reader, s.root, { mtimeSec: 0 })), dest, { into: "empty" });
  for (const [path, content] of Object.entries(files)) expect(readFileSync(join(dest, path), "utf8")).toBe(content);
  expect(statSync(join(dest, "sub/deeper")).isDirectory()).toBe(true);
  // The root, then one per directory (three).
  expect(reader.located).toBe(4);
});

test("a file whose chunks hold more bytes than its entry says is refused, not written short or long", async () => {
  const chunk = new TextEncoder().encode("twelve bytes");
  const root = encodeTree([{ t: "f", n: "f.txt", m: 0o644, s: 5, mt: 0, c: [sha256(chunk)] }]);
  const reader = memoryReader(new Map([[sha256(chunk), chunk], [sha256(root), root]]));
  await expect(bytesOf(tarStream(reader, sha256(root), { mtimeSec: 0 }))).rejects.toThrow(/has 12 bytes of content, not 5/);
});
