/**
 * The workspace journal's watching (agent/watch.ts), without its safety net (the directory checks
 * are a minute away): what a program writes into directories it has only just made is recorded
 * all the same — a nested tree made and filled at once, many times over, as `mkdir -p a/b/c &&
 * echo > a/b/c/f` does.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdirSync as makeDir, writeFileSync as writeFile } from "node:fs";
import { join as joinPath } from "node:path";
import { WorkspaceJournal } from "../../agent/watch.ts";
import { silentLog } from "../../src/lib/log.ts";
import { tempDirs } from "../helpers/fs.ts";
import { waitFor } from "../helpers/wait.ts";
import { workspaceTree } from "../../src/lib/tree.ts";

const tempDir = tempDirs("catty-watch-");
const journals: WorkspaceJournal[] = [];
afterEach(async () => {
  for (const j of journals.splice(0)) await j.close();
});

test("files written into directories made a moment before are all recorded, with no scan to catch them", async () => {
  const root = tempDir();
  const journal = new WorkspaceJournal({ tree: workspaceTree(root), log: silentLog, scanIntervalMs: 60_000, onChange() {} });
  journals.push(journal);
  await journal.start();
  const N = 200;
  const made = Bun.spawn(["sh", "-c", `for i in $(seq ${N}); do mkdir -p t$i/a/b/c && echo $i > t$i/a/b/c/f && echo $i > t$i/a/g; done`], { cwd: root });
  expect(await made.exited).toBe(0);
  const want = Array.from({ length: N }, (_, i) => [`t${i + 1}/a/b/c/f`, `t${i + 1}/a/g`]).flat();
  const recorded = (): Set<string> => new Set(journal.changesSince(0).map((e) => e.path));
  await waitFor(() => want.every((p) => recorded().has(p)), { timeoutMs: 15_000, what: `all ${want.length} files recorded` }).catch((err: Error) => {
    const missing = want.filter((p) => !recorded().has(p));
    throw new Error(`${missing.length} of ${want.length} files were never recorded, e.g. ${missing.slice(0, 5).join(", ")} (${err.message})`);
  });
}, 30_000);

test("started from what a restore wrote, the journal records what changed since, before or while it takes its picture, and nothing else", async () => {
  const { writeFileSync, mkdirSync, rmSync, lstatSync, symlinkSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { DIR_SIGNATURE, fileSignature, symlinkSignature } = await import("../../agent/watch.ts");
  const root = tempDir();
  const restored: Record<string, string> = { "a.txt": "a", "b.txt": "b", "gone.txt": "gone", "sub/c.txt": "c", "node_modules/x/y.js": "y" };
  for (const [path, text] of Object.entries(restored)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  symlinkSync("a.txt", join(root, "link"));
  // The restore's picture, as the agent makes it from the extractor's records.
  const picture = new Map<string, string>();
  for (const path of Object.keys(restored)) {
    const st = lstatSync(join(root, path));
    picture.set(path, fileSignature(st.size, st.mtimeMs, st.mode));
  }
  for (const dir of ["sub", "node_modules", "node_modules/x"]) picture.set(dir, DIR_SIGNATURE);
  picture.set("link", symlinkSignature(lstatSync(join(root, "link")).mtimeMs));
  // The program got there first: one file changed, one deleted, one made, a directory made.
  writeFileSync(join(root, "b.txt"), "b, changed");
  rmSync(join(root, "gone.txt"));
  writeFileSync(join(root, "new.txt"), "new");
  mkdirSync(join(root, "made"));
  writeFileSync(join(root, "made", "d.txt"), "d");

  const journal = new WorkspaceJournal({ tree: workspaceTree(root), log: silentLog, scanIntervalMs: 60_000, onChange() {} });
  journals.push(journal);
  await journal.start(picture);
  const recorded = Object.fromEntries(journal.changesSince(0).map((e) => [e.path, e.kind]));
  expect(recorded).toEqual({ "b.txt": "file", "gone.txt": "deleted", "new.txt": "file", made: "dir", "made/d.txt": "file" });
  // And it watches on from there.
  writeFileSync(join(root, "sub", "c.txt"), "c, changed");
  await waitFor(() => journal.changesSince(0).some((e) => e.path === "sub/c.txt"), { timeoutMs: 10_000, what: "a change after the start recorded" });
});

test("a name that starts with two dots (`..foo`, `...`) is a name like any other, at the top and below", async () => {
  const root = tempDir();
  makeDir(joinPath(root, "sub"));
  const journal = new WorkspaceJournal({ tree: workspaceTree(root), log: silentLog, scanIntervalMs: 60_000, onChange() {} });
  journals.push(journal);
  await journal.start();
  for (const rel of ["..foo", "...", "sub/..bar"]) writeFile(joinPath(root, rel), rel);
  const recorded = (): string[] => journal.changesSince(0).map((e) => e.path);
  await waitFor(() => ["..foo", "...", "sub/..bar"].every((p) => recorded().includes(p)), { timeoutMs: 10_000, what: "the dotted names recorded" });
});
