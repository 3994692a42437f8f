/**
 * The snapshot builder given a listing taken just before (`catty new` lists the project once, to
 * check the server's cap, and builds from that listing): the same trees as a build that lists the
 * directories itself, on random projects with left-out paths, symlinks and empty directories; and
 * the listing is what the next build uses, once.
 */
import { describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { createExcluder } from "../../src/lib/exclude.ts";
import { SnapshotBuilder, treeSize, type BlobSink, type Listing } from "../../src/lib/snapshot/build.ts";
import { tempDirs, writeTree } from "../helpers/fs.ts";
import { pathTree } from "../../src/lib/tree.ts";

const tempDir = tempDirs("catty-build-");

/** Keeps nothing: the tests compare the trees' hashes. */
const nowhere: BlobSink = { add: async () => {} };

async function build(root: string, listing?: Listing) {
  const files: string[] = [];
  const builder = new SnapshotBuilder({ tree: pathTree(root), exclude: createExcluder(root, "upload", false), onFile: (rel) => void files.push(rel) });
  if (listing) builder.seedListing(listing);
  const built = await builder.build(nowhere, null);
  return { built, files: files.sort(), builder };
}

async function listed(root: string): Promise<Listing> {
  const listing: Listing = new Map();
  await treeSize(root, createExcluder(root, "upload", false), 5, listing);
  return listing;
}

describe("a build from a listing", () => {
  test("makes the same trees as a build that lists the directories itself", async () => {
    const part = fc.constantFrom("a", "b.txt", "src", "node_modules", ".env", "x.log", ".git", "deep", "é");
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.array(part, { minLength: 1, maxLength: 4 }), fc.constantFrom("file", "dir", "link"), fc.string({ maxLength: 20 })), { maxLength: 25 }),
        async (entries) => {
          const root = tempDir();
          for (const [parts, kind, text] of entries) {
            const path = join(root, ...parts);
            try {
              mkdirSync(join(path, ".."), { recursive: true });
              if (kind === "dir") mkdirSync(path);
              // Links lead nowhere (one to a parent would loop the test's own clean-up).
              else if (kind === "link") symlinkSync(`nowhere/${text}`, path);
              else writeFileSync(path, text);
            } catch {
              // taken already (or under a file): the tree is whatever was made
            }
          }
          const own = await build(root);
          const from = await build(root, await listed(root));
          expect(from.built).toEqual(own.built);
          expect(from.files).toEqual(own.files);
        },
      ),
      { numRuns: 60 },
    );
  });

  test("names every file and symlink it lists, whatever the link points to", async () => {
    const root = writeTree(tempDir(), { "a.txt": "alpha", "sub/b.txt": "beta" });
    symlinkSync("/etc/hosts", join(root, "abs"));
    symlinkSync("../../outside", join(root, "sub/up"));
    const { built, files } = await build(root);
    expect(files).toEqual(["a.txt", "abs", "sub/b.txt", "sub/up"]);
    expect(built.skipped).toEqual([]);
  });

  test("is used by the next build only: what changed since the listing shows in the build after", async () => {
    const root = writeTree(tempDir(), { "a.txt": "alpha", "src/b.txt": "beta", "empty/": "" });
    const listing = await listed(root);
    writeFileSync(join(root, "src/new.txt"), "made after the listing");
    rmSync(join(root, "a.txt"));
    const { built, files, builder } = await build(root, listing);
    // The listing named a.txt (gone now: passed over, as a file that vanishes while a build
    // lists its directory is) and not src/new.txt.
    expect(files).toEqual(["src/b.txt"]);
    expect(built.files).toBe(1);
    const again = await builder.build(nowhere, null);
    expect(again.files).toBe(2);
    expect(again.skipped).toEqual([]);
  });
});
