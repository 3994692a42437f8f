import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import * as tar from "tar-stream";
import {
  createExcluder,
  extractArchive,
  extractToTemp,
  mergeTree,
  packDirectory,
  packToBytes,
  packToFile,
  type PackOptions,
} from "../../src/lib/archive.ts";
import { CattyError } from "../../src/protocol/errors.ts";
import { ManifestWriter } from "../../src/lib/snapshot/format.ts";
import { listPaths, tempDirs, writeTree } from "../helpers/fs.ts";

const tempDir = tempDirs("catty-archive-");
const tree = writeTree;

/** Every entry name in a .tar.gz, directories with a trailing slash. */
async function names(data: Uint8Array): Promise<string[]> {
  const out: string[] = [];
  const extract = tar.extract();
  const done = (async () => {
    for await (const entry of extract) {
      const { name, type } = entry.header;
      out.push(type === "directory" && !name.endsWith("/") ? `${name}/` : name);
      entry.resume();
    }
  })();
  extract.end(gunzipSync(data));
  await done;
  return out.sort();
}

async function pack(opts: Omit<PackOptions, "mode"> & { mode?: PackOptions["mode"] }) {
  return packToBytes({ mode: "upload", ...opts });
}

interface Crafted {
  header: Partial<tar.Header> & { name: string; pax?: Record<string, string> };
  data?: string | Uint8Array;
}

/** Builds a .tar.gz with tar-stream from hand-written headers. */
async function craft(entries: Crafted[]): Promise<Uint8Array> {
  const p = tar.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of p) chunks.push(chunk as Buffer);
  })();
  for (const { header, data } of entries) {
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (data !== undefined) p.entry(header, data, cb);
      else p.entry(header, cb);
    });
  }
  p.finalize();
  await collected;
  return gzipSync(Buffer.concat(chunks));
}

const GOOD: Crafted[] = [
  { header: { name: "ok/", type: "directory" } },
  { header: { name: "ok/file.txt" }, data: "fine" },
];

const listAll = listPaths;

async function refuse(data: Uint8Array | ReadableStream<Uint8Array>, limits = {}): Promise<{ err: CattyError; base: string }> {
  const base = tempDir();
  writeFileSync(join(base, "marker"), "x");
  const err = await extractArchive(data, join(base, "dest"), limits).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(CattyError);
  expect((err as CattyError).code).toBe("bad_request");
  // Nothing half-written: no dest, no temporary directory, nothing new beside them.
  expect(listAll(base)).toEqual(["marker"]);
  return { err: err as CattyError, base };
}

describe("packing", () => {
  test("honours nested .gitignore files relative to their own directory", async () => {
    const root = tree(tempDir(), {
      ".gitignore": "*.tmp\nbuild/\n# comment\n",
      "a.txt": "a",
      "x.tmp": "x",
      "build/out.js": "o",
      "src/build.ts": "kept: build/ is a directory pattern",
      "sub/.gitignore": "secret.txt\n!keep.tmp\n/only-here.txt\n",
      "sub/secret.txt": "s",
      "sub/deep/secret.txt": "s",
      "sub/keep.tmp": "k",
      "sub/ok.txt": "ok",
      "sub/only-here.txt": "o",
      "sub/deep/only-here.txt": "o",
      "other/secret.txt": "not ignored outside sub/",
      ".git/info/exclude": "excluded-by-info\n",
      "excluded-by-info": "e",
    });
    const { data } = await pack({ root });
    const got = (await names(data)).filter((n) => !n.startsWith(".git/"));
    expect(got).toEqual(
      [
        ".gitignore",
        "a.txt",
        "other/",
        "other/secret.txt",
        "src/",
        "src/build.ts",
        "sub/",
        "sub/.gitignore",
        "sub/deep/",
        "sub/deep/only-here.txt",
        "sub/keep.tmp",
        "sub/ok.txt",
      ].sort(),
    );
  });

  test("a deeper .gitignore can re-include what a parent one ignores", async () => {
    const root = tree(tempDir(), {
      ".gitignore": "a/b/\n*.gen\n",
      "a/.gitignore": "!b/\n",
      "a/b/c.txt": "c",
      "a/b/d.gen": "ignored by the root *.gen",
    });
    const got = await names((await pack({ root })).data);
    expect(got).toContain("a/b/c.txt");
    expect(got).not.toContain("a/b/d.gen");
  });

  test("always leaves out the default exclusions in upload mode, but nothing inside .git", async () => {
    const root = tree(tempDir(), {
      ".gitignore": "!node_modules/\n!.env\n",
      "src/main.ts": "m",
      "node_modules/x/index.js": "x",
      "pkg/node_modules/y.js": "y",
      "__pycache__/a.cpython.pyc": "p",
      "lib/m.pyc": "p",
      ".venv/bin/python": "p",
      "venv/bin/python": "p",
      ".env": "SECRET=1",
      "sub/.env": "SECRET=2",
      ".env.example": "SECRET=",
      ".DS_Store": "d",
      "debug.log": "l",
      "logs/app.log": "l",
      ".git/HEAD": "ref: refs/heads/main\n",
      ".git/x.log": "git's own file",
      ".git/node_modules/keep": "git's own file",
    });
    const got = await names((await pack({ root })).data);
    expect(got).toEqual(
      [
        ".env.example",
        ".git/",
        ".git/HEAD",
        ".git/node_modules/",
        ".git/node_modules/keep",
        ".git/x.log",
        ".gitignore",
        "lib/",
        "logs/",
        "pkg/",
        "src/",
        "src/main.ts",
        "sub/",
      ].sort(),
    );
  });

  test("includeGit: false leaves out every .git", async () => {
    const root = tree(tempDir(), {
      "a.txt": "a",
      ".git/HEAD": "h",
      "vendor/lib/.git": "gitdir: ../../.git/modules/lib\n",
      "vendor/lib/x.c": "x",
    });
    const got = await names((await pack({ root, includeGit: false })).data);
    expect(got).toEqual(["a.txt", "vendor/", "vendor/lib/", "vendor/lib/x.c"]);
  });

  test("snapshot mode leaves out caches and dependencies at any depth, keeps .git and ignores .gitignore", async () => {
    const root = tree(tempDir(), {
      ".gitignore": "*.log\nbuild/\n",
      "debug.log": "kept",
      "build/out": "kept",
      ".env": "kept",
      ".git/HEAD": "kept",
      "node_modules/a": "x",
      "web/node_modules/b": "x",
      "py/__pycache__/c.pyc": "x",
      "py/other.pyc": "kept",
      ".venv/d": "x",
      "x/venv/e": "x",
      ".cache/f": "x",
      "home/.npm/g": "x",
      ".yarn/h": "x",
      "cache/kept": "kept",
    });
    const got = await names((await pack({ root, mode: "snapshot" })).data);
    expect(got).toEqual(
      [
        ".env",
        ".git/",
        ".git/HEAD",
        ".gitignore",
        "build/",
        "build/out",
        "cache/",
        "cache/kept",
        "debug.log",
        "home/",
        "py/",
        "py/other.pyc",
        "web/",
        "x/",
      ].sort(),
    );
  });

  test("createExcluder answers for single paths, as the watcher asks", () => {
    const root = tree(tempDir(), { ".gitignore": "dist/\n", "sub/.gitignore": "*.bak\n" });
    const upload = createExcluder(root, "upload");
    expect(upload("dist", true)).toBe(true);
    expect(upload("dist/a/b.js", false)).toBe(true);
    expect(upload("dist", false)).toBe(false);
    expect(upload("sub/x/y.bak", false)).toBe(true);
    expect(upload("y.bak", false)).toBe(false);
    expect(upload("deep/node_modules/z", false)).toBe(true);
    expect(upload(".git/objects/ab", false)).toBe(false);
    expect(upload("node_modules/pkg/.git/HEAD", false)).toBe(true);
    expect(createExcluder(root, "upload", false)(".git/HEAD", false)).toBe(true);
    // Asked in any order, a directory's own and its parents' rules all apply.
    const nested = tree(tempDir(), { "a/.gitignore": "*.tmp\n", "a/b/.gitignore": "*.bak\n", "a/b/c/.gitignore": "!keep.bak\n" });
    const fresh = createExcluder(nested, "upload");
    expect(fresh("a/x.bak", false)).toBe(false);
    expect(fresh("a/b/c/x.tmp", false)).toBe(true);
    expect(fresh("a/b/c/keep.bak", false)).toBe(false);
    expect(fresh("a/b/c/other.bak", false)).toBe(true);
    expect(fresh("a/b/x.bak", false)).toBe(true);
    expect(createExcluder(nested, "upload")("a/b/c/other.bak", false)).toBe(true);
    expect(fresh("a/b/c/", true)).toBe(false);
    const snapshot = createExcluder(root, "snapshot");
    expect(snapshot("dist/a.js", false)).toBe(false);
    expect(snapshot("a/.cache", true)).toBe(true);
  });

  test("symlinks are data: absolute, climbing, dangling and looping ones are packed and extracted as they were", async () => {
    const root = tempDir();
    writeFileSync(join(root, "a.txt"), "a");
    mkdirSync(join(root, "sub"));
    const links: Record<string, string> = {
      abs: "/etc/hosts",
      up: "../outside",
      "sub/upup": "../../..",
      dangling: "missing/file.txt",
      loop1: "loop2",
      loop2: "loop1",
      self: "self",
      fine: "a.txt",
      chain: "sub/upup/etc", // through another link that climbs out
      long: `${"x/".repeat(1500)}end`,
    };
    for (const [rel, target] of Object.entries(links)) symlinkSync(target, join(root, rel));
    const packed = await packToBytes({ root, mode: "upload" });
    expect(packed.skipped).toEqual([]);
    expect(packed.files).toBe(1 + Object.keys(links).length);
    const base = tempDir();
    const dest = join(base, "out");
    const result = await extractArchive(packed.data, dest);
    expect(result.files).toBe(1 + Object.keys(links).length);
    for (const [rel, target] of Object.entries(links)) expect(readlinkSync(join(dest, rel))).toBe(target);
    expect(readFileSync(join(dest, "fine"), "utf8")).toBe("a");
    // Made, never followed: nothing appeared beside the destination or where the links point.
    expect(listAll(base)).toEqual(["out", ...listAll(dest).map((p) => `out/${p}`)].sort());
    expect(existsSync(join(base, "outside"))).toBe(false);
  });

  test("modes, symlinks, empty directories, mtimes and long names round-trip; special files are skipped", async () => {
    const root = tempDir();
    tree(root, {
      "run.sh": "#!/bin/sh\necho hi\n",
      "secret": "s",
      "readonly.txt": "r",
      "suid": "u",
      "target.txt": "t",
      "sub/inner.txt": "i",
      "empty/": "",
      "a/b/c/": "",
    });
    chmodSync(join(root, "run.sh"), 0o755);
    chmodSync(join(root, "secret"), 0o600);
    chmodSync(join(root, "readonly.txt"), 0o444);
    chmodSync(join(root, "suid"), 0o4755);
    symlinkSync("target.txt", join(root, "link"));
    symlinkSync("sub", join(root, "dirlink"));
    symlinkSync("missing", join(root, "dangling"));
    const longName = `${"long-directory-name-".repeat(6)}/${"ファイル".repeat(20)}.txt`;
    mkdirSync(join(root, dirname(longName)), { recursive: true });
    writeFileSync(join(root, longName), "long");
    const mtime = new Date("2020-02-03T04:05:06Z");
    utimesSync(join(root, "target.txt"), mtime, mtime);
    Bun.spawnSync(["mkfifo", join(root, "fifo")]);
    expect(lstatSync(join(root, "fifo")).isFIFO()).toBe(true);

    const packed = await pack({ root, mode: "snapshot" });
    expect(packed.files).toBe(10);
    expect(packed.largest[0]).toEqual({ path: "run.sh", size: 18 });

    const dest = join(tempDir(), "out");
    const result = await extractArchive(packed.data, dest);
    expect(result.files).toBe(10);
    const mode = (rel: string) => lstatSync(join(dest, rel)).mode & 0o7777;
    expect(mode("run.sh")).toBe(0o755);
    expect(mode("secret")).toBe(0o600);
    expect(mode("readonly.txt")).toBe(0o444);
    expect(mode("suid")).toBe(0o755);
    expect(readlinkSync(join(dest, "link"))).toBe("target.txt");
    expect(readFileSync(join(dest, "link"), "utf8")).toBe("t");
    expect(readlinkSync(join(dest, "dirlink"))).toBe("sub");
    expect(readlinkSync(join(dest, "dangling"))).toBe("missing");
    expect(readdirSync(join(dest, "empty"))).toEqual([]);
    expect(statSync(join(dest, "a/b/c")).isDirectory()).toBe(true);
    expect(readFileSync(join(dest, longName), "utf8")).toBe("long");
    expect(statSync(join(dest, "target.txt")).mtime.getTime()).toBe(mtime.getTime());
    expect(existsSync(join(dest, "fifo"))).toBe(false);
  });

  test("the stream, file and bytes forms give the same archive, with progress along the way", async () => {
    const root = tree(tempDir(), { "a.txt": "a".repeat(1000), "b/c.txt": "c", "big.bin": "z".repeat(3 << 20) });
    const seen: number[] = [];
    const handle = packDirectory({ root, mode: "upload", onProgress: (p) => seen.push(p.files) });
    const streamed = new Uint8Array(await new Response(handle.stream).arrayBuffer());
    const stats = await handle.stats;
    expect(stats.files).toBe(3);
    expect(stats.bytes).toBe(1001 + (3 << 20));
    expect(stats.compressedBytes).toBe(streamed.byteLength);
    expect(seen.at(-1)).toBe(3);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));

    const out = join(tempDir(), "out.tgz");
    const fileStats = await packToFile({ root, mode: "upload", out });
    expect(fileStats.compressedBytes).toBe(statSync(out).size);
    const bytes = await pack({ root });
    expect(await names(readFileSync(out))).toEqual(await names(streamed));
    expect(await names(bytes.data)).toEqual(await names(streamed));

    const dest = join(tempDir(), "from-file");
    await extractArchive(out, dest);
    expect(readFileSync(join(dest, "big.bin"), "utf8")).toBe("z".repeat(3 << 20));
  });

  test("over the compressed limit: too_large as soon as it passes, naming the five largest paths", async () => {
    const root = tempDir();
    const sizes: Record<string, number> = {
      "a/huge.bin": 400_000,
      "assets/video.bin": 300_000,
      "b.bin": 200_000,
      "c.bin": 100_000,
      "small.bin": 1000,
      "zzz-never-packed.bin": 500_000,
    };
    for (let i = 0; i < 100; i++) sizes[`fill/${String(i).padStart(3, "0")}.bin`] = 50_000;
    for (const [rel, size] of Object.entries(sizes)) {
      mkdirSync(dirname(join(root, rel)), { recursive: true });
      writeFileSync(join(root, rel), crypto.getRandomValues(new Uint8Array(size)));
    }
    const out = join(tempDir(), "out.tgz");
    let packed = 0;
    const onProgress = (p: { files: number }) => void (packed = p.files);
    const err = await packToFile({ root, mode: "upload", out, maxCompressedBytes: 150_000, onProgress }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CattyError);
    const e = err as CattyError;
    expect(e.code).toBe("too_large");
    expect(packed).toBeLessThan(Object.keys(sizes).length / 2);
    const named = ["zzz-never-packed.bin", "a/huge.bin", "assets/video.bin", "b.bin", "c.bin"];
    for (const path of named) expect(e.message).toContain(path);
    const positions = named.map((path) => e.message.indexOf(path));
    expect(positions).toEqual([...positions].sort((x, y) => x - y));
    expect(e.message).not.toContain("small.bin");
    expect(e.message).not.toContain("fill/");
    expect(e.hint).toContain(".gitignore");
    expect(e.hint).toContain("--no-upload");
    expect(existsSync(out)).toBe(false);

    const handle = packDirectory({ root, mode: "upload", maxCompressedBytes: 150_000 });
    const read = new Response(handle.stream).arrayBuffer().catch((x: unknown) => x);
    expect(((await handle.stats.catch((x: unknown) => x)) as CattyError).code).toBe("too_large");
    expect(await read).toBeInstanceOf(CattyError);
  });

  test("aborting or cancelling stops packing even when nobody reads the stream", async () => {
    const root = tree(tempDir(), { "big.bin": "x".repeat(8 << 20) });
    const abort = new AbortController();
    const handle = packDirectory({ root, mode: "upload", signal: abort.signal });
    abort.abort(new CattyError("unavailable", "shutting down"));
    expect(((await handle.stats.catch((x: unknown) => x)) as CattyError).message).toBe("shutting down");

    const cancelled = packDirectory({ root, mode: "upload" });
    const reader = cancelled.stream.getReader();
    await reader.read();
    await reader.cancel();
    expect(await cancelled.stats.catch((x: unknown) => x)).toBeInstanceOf(CattyError);
  });
});

describe("extracting hostile archives", () => {
  test("path traversal with ..", async () => {
    const { err } = await refuse(await craft([...GOOD, { header: { name: "../x" }, data: "evil" }]));
    expect(err.message).toContain('"../x"');
    const again = await refuse(await craft([...GOOD, { header: { name: "ok/../../x" }, data: "evil" }]));
    expect(again.err.message).toContain("..");
  });

  test("absolute paths", async () => {
    const outside = join(tempDir(), "abs-target");
    const { err } = await refuse(await craft([...GOOD, { header: { name: outside }, data: "evil" }]));
    expect(err.message).toContain(outside);
    expect(err.message).toContain("absolute");
    expect(existsSync(outside)).toBe(false);
  });

  test("a symlink out of the tree is kept; a write through it is refused", async () => {
    const escape = await refuse(
      await craft([...GOOD, { header: { name: "evil", type: "symlink", linkname: ".." } }, { header: { name: "evil/x" }, data: "evil" }]),
    );
    expect(escape.err.message).toContain('entry "evil/x" would be written through the symlink "evil"');
    expect(existsSync(join(escape.base, "x"))).toBe(false);

    const outside = tempDir();
    const absolute = await refuse(
      await craft([{ header: { name: "out", type: "symlink", linkname: outside } }, { header: { name: "out/pwned.txt" }, data: "evil" }]),
    );
    expect(absolute.err.message).toContain('"out/pwned.txt"');
    expect(readdirSync(outside)).toEqual([]);

    const dest = join(tempDir(), "dest");
    await extractArchive(await craft([{ header: { name: "etc", type: "symlink", linkname: "/etc" } }, ...GOOD]), dest);
    expect(readlinkSync(join(dest, "etc"))).toBe("/etc");
  });

  test("symlink targets no file system holds are refused: empty, NUL, over-long", async () => {
    const empty = await refuse(await craft([...GOOD, { header: { name: "e", type: "symlink", linkname: "" } }]));
    expect(empty.err.message).toContain('entry "e" is a symlink with an empty target');
    const nul = await refuse(await craft([...GOOD, { header: { name: "n", type: "symlink", linkname: "a", pax: { linkpath: "a\0b" } } }]));
    expect(nul.err.message).toContain('entry "n" is a symlink whose target has a NUL character');
    const long = await refuse(await craft([...GOOD, { header: { name: "l", type: "symlink", linkname: "a".repeat(4097) } }]));
    expect(long.err.message).toContain('entry "l" is a symlink with a target that is too long');
  });

  test("a write through a symlink the archive made, even one pointing inside", async () => {
    const { err } = await refuse(
      await craft([...GOOD, { header: { name: "link", type: "symlink", linkname: "ok" } }, { header: { name: "link/x" }, data: "evil" }]),
    );
    expect(err.message).toContain('"link/x"');
    expect(err.message).toContain("symlink");
  });

  test("a chain of symlinks that each look harmless but escape together: kept in a new tree, refused in a merge", async () => {
    const chain = await craft([
      ...GOOD,
      { header: { name: "b", type: "symlink", linkname: "." } },
      { header: { name: "a", type: "symlink", linkname: "b/b/../.." } },
    ]);
    const dest = join(tempDir(), "dest");
    await extractArchive(chain, dest);
    expect(readlinkSync(join(dest, "a"))).toBe("b/b/../..");

    const live = tempDir();
    writeFileSync(join(live, "mine.txt"), "mine");
    const err = await extractArchive(chain, live, { into: "merge" }).catch((e: unknown) => e);
    expect((err as CattyError).code).toBe("bad_request");
    expect((err as CattyError).message).toContain('entry "a" is a symlink to "b/b/../..", which leads outside');
    expect(listAll(live)).toEqual(["mine.txt"]);
  });

  test("a merge refuses a link that would lead outside through a link already there, and takes one that stays inside", async () => {
    const live = tempDir();
    mkdirSync(join(live, "d"));
    symlinkSync("/etc", join(live, "sys"));
    const through = await craft([{ header: { name: "x", type: "symlink", linkname: "d/../sys/hosts" } }]);
    const err = await extractArchive(through, live, { into: "merge" }).catch((e: unknown) => e);
    expect((err as CattyError).message).toContain('entry "x" is a symlink to "d/../sys/hosts"');
    expect(listAll(live)).toEqual(["d", "sys"]);

    const inside = await craft([{ header: { name: "y", type: "symlink", linkname: "d/../missing" } }, { header: { name: "d/loop", type: "symlink", linkname: "loop" } }]);
    await extractArchive(inside, live, { into: "merge" });
    expect(readlinkSync(join(live, "y"))).toBe("d/../missing");
    expect(readlinkSync(join(live, "d/loop"))).toBe("loop");
  });

  test("a pre-existing symlink in the destination is not written through when merging", async () => {
    const base = tempDir();
    const outside = join(base, "outside");
    mkdirSync(outside);
    const dest = join(base, "dest");
    mkdirSync(dest);
    symlinkSync("../outside", join(dest, "data"));
    writeFileSync(join(dest, "keep.txt"), "mine");
    const data = await craft([...GOOD, { header: { name: "data/x" }, data: "evil" }]);
    const err = await extractArchive(data, dest, { into: "merge" }).catch((e: unknown) => e);
    expect((err as CattyError).code).toBe("bad_request");
    expect((err as CattyError).message).toContain("data");
    expect(readdirSync(outside)).toEqual([]);
    expect(listAll(dest)).toEqual(["data", "keep.txt"]);
    expect(listAll(base)).toEqual(["dest", "dest/data", "dest/keep.txt", "outside"]);
  });

  test("a write through a symlink by another spelling of its name", async () => {
    const { err } = await refuse(
      await craft([...GOOD, { header: { name: "Link", type: "symlink", linkname: "ok" } }, { header: { name: "link/x" }, data: "evil" }]),
    );
    expect(err.message).toContain('"link/x"');
  });

  test("a directory the archive wrote into is never replaced, so what follows in it is written inside", async () => {
    // The extractor checks an entry's parents once per directory, relying on this.
    for (const replacement of [{ header: { name: "d", type: "symlink" as const, linkname: "ok" } }, { header: { name: "d" }, data: "now a file" }]) {
      const { err } = await refuse(await craft([...GOOD, { header: { name: "d/a.txt" }, data: "a" }, replacement, { header: { name: "d/b.txt" }, data: "b" }]));
      expect(err.message).toContain("names a directory that the archive already created");
    }
  });

  test("a symlink replaced by a real directory may be written into", async () => {
    const dest = join(tempDir(), "dest");
    await extractArchive(
      await craft([
        ...GOOD,
        { header: { name: "s", type: "symlink", linkname: "ok" } },
        { header: { name: "s/", type: "directory" } },
        { header: { name: "s/x" }, data: "x" },
      ]),
      dest,
    );
    expect(lstatSync(join(dest, "s")).isDirectory()).toBe(true);
    expect(readdirSync(join(dest, "ok"))).toEqual(["file.txt"]);
  });

  test("hard links are refused", async () => {
    const { err } = await refuse(await craft([...GOOD, { header: { name: "hard", type: "link", linkname: "ok/file.txt" } }]));
    expect(err.message).toContain('"hard"');
    expect(err.message).toContain("hard link");
  });

  test("devices and fifos are refused", async () => {
    const chr = await refuse(await craft([...GOOD, { header: { name: "null", type: "character-device", devmajor: 1, devminor: 3 } }]));
    expect(chr.err.message).toContain("character-device");
    const blk = await refuse(await craft([...GOOD, { header: { name: "sda", type: "block-device", devmajor: 8, devminor: 0 } }]));
    expect(blk.err.message).toContain('"sda"');
    const fifo = await refuse(await craft([...GOOD, { header: { name: "pipe", type: "fifo" } }]));
    expect(fifo.err.message).toContain('"pipe"');
  });

  test("a decompression bomb over the byte cap", async () => {
    const zeros = new Uint8Array(4 << 20);
    const { err } = await refuse(await craft([...GOOD, { header: { name: "bomb" }, data: zeros }]), { maxBytes: 1 << 20 });
    expect(err.message).toContain("larger than 1.0 MB");

    // An endless gzip stream of zeros is cut off soon after the cap, and its source cancelled.
    let produced = 0;
    let cancelled = false;
    const zerosForever = new ReadableStream<Uint8Array<ArrayBuffer>>({
      pull(controller) {
        controller.enqueue(new Uint8Array(1 << 20));
        produced += 1 << 20;
      },
      cancel() {
        cancelled = true;
      },
    });
    await refuse(zerosForever.pipeThrough(new CompressionStream("gzip")), { maxBytes: 1 << 20 });
    expect(produced).toBeLessThan(256 << 20); // bounded read-ahead of a few dozen tiny compressed chunks
    expect(cancelled).toBe(true);
  });

  test("too many entries", async () => {
    const entries: Crafted[] = Array.from({ length: 50 }, (_, i) => ({ header: { name: `f${i}` }, data: "x" }));
    const { err } = await refuse(await craft(entries), { maxEntries: 10 });
    expect(err.message).toContain("more than 10 entries");
  });

  test("NUL characters and over-long names", async () => {
    const nul = await refuse(await craft([...GOOD, { header: { name: "a\u0000b", pax: { comment: "force pax" } }, data: "x" }]));
    expect(nul.err.message).toContain("NUL");
    const long = await refuse(await craft([{ header: { name: `${"d/".repeat(2100)}f` }, data: "x" }]));
    expect(long.err.message).toContain("too long");
    const component = await refuse(await craft([{ header: { name: `${"c".repeat(300)}` }, data: "x" }]));
    expect(component.err.message).toContain("too long");
  });

  test("backslashes and drive letters, also behind ./", async () => {
    for (const name of ["a\\..\\..\\x", "C:/x", "./C:x"]) {
      const { err } = await refuse(await craft([...GOOD, { header: { name }, data: "evil" }]));
      expect(err.message).toContain(JSON.stringify(name));
    }
  });

  test("a session's .git (any letter case) extracts: the new tree is the session's own", async () => {
    const dest = join(tempDir(), "dest");
    await extractArchive(await craft([{ header: { name: "./.git/config" }, data: "[core]\n" }, { header: { name: "sub/.GIT/x" }, data: "x" }]), dest);
    expect(readFileSync(join(dest, ".git/config"), "utf8")).toBe("[core]\n");
    expect(readFileSync(join(dest, "sub/.GIT/x"), "utf8")).toBe("x");
  });

  test("garbage and truncated archives", async () => {
    const garbage = await refuse(new TextEncoder().encode("this is not a tarball"));
    expect(garbage.err.message).toContain("not a valid .tar.gz");
    const whole = await craft([...GOOD, { header: { name: "big" }, data: crypto.getRandomValues(new Uint8Array(100_000)) }]);
    await refuse(whole.subarray(0, whole.byteLength - 5000));
  });
});

describe("extracting into place", () => {
  test("refuses a non-empty destination in empty mode and leaves it alone", async () => {
    const dest = tree(tempDir(), { "mine.txt": "mine" });
    const err = await extractArchive(await craft(GOOD), dest).catch((e: unknown) => e);
    expect((err as CattyError).code).toBe("conflict");
    expect(listAll(dest)).toEqual(["mine.txt"]);
    expect(readdirSync(dirname(dest)).filter((n) => n.includes("catty-extract"))).toEqual([]);
  });

  test("replaces an existing empty directory", async () => {
    const dest = tempDir();
    await extractArchive(await craft(GOOD), dest);
    expect(readFileSync(join(dest, "ok/file.txt"), "utf8")).toBe("fine");
  });

  test("merge mode adds and replaces files, keeps the rest", async () => {
    const dest = tree(tempDir(), { "mine.txt": "mine", "ok/file.txt": "old", "ok/other.txt": "other" });
    const data = await craft([...GOOD, { header: { name: "new/n.txt" }, data: "n" }, { header: { name: "mine.txt" }, data: "theirs" }]);
    const stats = await extractArchive(data, dest, { into: "merge" });
    expect(stats).toEqual({ files: 3, bytes: 4 + 1 + 6 });
    expect(readFileSync(join(dest, "ok/file.txt"), "utf8")).toBe("fine");
    expect(readFileSync(join(dest, "ok/other.txt"), "utf8")).toBe("other");
    expect(readFileSync(join(dest, "new/n.txt"), "utf8")).toBe("n");
    expect(readFileSync(join(dest, "mine.txt"), "utf8")).toBe("theirs");
    expect(readdirSync(dirname(dest)).filter((n) => n.includes("catty-extract"))).toEqual([]);
  });

  test("record: every file as lstat sees it after extraction; a replaced one is not kept", async () => {
    const archive = await craft([
      { header: { name: "small.txt", mode: 0o640 }, data: "small" },
      { header: { name: "large.bin" }, data: "x".repeat(100) },
      { header: { name: "gone.txt" }, data: "first" },
      { header: { name: "gone.txt", type: "symlink", linkname: "small.txt" } },
      { header: { name: "link", type: "symlink", linkname: "small.txt" } },
    ]);
    const dest = join(tempDir(), "dest");
    const { written } = await extractArchive(archive, dest, { record: "files" });
    expect([...written!.keys()].sort()).toEqual(["large.bin", "small.txt"]);
    const st = lstatSync(join(dest, "small.txt"));
    expect(written!.get("small.txt")).toEqual({ size: 5, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, mode: st.mode, chunks: null });
    // Merging moves files, which changes them: nothing is recorded.
    expect((await extractArchive(archive, dest, { into: "merge", record: "files" })).written).toBeUndefined();
  });

  test("record: manifest gives each file the chunks the manifest after the archive lists; one that does not fit the files gives none", async () => {
    const entries = [
      { header: { name: "a.txt" }, data: "alpha" },
      { header: { name: "dir", type: "directory" as const } },
      { header: { name: "dir/b.txt" }, data: "" },
      { header: { name: "dir/c.bin" }, data: "c".repeat(300) },
    ];
    // A plain tar, as saves stream.
    const archive = gunzipSync(await craft(entries));
    const h = (n: number): string => n.toString(16).padStart(64, "0");
    const withManifest = (files: Array<[number, string[]]>): Uint8Array => {
      const m = new ManifestWriter();
      for (const [size, chunks] of files) m.add(size, chunks);
      return Buffer.concat([archive, m.bytes()]);
    };
    const extract = async (bytes: Uint8Array) => (await extractArchive(bytes, join(tempDir(), "dest"), { record: "manifest" })).written!;
    const good = await extract(withManifest([[5, [h(1)]], [0, []], [300, [h(2), h(3)]]]));
    expect(good.get("a.txt")?.chunks).toEqual([h(1)]);
    expect(good.get("dir/b.txt")?.chunks).toEqual([]);
    expect(good.get("dir/c.bin")?.chunks).toEqual([h(2), h(3)]);
    // A size that differs, a file too few, a manifest cut short, none at all: nothing is known.
    for (const bytes of [
      withManifest([[5, [h(1)]], [1, []], [300, [h(2)]]]),
      withManifest([[5, [h(1)]], [0, []]]),
      withManifest([[5, [h(1)]], [0, []], [300, [h(2)]]]).subarray(0, -10),
      archive,
    ]) {
      const written = await extract(bytes);
      expect(written.size).toBe(3);
      expect([...written.values()].map((f) => f.chunks)).toEqual([null, null, null]);
    }
  });

  // Giving files to another user takes root (the agent, handing a workspace to the sandbox's user).
  test.skipIf(process.getuid?.() !== 0)("gives everything it writes to the owner it is told, the destination too", async () => {
    const dest = join(tempDir(), "ws");
    const data = await craft([
      { header: { name: "a/b/deep.txt" }, data: "implied parents" },
      { header: { name: "dir/", type: "directory", mode: 0o750 } },
      { header: { name: "dir/x.sh", mode: 0o755 }, data: "#!/bin/sh" },
      { header: { name: "dir/link", type: "symlink", linkname: "x.sh" } },
    ]);
    await extractArchive(data, dest, { owner: { uid: 65534, gid: 65533 } });
    const owners = ["", ...listAll(dest)].map((p) => {
      const st = lstatSync(join(dest, p));
      return `${p}=${st.uid}:${st.gid}`;
    });
    expect(owners).toEqual(["", "a", "a/b", "a/b/deep.txt", "dir", "dir/link", "dir/x.sh"].map((p) => `${p}=65534:65533`));
    expect(statSync(join(dest, "dir/x.sh")).mode & 0o777).toBe(0o755);
  });

  test("extractToTemp hands back a checked tree beside the destination for the caller to merge", async () => {
    const dest = tree(tempDir(), { "keep.txt": "k" });
    await using extracted = await extractToTemp(await craft(GOOD), dest);
    expect(dirname(extracted.dir)).toBe(dirname(dest));
    expect(readFileSync(join(extracted.dir, "ok/file.txt"), "utf8")).toBe("fine");
    await mergeTree(extracted.dir, dest);
    expect(listAll(dest)).toEqual(["keep.txt", "ok", "ok/file.txt"]);
  });
});
