/**
 * The one module with the path rules: validation (examples and fast-check properties), the
 * symlink-free parent walk, exclusive temp files with declared-size and cap limits, the tree walk,
 * the content comparison and opening only the file that was seen, each against a real file system in temp directories.
 */
import { describe, expect, test } from "bun:test";
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  type Stats,
} from "node:fs";
import { join, posix, resolve } from "node:path";
import fc from "fast-check";
import {
  checkedRelPath,
  checkParents,
  checkRelPath,
  isGitName,
  linkLeavesTree,
  linksOnDisk,
  linkTargetProblem,
  MAX_PART_BYTES,
  MAX_PATH_BYTES,
  openExclusive,
  openSeen,
  openSeenSync,
  parseRelPath,
  sameContent,
  symlinkAtomic,
  TempFile,
  tempName,
  walkTree,
  writeFileAtomic,
} from "../../src/lib/safe-fs.ts";
import { CattyError } from "../../src/protocol/errors.ts";
import { noise, tempDirs, writeTree } from "../helpers/fs.ts";

const tempDir = tempDirs("catty-safe-fs-");
const TEMP_NAME = /^\.catty-tmp-[0-9a-f]{32}$/;

/** `.git` in every spelling that lands in `.git` somewhere: case, HFS+-ignored code points, NTFS. */
const GIT_SPELLINGS = [".git", ".GIT", ".Git", ".gIt", ".giT", ".g\u200cit", "\ufeff.git", ".git.", ".git ", ".GIT. .", ".git::$INDEX_ALLOCATION", "GIT~1", "git~1"];

describe("checkRelPath", () => {
  test("accepts plain relative paths", () => {
    const ok = ["a.txt", "a/b/c.txt", ".hidden", "dir/.env", "a..b", "...", "a/.../b", "with space/ü.txt", "x".repeat(MAX_PART_BYTES)];
    for (const path of ok) expect({ path, problem: checkRelPath(path) }).toEqual({ path, problem: null });
    // As long as the whole path fits: 16 parts of 255 bytes plus 15 slashes is 4095 bytes.
    const longest = Array.from({ length: 16 }, () => "y".repeat(255)).join("/");
    expect(Buffer.byteLength(longest)).toBeLessThanOrEqual(MAX_PATH_BYTES);
    expect(checkRelPath(longest)).toBeNull();
  });

  test("names that only look like .git are fine", () => {
    const ok = [".github/workflows/ci.yml", ".gitignore", ".gitattributes", ".gitmodules", "a.git/x", "git/x", "x/.git-foo", ".git.bak/x", ".gi/t", "my.git", ".git_x", "git~2"];
    for (const path of ok) expect({ path, problem: checkRelPath(path) }).toEqual({ path, problem: null });
  });

  test("refuses absolute paths, . and .. parts, empty parts, backslashes, NUL and over-long paths", () => {
    const cases: Array<[string, string]> = [
      ["", "an empty path"],
      ["/etc/passwd", "an absolute path"],
      ["/", "an absolute path"],
      ["C:/Windows/x", "an absolute path"],
      ["c:x", "an absolute path"],
      ["..", "a path with a .. part"],
      ["../outside.txt", "a path with a .. part"],
      ["a/../../x", "a path with a .. part"],
      ["a/..", "a path with a .. part"],
      [".", "a path with an empty or . part"],
      ["./a", "a path with an empty or . part"],
      ["a//b", "a path with an empty or . part"],
      ["a/", "a path with an empty or . part"],
      ["a\\..\\..\\x", "a path with a backslash"],
      ["a\0b", "a path with a NUL character"],
      ["x".repeat(MAX_PART_BYTES + 1), "a path with a part that is too long (over 255 bytes)"],
      ["é".repeat(128), "a path with a part that is too long (over 255 bytes)"], // 256 bytes in UTF-8
      ["a/".repeat(2048) + "b", "a path that is too long (over 4096 bytes)"],
    ];
    for (const [path, problem] of cases) expect({ path, problem: checkRelPath(path) }).toEqual({ path, problem });
  });

  test("refuses a path into .git in any letter case, at any depth, in every spelling a file system folds to .git", () => {
    for (const git of GIT_SPELLINGS) {
      for (const path of [git, `${git}/config`, `${git}/hooks/pre-commit`, `sub/${git}/x`, `a/b/${git}`]) {
        expect({ path, refused: checkRelPath(path)?.startsWith("a path into ") }).toEqual({ path, refused: true });
      }
    }
    expect(checkRelPath(".GIT/config")).toBe("a path into .GIT, which is .git on some file systems");
    expect(checkRelPath("sub/.git/x")).toBe("a path into .git");
  });

  test("allowGit lets .git through (extraction into a new directory); the other rules stay", () => {
    for (const path of [".git/config", ".GIT/hooks/x", "sub/.Git/x"]) expect(checkRelPath(path, { allowGit: true })).toBeNull();
    expect(checkRelPath(".git/../../x", { allowGit: true })).toBe("a path with a .. part");
  });

  test("lenient mode drops empty and . parts as tar names have them, and normalizes", () => {
    expect(parseRelPath("./a/b/", { lenient: true })).toEqual({ path: "a/b" });
    expect(parseRelPath("a//./b", { lenient: true })).toEqual({ path: "a/b" });
    expect(parseRelPath("./", { lenient: true })).toEqual({ path: "" });
    expect(parseRelPath("./../x", { lenient: true })).toEqual({ problem: "a path with a .. part" });
    expect(parseRelPath("/abs", { lenient: true })).toEqual({ problem: "an absolute path" });
    expect(parseRelPath("./C:/x", { lenient: true })).toEqual({ problem: "an absolute path" }); // found by the property below
    expect(parseRelPath("./.GIT/config", { lenient: true }).problem).toStartWith("a path into ");
  });

  describe("properties", () => {
    const root = "/r/o/o/t";
    /** Path-ish strings: mostly made of the characters that matter here. */
    const part = fc.oneof(
      fc.constantFrom("", ".", "..", "...", ".git", ".GIT", ".Git", "git~1", ".git.", ".git ", "a", "b.txt", "\\", "\0", "C:", "\u200c", "é"),
      fc.string({ maxLength: 8 }),
    );
    const pathish = fc.oneof(
      fc.array(part, { maxLength: 8 }).map((parts) => parts.join("/")),
      fc.array(part, { maxLength: 8 }).map((parts) => `/${parts.join("/")}`),
      fc.string({ maxLength: 40 }),
    );

    test("an accepted path stays inside the root, is already normal, and has no .git part", () => {
      fc.assert(
        fc.property(pathish, (path) => {
          if (checkRelPath(path) !== null) return;
          const abs = resolve(root, path);
          expect(abs.startsWith(`${root}/`)).toBe(true);
          expect(posix.normalize(path)).toBe(path);
          expect(path.split("/").some(isGitName)).toBe(false);
          expect(path.includes("\\") || path.includes("\0")).toBe(false);
        }),
        { numRuns: 5000 },
      );
    });

    test("lenient parsing gives a path the strict rules accept (or the root), and is idempotent", () => {
      fc.assert(
        fc.property(pathish, (path) => {
          const parsed = parseRelPath(path, { lenient: true });
          if (parsed.problem !== undefined) return;
          if (parsed.path !== "") expect(checkRelPath(parsed.path)).toBeNull();
          expect(parseRelPath(parsed.path, { lenient: true })).toEqual(parsed);
        }),
        { numRuns: 5000 },
      );
    });

    test("the shortcut for plain paths answers exactly as the full check, under every rule", () => {
      const plainish = fc.oneof(pathish, fc.stringMatching(/^[a-zA-Z0-9._\/-]{0,300}$/), fc.array(fc.constantFrom("a", ".", "..", "git", ".git", "x-1_y.z", ""), { maxLength: 6 }).map((p) => p.join("/")));
      fc.assert(
        fc.property(plainish, fc.boolean(), fc.boolean(), (path, lenient, allowGit) => {
          expect(parseRelPath(path, { lenient, allowGit })).toEqual(checkedRelPath(path, { lenient, allowGit }));
        }),
        { numRuns: 20000 },
      );
      expect(parseRelPath("a".repeat(MAX_PART_BYTES + 1)).problem).toStartWith("a path with a part that is too long");
    });

    test("any letter case of .git, with trailing dots or spaces, anywhere in a path, is refused", () => {
      const gitLike = fc
        .tuple(fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }), fc.stringMatching(/^[. ]{0,3}$/))
        .map(([upper, tail]) => `.${["g", "i", "t"].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join("")}${tail}`);
      const name = fc.stringMatching(/^[a-z0-9_-]{1,6}$/);
      fc.assert(
        fc.property(fc.array(name, { maxLength: 3 }), gitLike, fc.array(name, { maxLength: 3 }), (before, git, after) => {
          const path = [...before, git, ...after].join("/");
          expect(checkRelPath(path)).toStartWith("a path into ");
          expect(checkRelPath(path, { allowGit: true })).toBeNull();
        }),
        { numRuns: 2000 },
      );
    });
  });
});

describe("checkParents", () => {
  test("ok when every parent is a real directory; missing stops at the first absent one", async () => {
    const root = writeTree(tempDir(), { "a/b/": "" });
    expect(await checkParents(root, "a/b/c.txt")).toEqual({ kind: "ok" });
    expect(await checkParents(root, "top.txt")).toEqual({ kind: "ok" });
    expect(await checkParents(root, "a/x/y/z.txt")).toEqual({ kind: "missing", parent: "a/x" });
    expect(existsSync(join(root, "a/x"))).toBe(false);
  });

  test("a symlink or a file among the parents is reported, never followed", async () => {
    const base = tempDir();
    const root = writeTree(join(base, "root"), { "file.txt": "x", "d/": "" });
    mkdirSync(join(base, "outside"));
    symlinkSync(join(base, "outside"), join(root, "link"));
    symlinkSync("d", join(root, "inlink"));
    expect(await checkParents(root, "link/x.txt", { create: true })).toEqual({ kind: "symlink", parent: "link" });
    expect(await checkParents(root, "inlink/x.txt")).toEqual({ kind: "symlink", parent: "inlink" });
    expect(await checkParents(root, "file.txt/x.txt", { create: true })).toEqual({ kind: "not-dir", parent: "file.txt" });
    expect(await checkParents(root, "d/link/x", { create: true })).toEqual({ kind: "ok" });
    expect(readdirSync(join(base, "outside"))).toEqual([]);
  });

  test("create makes the missing parents, and a dangling symlink among them is refused, not created through", async () => {
    const base = tempDir();
    const root = writeTree(join(base, "root"), { "a/": "" });
    expect(await checkParents(root, "a/new/deeper/f.txt", { create: true })).toEqual({ kind: "ok" });
    expect(statSync(join(root, "a/new/deeper")).isDirectory()).toBe(true);
    symlinkSync(join(base, "not-yet"), join(root, "a/dangling"));
    expect(await checkParents(root, "a/dangling/x/f.txt", { create: true })).toEqual({ kind: "symlink", parent: "a/dangling" });
    expect(existsSync(join(base, "not-yet"))).toBe(false);
  });

  test("a cache shares lstat results between calls", async () => {
    const root = writeTree(tempDir(), { "a/": "" });
    const cache = new Map();
    expect(await checkParents(root, "a/x", { cache })).toEqual({ kind: "ok" });
    expect([...cache.keys()]).toEqual(["a"]);
  });
});

describe("symlink targets", () => {
  test("any target the file system can hold is kept: absolute, climbing, dangling, looping; empty, NUL and over-long ones are not", () => {
    for (const target of ["/etc/hosts", "../outside", "../../..", "missing/file", "loop", ".", "a".repeat(MAX_PATH_BYTES)]) {
      expect(linkTargetProblem(target)).toBeNull();
    }
    expect(linkTargetProblem("")).toBe("a symlink with an empty target");
    expect(linkTargetProblem("a\0b")).toBe("a symlink whose target has a NUL character");
    expect(linkTargetProblem("é".repeat(MAX_PATH_BYTES / 2 + 1))).toContain("too long");
  });

  test("linkLeavesTree resolves as the kernel would, through the tree's other links", () => {
    const links = new Map<string, string>([
      ["b", "."],
      ["abs", "/etc"],
      ["sub/up", ".."],
      ["loop1", "loop2"],
      ["loop2", "loop1"],
    ]);
    const lookup = (path: string) => links.get(path);
    const leaves = (rel: string, target: string) => linkLeavesTree(rel, target, lookup);
    // Outside: absolute (also as Windows reads them), climbing above the root, or through a link that does.
    expect(leaves("x", "/etc/hosts")).toBe(true);
    expect(leaves("x", "C:/Windows")).toBe(true);
    expect(leaves("x", "a\\..\\..")).toBe(true);
    expect(leaves("x", "../outside")).toBe(true);
    expect(leaves("sub/x", "../../outside")).toBe(true);
    expect(leaves("sub/deep/x", "./../a/../../..")).toBe(true);
    expect(leaves("a", "b/b/../..")).toBe(true); // each part looks harmless; `b` is the root itself
    expect(leaves("x", "abs/hosts")).toBe(true);
    expect(leaves("x", "sub/up/sub/up/..")).toBe(true);
    expect(leaves("x", "sub/up/../y")).toBe(true); // sub/up is the root: its parent is outside
    // Inside: plain, climbing back to the root at most, dangling, a loop (the kernel gives up on it).
    expect(leaves("x", "y")).toBe(false);
    expect(leaves("sub/x", "../y")).toBe(false);
    expect(leaves("sub/x", "..")).toBe(false);
    expect(leaves("x", "missing/deeper/../file")).toBe(false);
    expect(leaves("x", "b/b/b/y")).toBe(false);
    expect(leaves("x", "sub/up/y")).toBe(false);
    expect(leaves("x", "loop1")).toBe(false);
    expect(leaves("self", "self/x")).toBe(false);
    // The link itself counts with its new target, whatever the tree held at its path.
    expect(linkLeavesTree("b", "../b", lookup)).toBe(true);
  });

  test("linksOnDisk reads links with readlink, never through one; anything else is there, or not", () => {
    const root = tempDir();
    writeTree(root, { "f.txt": "f", "d/": "" });
    symlinkSync("/etc", join(root, "abs"));
    symlinkSync("d", join(root, "in"));
    const lookup = linksOnDisk(root);
    expect(lookup("abs")).toBe("/etc");
    expect(lookup("in")).toBe("d");
    expect(lookup("f.txt")).toBeNull();
    expect(lookup("d")).toBeNull();
    expect(lookup("missing")).toBeUndefined();
    // Never read through a parent that is a link: below one, nothing is there.
    const elsewhere = tempDir();
    symlinkSync("/etc", join(elsewhere, "x"));
    symlinkSync(elsewhere, join(root, "via"));
    expect(lookup("via/x")).toBeUndefined();
    expect(lookup("missing/x")).toBeUndefined();
    expect(lookup("f.txt/x")).toBeUndefined();
    expect(linkLeavesTree("x", "in/../abs/passwd", lookup)).toBe(true);
    expect(linkLeavesTree("x", "in/../f.txt", lookup)).toBe(false);
  });

  test("properties: an absolute target, or one with more .. than the link is deep, always leaves; a plain relative one never does", () => {
    const name = fc.stringMatching(/^[a-z]{1,4}$/);
    fc.assert(
      fc.property(fc.array(name, { minLength: 1, maxLength: 4 }), fc.array(name, { maxLength: 4 }), (relParts, targetParts) => {
        const rel = relParts.join("/");
        const none = () => undefined;
        expect(linkLeavesTree(rel, `/${targetParts.join("/")}`, none)).toBe(true);
        const up = Array(relParts.length).fill("..").join("/");
        expect(linkLeavesTree(rel, [up, ...targetParts].join("/"), none)).toBe(true);
        if (targetParts.length > 0) expect(linkLeavesTree(rel, targetParts.join("/"), none)).toBe(false);
      }),
    );
  });

  test("symlinkAtomic makes or replaces a link under a temp name, never replaces a directory, never writes through the old link", async () => {
    const dir = tempDir();
    writeTree(dir, { "victim.txt": "victim\n", "file.txt": "file\n", "d/inside.txt": "i" });
    symlinkSync("victim.txt", join(dir, "old"));
    await symlinkAtomic(join(dir, "new"), "/etc/hosts");
    await symlinkAtomic(join(dir, "old"), "../elsewhere");
    await symlinkAtomic(join(dir, "file.txt"), "dangling");
    expect(readlinkSync(join(dir, "new"))).toBe("/etc/hosts");
    expect(readlinkSync(join(dir, "old"))).toBe("../elsewhere");
    expect(readlinkSync(join(dir, "file.txt"))).toBe("dangling");
    expect(readFileSync(join(dir, "victim.txt"), "utf8")).toBe("victim\n");
    const err = await symlinkAtomic(join(dir, "d"), "x").catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).toBe("EISDIR");
    expect(statSync(join(dir, "d")).isDirectory()).toBe(true);
    const bad = await symlinkAtomic(join(dir, "nul"), "a\0b").catch((e: unknown) => e);
    expect((bad as CattyError).code).toBe("bad_request");
    expect(readdirSync(dir).sort()).toEqual(["d", "file.txt", "new", "old", "victim.txt"]);
  });
});

describe("TempFile", () => {
  test("is created beside the target under an unpredictable name, mode 0600, and renamed into place", async () => {
    const dir = tempDir();
    const target = join(dir, "f.txt");
    const names = new Set<string>();
    for (let i = 0; i < 50; i++) names.add(tempName(dir));
    expect(names.size).toBe(50);
    for (const name of names) expect(name.slice(dir.length + 1)).toMatch(TEMP_NAME);

    const tmp = TempFile.beside(target);
    expect(tmp.path.startsWith(`${dir}/`)).toBe(true);
    expect(tmp.path.slice(dir.length + 1)).toMatch(TEMP_NAME);
    expect(statSync(tmp.path).mode & 0o777).toBe(0o600);
    tmp.write(new TextEncoder().encode("hello"));
    expect(tmp.written).toBe(5);
    expect(existsSync(target)).toBe(false);
    await tmp.commit(target, 0o640);
    expect(readFileSync(target, "utf8")).toBe("hello");
    expect(statSync(target).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual(["f.txt"]);
  });

  test("the exclusive open never follows or replaces a symlink planted at the name", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "victim"), "victim\n");
    symlinkSync(join(dir, "victim"), join(dir, "planted"));
    symlinkSync(join(dir, "nowhere"), join(dir, "dangling"));
    for (const name of ["planted", "dangling"]) {
      expect(() => openExclusive(join(dir, name))).toThrow(expect.objectContaining({ code: "EEXIST" }));
    }
    expect(readFileSync(join(dir, "victim"), "utf8")).toBe("victim\n");
    expect(existsSync(join(dir, "nowhere"))).toBe(false);
    expect(readlinkSync(join(dir, "planted"))).toBe(join(dir, "victim"));
  });

  test("a write past the limit writes none of its bytes and removes the file", () => {
    const dir = tempDir();
    const tmp = TempFile.beside(join(dir, "f"), { maxBytes: 10 });
    tmp.write(new Uint8Array(6));
    const path = tmp.path;
    expect(() => tmp.write(new Uint8Array(5))).toThrow(expect.objectContaining({ code: "too_large" }));
    expect(existsSync(path)).toBe(false);
    expect(tmp.written).toBe(6);
    expect(() => tmp.write(new Uint8Array(1))).toThrow(CattyError);
    expect(readdirSync(dir)).toEqual([]);
  });

  test("forTransfer: a declared size over the cap is refused before anything is created; more than declared is refused", () => {
    const dir = tempDir();
    expect(() => TempFile.forTransfer(join(dir, "f"), { size: 101, maxBytes: 100 })).toThrow(expect.objectContaining({ code: "too_large" }));
    expect(readdirSync(dir)).toEqual([]);
    const tmp = TempFile.forTransfer(join(dir, "f"), { size: 4, maxBytes: 100 });
    tmp.write(new TextEncoder().encode("abcd"));
    expect(statSync(tmp.path).size).toBe(4);
    expect(() => tmp.write(new TextEncoder().encode("e"))).toThrow(expect.objectContaining({ code: "too_large" }));
    expect(readdirSync(dir)).toEqual([]);
  });

  test("discard and await using remove an uncommitted file; a failed rename removes it too", async () => {
    const dir = tempDir();
    let path = "";
    {
      await using tmp = TempFile.beside(join(dir, "f"));
      path = tmp.path;
      expect(existsSync(path)).toBe(true);
    }
    expect(existsSync(path)).toBe(false);
    const tmp = TempFile.beside(join(dir, "g"));
    await expect(tmp.commit(join(dir, "no-such-dir", "g"))).rejects.toThrow();
    expect(readdirSync(dir)).toEqual([]);
    await tmp.discard(); // again: harmless
  });

  test("writeFileAtomic replaces the file whole with the mode asked", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "s.json"), "old");
    const ino = statSync(join(dir, "s.json")).ino;
    await writeFileAtomic(join(dir, "s.json"), '{"new":true}');
    expect(readFileSync(join(dir, "s.json"), "utf8")).toBe('{"new":true}');
    expect(statSync(join(dir, "s.json")).ino).not.toBe(ino);
    expect(statSync(join(dir, "s.json")).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(["s.json"]);
  });
});

describe("walkTree", () => {
  test("depth-first, sorted, parents first, symlinks reported and not followed, visitor may skip", async () => {
    const base = tempDir();
    const root = writeTree(join(base, "root"), { "b/z.txt": "z", "b/a.txt": "a", "a.txt": "a", "skip/inner.txt": "x", "c/": "" });
    writeTree(join(base, "outside"), { "secret.txt": "s" });
    symlinkSync(join(base, "outside"), join(root, "link"));
    const seen: string[] = [];
    await walkTree(root, (rel, st) => {
      seen.push(`${rel}${st.isSymbolicLink() ? "@" : st.isDirectory() ? "/" : ""}`);
      if (rel === "skip") return false;
    });
    expect(seen).toEqual(["a.txt", "b/", "b/a.txt", "b/z.txt", "c/", "link@", "skip/"]);
  });

  test("an async visitor is awaited; a missing root is passed over and reported", async () => {
    const root = writeTree(tempDir(), { "x/y.txt": "y" });
    const order: string[] = [];
    await walkTree(root, async (rel) => {
      await Bun.sleep(0);
      order.push(rel);
    });
    expect(order).toEqual(["x", "x/y.txt"]);
    const errors: string[] = [];
    await walkTree(join(root, "nope"), () => {}, (rel, err) => errors.push(`${rel}:${(err as NodeJS.ErrnoException).code}`));
    expect(errors).toEqual([":ENOENT"]);
  });
});

describe("sameContent", () => {
  test("compares sizes, then bytes (past the first chunk too)", async () => {
    const dir = tempDir();
    const big = noise(600_000, 3);
    const other = Uint8Array.from(big);
    other[599_999] = (other[599_999] ?? 0) ^ 1;
    writeTree(dir, { a: big, b: Uint8Array.from(big), c: other, d: big.subarray(1), e: "", f: "" });
    expect(await sameContent(join(dir, "a"), join(dir, "b"))).toBe(true);
    expect(await sameContent(join(dir, "a"), join(dir, "c"))).toBe(false);
    expect(await sameContent(join(dir, "a"), join(dir, "d"))).toBe(false);
    expect(await sameContent(join(dir, "e"), join(dir, "f"))).toBe(true);
  });

  test("a symlink or a fifo is never the same as a file, and never opened through (nor hangs)", async () => {
    const dir = tempDir();
    writeTree(dir, { a: "same", b: "same" });
    symlinkSync(join(dir, "b"), join(dir, "link"));
    expect(await sameContent(join(dir, "a"), join(dir, "link"))).toBe(false);
    expect(await sameContent(join(dir, "link"), join(dir, "a"))).toBe(false);
    expect(Bun.spawnSync(["mkfifo", join(dir, "fifo")]).exitCode).toBe(0);
    expect(lstatSync(join(dir, "fifo")).isFIFO()).toBe(true);
    expect(await sameContent(join(dir, "a"), join(dir, "fifo"))).toBe(false);
  });
});

describe("openSeen", () => {
  /** A tree with the file a reader saw, and a file outside it that must never be read in its place. */
  function setUp(): { root: string; abs: string; seen: Stats; outside: string } {
    const root = tempDir();
    writeTree(root, { "tree/dir/file.txt": "in the tree\n", "secret/file.txt": "outside\n" });
    const abs = join(root, "tree/dir/file.txt");
    return { root, abs, seen: lstatSync(abs), outside: join(root, "secret") };
  }

  const readBoth = async (abs: string, seen: Stats): Promise<[string | null, string | null]> => {
    const fd = openSeenSync(abs, seen);
    const a = fd === null ? null : readFileSync(fd, "utf8");
    if (fd !== null) closeSync(fd);
    const fh = await openSeen(abs, seen);
    const b = fh === null ? null : await fh.readFile("utf8");
    await fh?.close();
    return [a, b];
  };

  test("opens the file that was seen", async () => {
    const { abs, seen } = setUp();
    expect(await readBoth(abs, seen)).toEqual(["in the tree\n", "in the tree\n"]);
  });

  test("not a symlink put in its place", async () => {
    const { abs, seen, outside } = setUp();
    rmSync(abs);
    symlinkSync(join(outside, "file.txt"), abs);
    expect(await readBoth(abs, seen)).toEqual([null, null]);
  });

  test("not a file reached through a parent swapped for a symlink", async () => {
    const { root, abs, seen, outside } = setUp();
    renameSync(join(root, "tree/dir"), join(root, "tree/old"));
    symlinkSync(outside, join(root, "tree/dir"));
    expect(readFileSync(abs, "utf8")).toBe("outside\n"); // what a plain open would read
    expect(await readBoth(abs, seen)).toEqual([null, null]);
  });

  test("not a FIFO put in its place (which would block)", async () => {
    const { abs, seen } = setUp();
    rmSync(abs);
    expect(Bun.spawnSync(["mkfifo", abs]).exitCode).toBe(0);
    expect(await readBoth(abs, seen)).toEqual([null, null]);
  });
});
