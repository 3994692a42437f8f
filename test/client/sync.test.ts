import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { applySync, formatPlan, isEmptyPlan, planSync, type SyncConflict, type SyncPlan } from "../../src/client/sync.ts";
import { CattyError } from "../../src/protocol/errors.ts";
import { listPaths, tempDirs } from "../helpers/fs.ts";

const tempDir = tempDirs("catty-sync-test-");

function tree(root: string, entries: Record<string, string | { link: string }>): string {
  for (const [rel, content] of Object.entries(entries)) {
    const abs = join(root, rel);
    if (rel.endsWith("/")) {
      mkdirSync(abs, { recursive: true });
      continue;
    }
    mkdirSync(dirname(abs), { recursive: true });
    if (typeof content === "string") writeFileSync(abs, content);
    else symlinkSync(content.link, abs);
  }
  return root;
}

const read = (path: string) => readFileSync(path, "utf8");
const mode = (path: string) => statSync(path).mode & 0o7777;

/** Every name in the tree, to show no temporary files are left behind. */
const names = listPaths;

describe("planSync", () => {
  test("sorts the save's files into create, change and unchanged, and finds local-only ones", async () => {
    const common = { "same.txt": "same", "link": { link: "same.txt" } };
    const save = tree(tempDir(), {
      ...common,
      "changed.txt": "new contents",
      "resized.txt": "longer than before",
      "src/new.ts": "export {};",
      "deep/er/new.md": "# new",
      "relinked": { link: "same.txt" },
    });
    const here = tree(tempDir(), {
      ...common,
      "changed.txt": "old contents",
      "resized.txt": "short",
      "src/keep.ts": "local only",
      "notes.txt": "local only",
      "relinked": { link: "changed.txt" },
    });
    const plan = await planSync(save, here);
    expect(plan).toEqual({
      create: ["deep/er/new.md", "src/new.ts"],
      change: ["changed.txt", "relinked", "resized.txt"],
      localOnly: ["notes.txt", "src/keep.ts"],
      unchanged: 2,
      conflicts: [],
    });
  });

  test("excluded local files are never local-only", async () => {
    const save = tree(tempDir(), { "a.txt": "a" });
    const here = tree(tempDir(), {
      "a.txt": "a",
      ".gitignore": "build/\n*.tmp\n",
      "build/out.js": "built",
      "scratch.tmp": "x",
      "node_modules/pkg/index.js": "dep",
      ".env": "SECRET=1",
      "sub/.env": "SECRET=2",
      "app.log": "log",
      "mine.txt": "mine",
    });
    const plan = await planSync(save, here);
    expect(plan.localOnly).toEqual([".gitignore", "mine.txt"]);
  });

  test("paths that would go through a local symlink, a file or replace a directory are conflicts", async () => {
    const outside = tree(tempDir(), { "victim.txt": "outside" });
    const save = tree(tempDir(), { "lib/x.ts": "x", "file/y.ts": "y", "dir": "now a file" });
    const here = tree(tempDir(), { "lib": { link: outside }, "file": "plain", "dir/z.txt": "z" });
    const plan = await planSync(save, here);
    expect(plan.create).toEqual([]);
    expect(plan.change).toEqual([]);
    expect(plan.conflicts).toEqual([
      { path: "dir", reason: "is a directory here" },
      { path: "file/y.ts", reason: "is inside file, which is a file here" },
      { path: "lib/x.ts", reason: "is inside lib, which is a symlink here" },
    ]);
  });

  test("ignored paths are not looked at", async () => {
    const save = tree(tempDir(), { "a.txt": "a" });
    const here = tree(tempDir(), { "a.txt": "a", "work/save.tar.gz": "x" });
    const plan = await planSync(save, here, { ignore: [join(here, "work")] });
    expect(plan.localOnly).toEqual([]);
    expect(isEmptyPlan(plan, true)).toBe(true);
  });

  test("compares contents, not only sizes", async () => {
    const big = Buffer.alloc(600_000, 7);
    const other = Buffer.from(big);
    other[599_999] = 8;
    const save = tempDir();
    const here = tempDir();
    writeFileSync(join(save, "same.bin"), big);
    writeFileSync(join(here, "same.bin"), big);
    writeFileSync(join(save, "diff.bin"), big);
    writeFileSync(join(here, "diff.bin"), other);
    const plan = await planSync(save, here);
    expect(plan.change).toEqual(["diff.bin"]);
    expect(plan.unchanged).toBe(1);
  });
});

describe("applySync", () => {
  test("creates and changes files, keeps local-only ones, leaves no temporary files", async () => {
    const save = tree(tempDir(), { "a.txt": "new a", "src/b.ts": "new b", "deep/er/c.md": "c", "same.txt": "s", "ln": { link: "a.txt" } });
    const here = tree(tempDir(), { "a.txt": "old a", "same.txt": "s", "mine.txt": "mine" });
    const plan = await planSync(save, here);
    const result = await applySync(plan, save, here, { delete: false });
    expect(result).toEqual({ created: 3, changed: 1, deleted: 0, skipped: [] });
    expect(read(join(here, "a.txt"))).toBe("new a");
    expect(read(join(here, "src/b.ts"))).toBe("new b");
    expect(read(join(here, "deep/er/c.md"))).toBe("c");
    expect(readlinkSync(join(here, "ln"))).toBe("a.txt");
    expect(read(join(here, "mine.txt"))).toBe("mine");
    expect(names(here)).toEqual(["a.txt", "deep", "deep/er", "deep/er/c.md", "ln", "mine.txt", "same.txt", "src", "src/b.ts"]);
    // Applying again finds nothing to do.
    expect(isEmptyPlan(await planSync(save, here), false)).toBe(true);
  });

  test("--delete removes local-only files and the directories they leave empty, never excluded ones", async () => {
    const save = tree(tempDir(), { "keep.txt": "k", "kept-dir/in-save.txt": "s" });
    const here = tree(tempDir(), {
      "keep.txt": "k",
      "gone.txt": "x",
      "old/deeper/gone.txt": "x",
      "kept-dir/in-save.txt": "s",
      "kept-dir/gone.txt": "x",
      "mixed/gone.txt": "x",
      "mixed/.env": "SECRET=1",
      "node_modules/pkg/index.js": "dep",
      ".gitignore": "dist/\n",
      "dist/app.js": "built",
    });
    const plan = await planSync(save, here);
    expect(plan.localOnly).toEqual([".gitignore", "gone.txt", "kept-dir/gone.txt", "mixed/gone.txt", "old/deeper/gone.txt"]);
    const result = await applySync(plan, save, here, { delete: true });
    expect(result.deleted).toBe(5);
    expect(names(here)).toEqual([
      "dist",
      "dist/app.js",
      "keep.txt",
      "kept-dir",
      "kept-dir/in-save.txt",
      "mixed",
      "mixed/.env",
      "node_modules",
      "node_modules/pkg",
      "node_modules/pkg/index.js",
    ]);
  });

  test("an existing file keeps its mode; new files get the saved mode minus special and group/other write bits", async () => {
    const save = tree(tempDir(), { "changed.sh": "#!/bin/sh\necho new\n", "run.sh": "#!/bin/sh\n", "open.txt": "o", "suid": "s", "ro.txt": "r" });
    chmodSync(join(save, "changed.sh"), 0o755);
    chmodSync(join(save, "run.sh"), 0o775);
    chmodSync(join(save, "open.txt"), 0o666);
    chmodSync(join(save, "suid"), 0o4777);
    chmodSync(join(save, "ro.txt"), 0o444);
    const here = tree(tempDir(), { "changed.sh": "#!/bin/sh\necho old\n" });
    chmodSync(join(here, "changed.sh"), 0o600);
    await applySync(await planSync(save, here), save, here, { delete: false });
    expect(mode(join(here, "changed.sh"))).toBe(0o600);
    expect(read(join(here, "changed.sh"))).toContain("new");
    expect(mode(join(here, "run.sh"))).toBe(0o755);
    expect(mode(join(here, "open.txt"))).toBe(0o644);
    expect(mode(join(here, "suid"))).toBe(0o755);
    expect(mode(join(here, "ro.txt"))).toBe(0o444);
  });

  test("never writes through a local symlink that points outside", async () => {
    const outside = tree(tempDir(), { "victim.txt": "outside", "dir/": "" });
    const save = tree(tempDir(), { "lib/x.ts": "x", "victim.txt": "from the save", "file.txt": "from the save" });
    const here = tree(tempDir(), { "lib": { link: join(outside, "dir") }, "victim.txt": { link: join(outside, "victim.txt") } });
    const plan = await planSync(save, here);
    expect(plan.conflicts.map((c) => c.path)).toEqual(["lib/x.ts"]);
    expect(plan.change).toEqual(["victim.txt"]);

    // A plan that claims otherwise is checked again when applied.
    const forged: SyncPlan = { ...plan, create: ["lib/x.ts", "file.txt"], localOnly: ["lib/victim.txt"] };
    const result = await applySync(forged, save, here, { delete: true });
    expect(result.skipped.map((s) => s.path).sort()).toEqual(["lib/victim.txt", "lib/x.ts"]);
    expect(result.created).toBe(1);
    expect(result.changed).toBe(1);

    // The symlink itself was replaced by a file; its target was not touched.
    expect(lstatSync(join(here, "victim.txt")).isFile()).toBe(true);
    expect(read(join(here, "victim.txt"))).toBe("from the save");
    expect(read(join(outside, "victim.txt"))).toBe("outside");
    expect(readdirSync(join(outside, "dir"))).toEqual([]);
    expect(lstatSync(join(here, "lib")).isSymbolicLink()).toBe(true);
  });

  test("a local-only file behind a symlinked directory is not deleted", async () => {
    const outside = tree(tempDir(), { "precious.txt": "p" });
    const save = tree(tempDir(), { "a.txt": "a" });
    const here = tree(tempDir(), { "a.txt": "a", "ext": { link: outside } });
    const plan = await planSync(save, here);
    expect(plan.localOnly).toEqual(["ext"]); // the link itself, not what it points to
    await applySync({ ...plan, localOnly: ["ext/precious.txt"] }, save, here, { delete: true });
    expect(read(join(outside, "precious.txt"))).toBe("p");
  });

  test("paths that are not plain relative paths are refused before anything is written", async () => {
    const parent = tempDir();
    const save = tree(join(parent, "save"), { "x": "x", "ok.txt": "ok" });
    const here = tree(join(parent, "here"), { "keep": "k" });
    for (const bad of ["../escape", "/etc/passwd", "a/../../b", "", "./x", "a//b", "C:/x", "a\\b"]) {
      const plan: SyncPlan = { create: [bad], change: [], localOnly: [], unchanged: 0, conflicts: [] };
      const err = await applySync(plan, save, here, { delete: false }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CattyError);
      expect((err as CattyError).code).toBe("bad_request");
    }
    const mixed: SyncPlan = { create: ["ok.txt"], change: [], localOnly: ["../save/x"], unchanged: 0, conflicts: [] };
    await expect(applySync(mixed, save, here, { delete: true })).rejects.toBeInstanceOf(CattyError);
    expect(existsSync(join(save, "x"))).toBe(true);
    expect(readdirSync(parent).sort()).toEqual(["here", "save"]);
    expect(names(here)).toEqual(["keep"]);
  });
});

describe("symlinks", () => {
  const OUTSIDE = "a symlink to {}, outside this directory: kept in the session";
  const outside = (target: string) => `is ${OUTSIDE.replace("{}", target)}`;

  test("links that stay inside are made as they are (dangling and looping too); links that lead outside are left alone and reported", async () => {
    const save = tree(tempDir(), {
      "a.txt": "a",
      "sub/b.txt": "b",
      "inside": { link: "sub/b.txt" },
      "sub/back": { link: "../a.txt" },
      "dangling": { link: "not/there/yet" },
      "loop1": { link: "loop2" },
      "loop2": { link: "loop1" },
      "self": { link: "self" },
      "abs": { link: "/etc/hosts" },
      "up": { link: "../outside" },
      "sub/upup": { link: "../../x" },
      "dot": { link: "." },
      "chain": { link: "dot/dot/../outside" }, // each part harmless, together outside
      "changed": { link: "/etc/passwd" },
    });
    const here = tree(tempDir(), { "changed": { link: "a.txt" }, "mine": "local only" });
    const before = names(here);
    const plan = await planSync(save, here);
    expect(plan.create).toEqual(["a.txt", "dangling", "dot", "inside", "loop1", "loop2", "self", "sub/b.txt", "sub/back"]);
    expect(plan.change).toEqual([]);
    expect(plan.conflicts).toEqual([
      { path: "abs", reason: outside("/etc/hosts") },
      { path: "chain", reason: outside("dot/dot/../outside") },
      { path: "sub/upup", reason: outside("../../x") },
      { path: "up", reason: outside("../outside") },
      { path: "changed", reason: outside("/etc/passwd") },
    ]);
    expect(names(here)).toEqual(before); // planning changes nothing

    const result = await applySync(plan, save, here, { delete: true });
    expect(result).toEqual({ created: 9, changed: 0, deleted: 1, skipped: [] });
    for (const rel of ["inside", "sub/back", "dangling", "loop1", "loop2", "self", "dot"]) {
      expect(readlinkSync(join(here, rel))).toBe(readlinkSync(join(save, rel)));
    }
    for (const rel of ["abs", "up", "sub/upup", "chain"]) expect(lstatSync(join(here, rel), { throwIfNoEntry: false })).toBeUndefined();
    expect(readlinkSync(join(here, "changed"))).toBe("a.txt");
    expect(read(join(here, "inside"))).toBe("b");
    expect(names(here)).toEqual(["a.txt", "changed", "dangling", "dot", "inside", "loop1", "loop2", "self", "sub", "sub/b.txt", "sub/back"]);
    expect(formatPlan(plan, { dryRun: false, delete: true })).toContain("  ! abs (is a symlink to /etc/hosts, outside this directory: kept in the session)");
  });

  test("a link is judged with the local tree's links: through a local link out, it is left alone", async () => {
    const save = tree(tempDir(), { "x": { link: "d/../sys/hosts" }, "y": { link: "d/../lib/z" } });
    const here = tree(tempDir(), { "d/": "", "sys": { link: "/etc" }, "lib": { link: "d" } });
    const plan = await planSync(save, here);
    expect(plan.create).toEqual(["y"]);
    expect(plan.conflicts).toEqual([{ path: "x", reason: outside("d/../sys/hosts") }]);
    // Only with --delete would `sys` go: a link that leads out only while it is there still waits.
    const gone = tree(tempDir(), { "d/": "", "far": { link: "d/e/f" } });
    const via = tree(tempDir(), { "w": { link: "far/../../.." } });
    expect((await planSync(via, gone)).conflicts.map((c) => c.path)).toEqual(["w"]);
  });

  test("a link that would make a link already here lead outside is left alone; so are links that do it only together", async () => {
    // l -> m/../.. is inside while m -> d/e; the save (as a session that went on) has m -> d.
    const here = tree(tempDir(), { "m": { link: "d/e" }, "l": { link: "m/../.." } });
    const save = tree(tempDir(), { "m": { link: "d" }, "l": { link: "m/../.." }, "n": { link: "m/x" } });
    const plan = await planSync(save, here);
    expect(plan.conflicts).toEqual([{ path: "m", reason: outside("d").replace("outside this directory", "which would make l lead outside this directory") }]);
    expect(plan.create).toEqual(["n"]);
    expect(plan.unchanged).toBe(1);
    // A plan that claims otherwise is checked again.
    const forced = await applySync({ ...plan, change: ["m"] }, save, here, { delete: false });
    expect(forced.skipped).toEqual([plan.conflicts[0] as SyncConflict]);
    expect(readlinkSync(join(here, "m"))).toBe("d/e");

    // Two links that each keep k inside, and together do not (p -> s/t, then s/t/q -> ../..
    // climbs to the root, and k's last .. above it): neither is made.
    const here2 = tree(tempDir(), { "k": { link: "p/q/../.." } });
    const save2 = tree(tempDir(), { "p": { link: "s/t" }, "s/t/q": { link: "../.." } });
    const both = await planSync(save2, here2);
    expect(both.create).toEqual([]);
    expect(both.conflicts.map((c) => c.path).sort()).toEqual(["p", "s/t/q"]);
    expect(both.conflicts.every((c) => c.reason.includes("which would make k lead outside this directory"))).toBe(true);
  });

  test("a forged plan is checked again: a link out is skipped, nothing is written", async () => {
    const save = tree(tempDir(), { "abs": { link: "/etc/hosts" }, "ok": { link: "abs" } });
    const here = tempDir();
    const forged: SyncPlan = { create: ["abs", "ok"], change: [], localOnly: [], unchanged: 0, conflicts: [] };
    const result = await applySync(forged, save, here, { delete: false });
    expect(result.skipped).toEqual([
      { path: "abs", reason: outside("/etc/hosts") },
      // `ok` would lead out through `abs` as the plan claimed it: left alone too.
      { path: "ok", reason: outside("abs") },
    ]);
    expect(names(here)).toEqual([]);
  });

  test("a link never replaces a local directory", async () => {
    const save = tree(tempDir(), { "d": { link: "e" } });
    const here = tree(tempDir(), { "d/keep.txt": "k" });
    const plan = await planSync(save, here);
    expect(plan.conflicts).toEqual([{ path: "d", reason: "is a directory here" }]);
    const result = await applySync({ ...plan, change: ["d"] }, save, here, { delete: false });
    expect(result.skipped).toEqual([{ path: "d", reason: "is a directory here" }]);
    expect(read(join(here, "d/keep.txt"))).toBe("k");
  });
});

describe(".git, in any letter case, is never written or deleted", () => {
  test("a save with .GIT/config and sub/.Git/hooks/x writes neither; other spellings are reported, the real .git is left alone", async () => {
    const parent = tempDir();
    const save = tree(join(parent, "save"), {
      ".GIT/config": "[core]\n\thooksPath = /tmp/evil\n",
      "sub/.Git/hooks/x": "#!/bin/sh\necho pwned\n",
      "a/.gIT/x": "evil",
      ".git/config": "[core] the session's\n",
      ".git./HEAD": "evil",
      "sub/ok.txt": "ok",
    });
    const here = tree(join(parent, "here"), { ".git/config": "[core] mine\n", "sub/.GIT/local": "mine", "keep.txt": "k" });
    const plan = await planSync(save, here);
    expect(plan.create).toEqual(["sub/ok.txt"]);
    expect(plan.localOnly).toEqual(["keep.txt"]);
    expect(plan.conflicts.map((c) => c.path).sort()).toEqual([".GIT", ".git.", "a/.gIT", "sub/.Git"]);
    for (const c of plan.conflicts) expect(c.reason).toBe("is .git on some file systems, which Catty never writes");

    const result = await applySync(plan, save, here, { delete: true });
    expect(result).toMatchObject({ created: 1, changed: 0, deleted: 1 });
    expect(names(here)).toEqual([".git", ".git/config", "sub", "sub/.GIT", "sub/.GIT/local", "sub/ok.txt"]);
    expect(read(join(here, ".git/config"))).toBe("[core] mine\n");
  });

  test("a plan naming a path into .git, in any letter case, is refused before anything is written", async () => {
    const parent = tempDir();
    const save = tree(join(parent, "save"), { ".GIT/config": "evil", "sub/.Git/hooks/x": "evil", "ok.txt": "ok" });
    const here = tree(join(parent, "here"), { "keep": "k", ".git/config": "mine" });
    for (const bad of [".GIT/config", "sub/.Git/hooks/x", ".git/config"]) {
      const plan: SyncPlan = { create: ["ok.txt", bad], change: [], localOnly: [], unchanged: 0, conflicts: [] };
      const err = await applySync(plan, save, here, { delete: false }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CattyError);
      expect((err as CattyError).message).toContain("a path into ");
      const deleting: SyncPlan = { create: [], change: [], localOnly: [bad], unchanged: 0, conflicts: [] };
      await expect(applySync(deleting, save, here, { delete: true })).rejects.toBeInstanceOf(CattyError);
    }
    expect(names(here)).toEqual([".git", ".git/config", "keep"]);
    expect(read(join(here, ".git/config"))).toBe("mine");
  });
});

describe("formatPlan", () => {
  const plan: SyncPlan = {
    create: ["new.ts"],
    change: ["a.ts", "b.ts"],
    localOnly: ["notes.txt"],
    unchanged: 1,
    conflicts: [{ path: "lib/x.ts", reason: "is inside lib, which is a symlink here" }],
  };

  test("a path the session named is printed without its control characters", () => {
    const named: SyncPlan = { create: ["a\x1b]52;c;ZXZpbA==\x07\x1b[2Jb.txt"], change: [], localOnly: [], unchanged: 0, conflicts: [] };
    expect(formatPlan(named, { dryRun: true, delete: false })).toContain("  + a]52;c;ZXZpbA==[2Jb.txt");
  });

  test("dry run without --delete says local-only files are kept", () => {
    expect(formatPlan(plan, { dryRun: true, delete: false })).toEqual([
      "Would create (1 file):",
      "  + new.ts",
      "Would change (2 files):",
      "  ~ a.ts",
      "  ~ b.ts",
      "Only here, kept (1 file; --delete would remove them):",
      "  - notes.txt",
      "Left alone (1 file):",
      "  ! lib/x.ts (is inside lib, which is a symlink here)",
      "1 file unchanged.",
    ]);
  });

  test("with --delete and a limit", () => {
    const lines = formatPlan(plan, { dryRun: false, delete: true, limit: 1 });
    expect(lines).toContain("Deleted, only here (1 file):");
    expect(lines).toContain("  … and 1 more");
    expect(lines).not.toContain("  ~ b.ts");
  });
});
