/**
 * A tree's bytes are checked by hand (`decodeTree`), for speed; these tests hold that check to
 * the zod schemas that describe a tree: on well-formed trees and on every kind of damage, both
 * accept and refuse the same. And the uploader's packs: each blob once, under the target (unless
 * one blob alone passes it), only what the store lacks.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { decodePack, decodeTree, encodePack, encodeTree, MAX_PACK_BYTES, MAX_QUERY_HASHES, PACK_TARGET_BYTES, sha256, Tree, type TreeEntry } from "../../src/lib/snapshot/format.ts";
import { BlobUploader } from "../../src/lib/snapshot/upload.ts";

const hash = fc.stringMatching(/^[0-9a-f]{64}$/);
const name = fc.oneof(fc.stringMatching(/^[a-zA-Z0-9._-]{1,12}$/).filter((n) => n !== "." && n !== ".."), fc.constantFrom("naïve café ☕", "é".repeat(127)));
const entry: fc.Arbitrary<TreeEntry> = fc.oneof(
  fc.record({ t: fc.constant("f" as const), n: name, m: fc.integer({ min: 0, max: 0o7777 }), s: fc.nat(), mt: fc.integer(), c: fc.array(hash, { maxLength: 3 }) }),
  fc.record({ t: fc.constant("d" as const), n: name, m: fc.integer({ min: 0, max: 0o7777 }), h: hash }),
  fc.record({ t: fc.constant("l" as const), n: name, l: fc.string({ minLength: 1, maxLength: 20 }) }),
);

/** What the schemas say of `bytes`: the tree, or that it is refused. */
function bySchema(bytes: Uint8Array): "refused" | unknown {
  let parsed;
  try {
    parsed = Tree.safeParse(JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes)));
  } catch {
    return "refused";
  }
  if (!parsed.success) return "refused";
  for (let i = 1; i < parsed.data.e.length; i++) if (!(parsed.data.e[i - 1]!.n < parsed.data.e[i]!.n)) return "refused";
  return parsed.data;
}

function byHand(bytes: Uint8Array): "refused" | unknown {
  try {
    return decodeTree(bytes);
  } catch {
    return "refused";
  }
}

/** Ways to damage an entry, each of which the schemas refuse. */
const damage: Array<[string, (e: Record<string, unknown>) => void]> = [
  ["empty name", (e) => (e.n = "")],
  ["dot name", (e) => (e.n = "..")],
  ["slash in name", (e) => (e.n = "a/b")],
  ["NUL in name", (e) => (e.n = "a\0b")],
  ["name over 255 bytes", (e) => (e.n = "é".repeat(128))],
  ["name not a string", (e) => (e.n = 7)],
  ["unknown type", (e) => (e.t = "x")],
  ["mode too large", (e) => (e.m = 0o10000)],
  ["mode fractional", (e) => (e.m = 1.5)],
  ["size negative", (e) => (e.s = -1)],
  ["mtime missing", (e) => delete e.mt],
  ["chunk not a hash", (e) => (e.c = ["ABC"])],
  ["directory hash upper case", (e) => (e.h = "A".repeat(64))],
  ["link empty", (e) => (e.l = "")],
  ["link too long", (e) => (e.l = "x".repeat(4097))],
  ["link too long in bytes", (e) => (e.l = "é".repeat(2049))],
  ["link with a NUL", (e) => (e.l = "a\0b")],
  ["entry not an object", (e) => Object.assign(e, { __replace: true })],
];

describe("decodeTree", () => {
  test("accepts what the schemas accept, and gives the same tree", () => {
    fc.assert(
      fc.property(fc.uniqueArray(entry, { selector: (e) => e.n, maxLength: 8 }), (entries) => {
        const bytes = encodeTree(entries);
        expect(byHand(bytes)).toEqual(bySchema(bytes));
        expect(byHand(bytes)).not.toBe("refused");
      }),
      { numRuns: 300 },
    );
  });

  test("refuses what the schemas refuse: each kind of damaged entry, unsorted or repeated names, no entries list, not JSON", () => {
    fc.assert(
      fc.property(fc.uniqueArray(entry, { selector: (e) => e.n, minLength: 1, maxLength: 6 }), fc.nat(), fc.integer({ min: 0, max: damage.length - 1 }), (entries, at, kind) => {
        const tree = JSON.parse(new TextDecoder().decode(encodeTree(entries))) as { e: Array<Record<string, unknown> | string> };
        const i = at % tree.e.length;
        const [, hurt] = damage[kind]!;
        const e = tree.e[i] as Record<string, unknown>;
        hurt(e);
        if ("__replace" in e) tree.e[i] = "not an entry";
        const bytes = new TextEncoder().encode(JSON.stringify(tree));
        // (A field another type has, such as a size on a link, means nothing: both accept it.)
        expect(byHand(bytes) === "refused").toBe(bySchema(bytes) === "refused");
      }),
      { numRuns: 500 },
    );
    const two = JSON.parse(new TextDecoder().decode(encodeTree([
      { t: "l", n: "a", l: "x" },
      { t: "l", n: "b", l: "y" },
    ]))) as { e: unknown[] };
    for (const bad of [{ v: 1, e: [...two.e].reverse() }, { v: 1, e: [two.e[0], two.e[0]] }, { v: 2, e: two.e }, { v: 1 }, [two.e]]) {
      const bytes = new TextEncoder().encode(JSON.stringify(bad));
      expect(bySchema(bytes)).toBe("refused");
      expect(byHand(bytes)).toBe("refused");
    }
    expect(byHand(new TextEncoder().encode("{not json"))).toBe("refused");
    expect(byHand(new Uint8Array([0x7b, 0xff, 0x7d]))).toBe("refused");
  });
});

describe("the uploader's packs", () => {
  /** A store that lacks what `lacks` says; the packs it was sent, decoded. */
  const store = (lacks: (hash: string) => boolean) => {
    const packs: Array<Array<{ hash: string; bytes: Uint8Array }>> = [];
    const sizes: number[] = [];
    return {
      packs,
      sizes,
      client: {
        missing: async (hashes: string[]) => hashes.filter(lacks),
        putPack: async (pack: Uint8Array) => {
          sizes.push(pack.length);
          packs.push(decodePack(pack));
        },
      },
    };
  };
  const blob = (i: number, size: number): Uint8Array => new Uint8Array(size).fill(i % 251);

  test("carry every blob the store lacks, once, byte for byte, in packs under the target unless one blob alone passes it", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.constantFrom(0, 10, 3000, 1024 * 1024, 3 * 1024 * 1024, 9 * 1024 * 1024)), { maxLength: 30 }),
        fc.boolean(),
        async (specs, half) => {
          const blobs = specs.map(([i, size]) => blob(i, size + i));
          const lacks = (h: string): boolean => !half || h.charCodeAt(0) % 2 === 0;
          const s = store(lacks);
          const uploader = new BlobUploader(s.client);
          // The builder reuses its buffer: what the uploader keeps must be its own copy.
          for (const b of blobs) {
            const reused = new Uint8Array(b);
            await uploader.add(sha256(b), reused);
            reused.fill(7);
          }
          await uploader.flush();
          const wanted = new Map(blobs.map((b) => [sha256(b), b] as const).filter(([h]) => lacks(h)));
          const sent = s.packs.flat();
          expect(sent.length).toBe(wanted.size);
          for (const r of sent) expect(r.bytes).toEqual(wanted.get(r.hash)!);
          for (const [i, pack] of s.packs.entries()) {
            expect(s.sizes[i]!).toBeLessThanOrEqual(MAX_PACK_BYTES);
            if (pack.length > 1) expect(pack.reduce((n, r) => n + 36 + r.bytes.length, 0)).toBeLessThanOrEqual(PACK_TARGET_BYTES);
          }
          expect(uploader.sent).toBe(wanted.size);
          expect(uploader.added).toBe([...wanted.values()].reduce((n, b) => n + b.length, 0));
        },
      ),
      { numRuns: 25 },
    );
  });

  test("ask about at most MAX_QUERY_HASHES blobs at a time, and never about one the store is known to hold", async () => {
    const asked: number[] = [];
    const uploader = new BlobUploader({ missing: async (h) => (asked.push(h.length), h), putPack: async () => {} }, new Set([sha256(blob(0, 1))]));
    await uploader.add(sha256(blob(0, 1)), blob(0, 1));
    for (let i = 0; i < MAX_QUERY_HASHES + 5; i++) {
      const b = new TextEncoder().encode(`blob ${i}`);
      await uploader.add(sha256(b), b);
    }
    await uploader.flush();
    expect(asked).toEqual([MAX_QUERY_HASHES, 5]);
  });

  test("encodePack and the uploader write the same pack", async () => {
    const records = [blob(1, 10), blob(2, 0), blob(3, 5000)].map((b) => ({ hash: sha256(b), bytes: b }));
    const s = store(() => true);
    const uploader = new BlobUploader(s.client);
    for (const r of records) await uploader.add(r.hash, r.bytes);
    await uploader.flush();
    expect(s.sizes).toEqual([encodePack(records).length]);
    expect(s.packs[0]).toEqual(decodePack(encodePack(records)));
  });
});
