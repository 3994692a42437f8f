/**
 * Reading a tree someone else changes meanwhile (src/lib/tree.ts), as the agent reads a session's
 * workspace: each swap the outside review used — a directory, a file, a parent turned into a
 * symlink to somewhere else, a FIFO, a hard link to a file the program could not read — against a
 * real file system, with the plain path read beside it to show what the swap would have given.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, chownSync, closeSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathTree, workspaceTree, type Tree } from "../../src/lib/tree.ts";
import { tempDirs, writeTree } from "../helpers/fs.ts";
import { waitFor } from "../helpers/wait.ts";

const tempDir = tempDirs("catty-tree-");

/** A workspace and, beside it, a directory with a secret that must never be read through it. */
function setUp(): { base: string; root: string; outside: string; tree: Tree } {
  const base = tempDir();
  const root = writeTree(join(base, "ws"), { "dir/file.txt": "in the tree\n", "dir/sub/deep.txt": "deep\n", "top.txt": "top\n" });
  const outside = writeTree(join(base, "outside"), { "file.txt": "SECRET\n", "sub/deep.txt": "SECRET\n", "master-key": "SECRET\n" });
  return { base, root, outside, tree: workspaceTree(root) };
}

const readFd = (fd: number | null): string | null => {
  if (fd === null) return null;
  try {
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
};

describe("workspaceTree", () => {
  test("walks depth-first, sorted, parents first; a symlink is reported, never followed; the visitor may skip", async () => {
    const { root, outside, tree } = setUp();
    symlinkSync(outside, join(root, "link"));
    mkdirSync(join(root, "skip"));
    writeFileSync(join(root, "skip/inner"), "x");
    const seen: string[] = [];
    await tree.walk((rel, st) => {
      seen.push(`${rel}${st.isSymbolicLink() ? "@" : st.isDirectory() ? "/" : ""}`);
      if (rel === "skip") return false;
    });
    expect(seen).toEqual(["dir/", "dir/file.txt", "dir/sub/", "dir/sub/deep.txt", "link@", "skip/", "top.txt"]);
    expect(readFd(tree.openFile("dir/sub/deep.txt"))).toBe("deep\n");
    tree.close();
  });

  test("a parent swapped for a symlink: nothing below it is looked at or read (the review's chain)", () => {
    const { root, outside, tree } = setUp();
    const seen = tree.lstat("dir/file.txt");
    expect(seen?.isFile()).toBe(true);
    renameSync(join(root, "dir"), join(root, "moved"));
    symlinkSync(outside, join(root, "dir"));
    expect(readFileSync(join(root, "dir/file.txt"), "utf8")).toBe("SECRET\n"); // what a path would read
    expect(tree.lstat("dir/file.txt")).toBeNull();
    expect(tree.lstat("dir/master-key")).toBeNull();
    expect(tree.openFile("dir/file.txt")).toBeNull();
    expect(tree.dir("dir")).toBeNull();
    expect(tree.readlink("dir")).toBe(outside);
    tree.close();
  });

  test("a directory opened before the swap goes on reading the directory itself, wherever it went", () => {
    const { root, outside, tree } = setUp();
    const dir = tree.dir("dir");
    expect(dir).not.toBeNull();
    renameSync(join(root, "dir"), join(root, "moved"));
    symlinkSync(outside, join(root, "dir"));
    expect(dir!.names().sort()).toEqual(["file.txt", "sub"]);
    expect(readFd(dir!.openFile("file.txt"))).toBe("in the tree\n");
    expect(dir!.lstat("master-key")).toBeNull();
    dir!.close();
    tree.close();
  });

  test("a deeper parent swapped: resolved one component at a time, never through it", async () => {
    const { root, outside, tree } = setUp();
    rmSync(join(root, "dir/sub"), { recursive: true });
    symlinkSync(join(outside, "sub"), join(root, "dir/sub"));
    expect(tree.openFile("dir/sub/deep.txt")).toBeNull();
    const seen: string[] = [];
    await tree.walk((rel) => void seen.push(rel));
    expect(seen).toEqual(["dir", "dir/file.txt", "dir/sub", "top.txt"]);
    tree.close();
  });

  test("a file swapped for a symlink, or another file, after it was listed: not read", () => {
    const { root, outside, tree } = setUp();
    const seen = tree.lstat("top.txt")!;
    renameSync(join(root, "top.txt"), join(root, "kept.txt")); // its inode stays taken
    symlinkSync(join(outside, "file.txt"), join(root, "top.txt"));
    expect(tree.openFile("top.txt", seen)).toBeNull();
    expect(tree.openFile("top.txt")).toBeNull();
    rmSync(join(root, "top.txt"));
    writeFileSync(join(root, "top.txt"), "another\n");
    expect(tree.openFile("top.txt", seen)).toBeNull(); // not the inode listed
    expect(readFd(tree.openFile("top.txt"))).toBe("another\n");
    tree.close();
  });

  test("a FIFO in a file's place is not opened for reading, and does not hang the reader", () => {
    const { root, tree } = setUp();
    expect(Bun.spawnSync(["mkfifo", join(root, "fifo")]).exitCode).toBe(0);
    expect(tree.lstat("fifo")?.isFIFO()).toBe(true);
    expect(tree.openFile("fifo")).toBeNull();
    tree.close();
  });

  // A reader with more rights than the writer (root beside an unprivileged program).
  test.if(process.getuid?.() === 0)("a hard link to a file the tree's user could not read is not read for it", () => {
    const { root, outside } = setUp();
    const secret = join(outside, "master-key");
    chmodSync(secret, 0o600);
    linkSync(secret, join(root, "key.txt"));
    writeFileSync(join(root, "mine.txt"), "mine\n");
    chownSync(join(root, "mine.txt"), 65534, 65534);
    chmodSync(join(root, "mine.txt"), 0o600);
    const user = { uid: 65534, gid: 65534 };
    const tree = workspaceTree(root, user);
    expect(tree.lstat("key.txt")?.isFile()).toBe(true);
    expect(tree.openFile("key.txt")).toBeNull();
    expect(readFd(tree.openFile("mine.txt"))).toBe("mine\n");
    // A directory it may not enter is not entered for it either.
    mkdirSync(join(root, "closed"));
    writeFileSync(join(root, "closed/x"), "SECRET\n");
    chmodSync(join(root, "closed"), 0o700);
    expect(tree.dir("closed")).toBeNull();
    tree.close();
    // Without a user (the program runs with the reader's own rights), both are read.
    const own = workspaceTree(root);
    expect(readFd(own.openFile("key.txt"))).toBe("SECRET\n");
    own.close();
  });

  test("a watch stays on the directory it was put on, not on what its name leads to later", async () => {
    const { root, outside, tree } = setUp();
    const dir = tree.dir("dir")!;
    const names: string[] = [];
    const watcher = dir.watch((_event, name) => name && names.push(name));
    dir.close();
    renameSync(join(root, "dir"), join(root, "moved"));
    symlinkSync(outside, join(root, "dir"));
    writeFileSync(join(outside, "planted"), "x");
    writeFileSync(join(root, "moved/new.txt"), "x");
    await waitFor(() => names.includes("new.txt"), { what: "the event from the moved directory" });
    expect(names).not.toContain("planted");
    watcher.close();
    tree.close();
  });

  test("names are single components: a path with a slash or .. is refused, not resolved", () => {
    const { tree } = setUp();
    const dir = tree.dir("dir")!;
    for (const bad of ["..", ".", "", "a/b", "x\0y"]) expect(() => dir.lstat(bad)).toThrow("not a single path component");
    expect(tree.dir("dir/../..")).toBeNull();
    dir.close();
    tree.close();
  });
});

describe("pathTree", () => {
  test("the same interface over plain paths (for trees only the reader writes)", async () => {
    const { root } = setUp();
    const tree = pathTree(root);
    const seen: string[] = [];
    await tree.walk((rel) => void seen.push(rel));
    expect(seen).toEqual(["dir", "dir/file.txt", "dir/sub", "dir/sub/deep.txt", "top.txt"]);
    expect(readFd(tree.openFile("dir/file.txt"))).toBe("in the tree\n");
    expect(tree.lstat("")?.isDirectory()).toBe(true);
  });
});
