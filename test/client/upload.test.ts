/**
 * `catty new`'s upload with its cache (src/client/upload-cache.ts), against an in-process server:
 * the second upload of an unchanged project reads no file again (it asks the server about its
 * directory trees only), a changed file is read again, the cache file is the user's alone, and a
 * cache the server no longer backs (its chunks collected) costs one more pass, never a broken
 * upload. A counting proxy between the upload and the server shows which hashes were asked about.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { lstatSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { uploadDirectory } from "../../src/client/upload.ts";
import { tempDirs, writeTree } from "../helpers/fs.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";

const tempDir = tempDirs("catty-upload-");
let server: TestServer;
let proxy: ReturnType<typeof Bun.serve>;
/** Hashes each `/missing` question carried, by upload. */
let asked: number[] = [];

beforeAll(async () => {
  // Unused blobs are swept often: a test forgets its uploads to have their chunks collected.
  server = await startTestServer({ sweepMs: 200 });
  proxy = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer();
      if (url.pathname.endsWith("/missing") && body) asked.push((JSON.parse(new TextDecoder().decode(body)) as { hashes: string[] }).hashes.length);
      return fetch(`${server.url}${url.pathname}${url.search}`, { method: req.method, headers: req.headers, body });
    },
  });
}, 30_000);

afterAll(async () => {
  proxy?.stop(true);
  await server?.stop();
});

/** The owner's client with vault traffic through the counting proxy. */
const client = () => ({ ...server.owner, resolveUrl: (u: string) => new URL(u, `http://127.0.0.1:${proxy.port}/`).toString() });
const upload = async (dir: string, home: string) => {
  asked = [];
  const summary = await uploadDirectory(client(), dir, { includeGit: false, cacheHome: home });
  return { summary, hashes: asked.reduce((a, n) => a + n, 0) };
};

describe("uploads remember the project", () => {
  test("an unchanged project is not read again; a changed file is; the cache is the user's alone", async () => {
    const home = tempDir();
    const dir = writeTree(tempDir(), Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`src/d${i % 4}/f${i}.txt`, `file ${i}\n`.repeat(50)])));
    const first = await upload(dir, home);
    expect(first.summary).toMatchObject({ files: 40 });
    expect(first.summary.added).toBeGreaterThan(0);
    expect(first.hashes).toBe(40 + 6); // every file's chunk and every directory's tree
    const [cacheFile] = readdirSync(join(home, "cache", "uploads"));
    expect(statSync(join(home, "cache", "uploads", cacheFile as string)).mode & 0o777).toBe(0o600);

    const cachePath = join(home, "cache", "uploads", cacheFile as string);
    const written = statSync(cachePath).ino;
    const again = await upload(dir, home);
    expect(again.summary).toMatchObject({ files: 40, added: 0 });
    expect(again.hashes).toBe(6); // the trees only: no file was read
    // Nothing new to remember: the cache is not written again.
    expect(statSync(cachePath).ino).toBe(written);

    // One malformed row and the cache is not used at all.
    const text = readFileSync(cachePath, "utf8");
    writeFileSync(cachePath, text.replace(/"src\/d0\/f0\.txt":\[\d+/, '"src/d0/f0.txt":[-1'));
    expect((await upload(dir, home)).hashes).toBe(40 + 6);
    expect((await upload(dir, home)).hashes).toBe(6);

    writeFileSync(join(dir, "src/d1/f1.txt"), "changed\n");
    const changed = await upload(dir, home);
    expect(changed.summary.added).toBeGreaterThan(0);
    expect(changed.hashes).toBe(1 + 6);
    expect(changed.summary.id).not.toBe(again.summary.id);
  });

  test("the summary lists each file and symlink sent as it was read, for sync-back (none inside .git, none left out), also when the cache spared reading it", async () => {
    const home = tempDir();
    const dir = writeTree(tempDir(), {
      "a.txt": "alpha\n",
      "src/b.ts": "beta\n",
      ".git/HEAD": "ref: refs/heads/main\n",
      "vendor/lib/.Git/objects/x": "another repository, any spelling\n",
      "vendor/lib/git.txt": "not a repository\n",
      "node_modules/x/index.js": "left out\n",
      "debug.log": "left out\n",
    });
    symlinkSync("a.txt", join(dir, "link"));
    // The symlink as it is (lstat), not what it points to: sync-back then knows it as Catty's own.
    const expected = Object.fromEntries(["a.txt", "link", "src/b.ts", "vendor/lib/git.txt"].map((rel) => [rel, { size: lstatSync(join(dir, rel)).size, mtimeMs: lstatSync(join(dir, rel)).mtimeMs }]));
    for (let round = 0; round < 2; round++) {
      const summary = await uploadDirectory(client(), dir, { includeGit: true, cacheHome: home });
      expect(summary.sent).toEqual(expected);
    }
  });

  test("a cache whose chunks the server no longer has: read again whole, and the upload is complete", async () => {
    const home = tempDir();
    const dir = writeTree(tempDir(), { "a.txt": "alpha\n".repeat(100), "b/c.txt": "gamma\n".repeat(100) });
    await upload(dir, home);
    // Once no upload refers to them, the server collects the chunks.
    const store = server.store();
    const owner = await server.ownerUser();
    for (const u of await store.uploadsOfUser(owner.id)) await store.deleteUpload(u.id);
    await waitFor(async () => (await store.blobsOfUser(owner.id)).length === 0, { what: "the chunks collected" });
    const after = await upload(dir, home);
    expect(after.summary).toMatchObject({ files: 2 });
    expect(after.summary.added).toBeGreaterThan(0);
    expect(after.hashes).toBe(2 + (2 + 2)); // the trees (the cached pass), then the trees and the chunks
    expect((await upload(dir, home)).hashes).toBe(2); // and the cache is good again
  });
});

describe("the server's cap, for a project uploaded before", () => {
  test("is checked as the upload is sent (the tree is not walked twice): nothing past the cap is sent, and the refusal names the largest file", async () => {
    const capped = await startTestServer({ env: { CATTY_MAX_UPLOAD_BYTES: "1000000" } });
    try {
      const home = tempDir();
      const dir = writeTree(tempDir(), { "README.md": "small\n", "src/a.ts": "export {};\n" });
      await uploadDirectory(capped.owner, dir, { includeGit: false, cacheHome: home });
      expect(readdirSync(join(home, "cache", "uploads")).length).toBe(1);
      const big = new Uint8Array(3_000_000);
      for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
      writeFileSync(join(dir, "big.bin"), big);
      let sent = 0;
      const counting = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        async fetch(req) {
          const url = new URL(req.url);
          const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer();
          if (url.pathname.endsWith("/pack") && body) sent += body.byteLength;
          return fetch(`${capped.url}${url.pathname}${url.search}`, { method: req.method, headers: req.headers, body });
        },
      });
      try {
        const viaProxy = { ...capped.owner, resolveUrl: (u: string) => new URL(u, `http://127.0.0.1:${counting.port}/`).toString() };
        const refused = uploadDirectory(viaProxy, dir, { includeGit: false, cacheHome: home });
        await expect(refused).rejects.toMatchObject({ code: "too_large" });
        await expect(refused).rejects.toThrow(/big\.bin/);
        expect(sent).toBeLessThanOrEqual(1_000_000);
      } finally {
        counting.stop(true);
      }
    } finally {
      await capped.stop();
    }
  });
});
