/** The vault's index layer: a user's index lasts until one of their blobs is deleted; the least recently used go first. */
import { expect, test } from "bun:test";
import { createIndexCache } from "../../../server/vault/index.ts";

test("an index is kept until the user's deletion count moves, and the least recently used users' go first past the limit", async () => {
  const deletions = new Map<string, number>();
  const cache = createIndexCache({ store: { blobDeletions: async (u) => deletions.get(u) ?? 0 }, maxEntries: 3 });
  const a = await cache.indexOf("a");
  a.locations.set("h1", { pack: "p", offset: 0, length: 1 });
  a.locations.set("h2", { pack: "p", offset: 1, length: 1 });
  expect(await cache.indexOf("a")).toBe(a);
  expect(cache.isCurrent("a", a)).toBe(true);
  deletions.set("a", 1);
  const a2 = await cache.indexOf("a");
  expect(a2).not.toBe(a);
  expect(a2.locations.size).toBe(0);
  expect(cache.isCurrent("a", a)).toBe(false);
  a2.locations.set("h1", { pack: "p", offset: 0, length: 1 });
  a2.locations.set("h2", { pack: "p", offset: 1, length: 1 });
  const b = await cache.indexOf("b");
  b.locations.set("h3", { pack: "q", offset: 0, length: 1 });
  b.locations.set("h4", { pack: "q", offset: 1, length: 1 });
  // 4 entries over the limit of 3: taking c's drops a's (the least recently used), not b's.
  await cache.indexOf("c");
  expect(cache.isCurrent("a", a2)).toBe(false);
  expect(cache.isCurrent("b", b)).toBe(true);
});
