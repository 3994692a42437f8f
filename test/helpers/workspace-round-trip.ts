/**
 * The workspace round trip, shared by the disk and S3 end-to-end tests: upload a project with
 * `catty new`, change it inside the session (edit, nested dirs, a binary file, a deletion, a git
 * commit, dependency and cache folders that saves skip), detach, `catty stop`, then get it back
 * with `catty download` (directory and .tar.gz) and `catty sync` (dry run, then for real).
 */
import { expect } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Session } from "../../src/protocol/index.ts";
import { CattyUser, diffTrees, git, listTree, noise, run, SNAPSHOT_EXCLUDED, writeTree } from "./workspace.ts";

export interface RoundTripResult {
  label: string;
  session: Session;
}

export async function workspaceRoundTrip(user: CattyUser): Promise<RoundTripResult> {
  const scratch = mkdtempSync(join(tmpdir(), "catty-ws-rt-"));
  try {
    return await roundTrip(user, scratch);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

async function roundTrip(user: CattyUser, scratch: string): Promise<RoundTripResult> {
  const project = join(scratch, "project");
  writeTree(project, {
    ".gitignore": "node_modules/\n.cache/\n",
    "README.md": "# demo\n",
    "src/main.ts": "console.log('hello');\n",
    "src/old.ts": "export const old = 1;\n",
    "src/util/strings.ts": "export const s = 'x';\n",
    "assets/logo.bin": noise(20_000, 7),
    "script.sh": "#!/bin/sh\necho run\n",
    "debug.log": "local only, never uploaded\n",
  });
  chmodSync(join(project, "script.sh"), 0o755);
  symlinkSync("src/main.ts", join(project, "current"));
  expect((await git(project, "init", "-q")).code).toBe(0);
  expect((await git(project, "add", "-A")).code).toBe(0);
  expect((await git(project, "commit", "-qm", "initial commit")).code).toBe(0);

  // Upload and start. Without sync-back, so the local project stays as uploaded for `catty sync`.
  const { label, screen, exitMarker } = await user.newSession(project, ["--no-sync-back"]);
  expect(screen).toContain("Uploaded");
  expect(readFileSync(join(await user.copyWorkspace(label), "README.md"), "utf8")).toBe("# demo\n");

  // Work inside the session.
  await user.shell("printf 'changed in session\\n' >> README.md");
  await user.shell("mkdir -p deep/er/still && printf 'nested\\n' > deep/er/still/file.txt");
  await user.shell("head -c 70000 /dev/urandom > assets/session.bin");
  await user.shell("rm src/old.ts");
  await user.shell("mkdir -p node_modules/pkg .cache && echo junk > node_modules/pkg/index.js && echo c > .cache/x");
  await user.shell("git add -A && git -c user.name=Cat -c user.email=cat@catty.invalid commit -qm 'session commit'");
  await user.detach(label, exitMarker);
  const ws = await user.copyWorkspace(label);

  // Stop: waits for the final save and says how it went.
  const stop = await user.cli(["stop", label]);
  expect(stop.code).toBe(0);
  expect(stop.stderr).toMatch(/Final save stored|Nothing changed since the last save/);
  const session = await user.session(label);
  expect(session.status).toBe("stopped");
  expect(["stored", "unchanged"]).toContain(session.finalSave ?? "none");
  expect(session.saves.length).toBeGreaterThanOrEqual(1);

  // Download as a directory: the workspace as it ended, minus what saves leave out.
  const out = join(scratch, "out");
  const down = await user.cli(["download", label, out]);
  expect(down.stderr).toContain("Downloaded");
  expect(down.code).toBe(0);
  expect(await diffTrees(out, ws, SNAPSHOT_EXCLUDED)).toBe("");
  expect(existsSync(join(ws, "node_modules/pkg/index.js"))).toBe(true);
  expect(existsSync(join(out, "node_modules"))).toBe(false);
  expect(existsSync(join(out, ".cache"))).toBe(false);
  expect(existsSync(join(out, "src/old.ts"))).toBe(false);
  expect(readFileSync(join(out, "README.md"), "utf8")).toBe("# demo\nchanged in session\n");
  expect(readFileSync(join(out, "deep/er/still/file.txt"), "utf8")).toBe("nested\n");
  expect(Buffer.from(readFileSync(join(out, "assets/session.bin"))).equals(readFileSync(join(ws, "assets/session.bin")))).toBe(true);
  expect(statSync(join(out, "assets/session.bin")).size).toBe(70_000);
  expect(statSync(join(out, "script.sh")).mode & 0o111).not.toBe(0);
  const log = await git(out, "log", "--format=%s");
  expect(log.stdout.split("\n").filter(Boolean)).toEqual(["session commit", "initial commit"]);
  expect((await git(out, "status", "--porcelain")).stdout).toBe("");

  // The saves kept, and an earlier one by time: the newest at or before it.
  const listedSaves = await user.cli(["saves", label]);
  expect(listedSaves.code).toBe(0);
  expect(listedSaves.stdout).toMatch(/^SAVED +FILES +SIZE +ADDED +REASON/);
  expect(listedSaves.stdout.trim().split("\n")).toHaveLength(session.saves.length + 1);
  const latestAt = session.saves[0]?.createdAt as string;
  const atLatest = join(scratch, "at-latest");
  expect((await user.cli(["download", label, atLatest, "--at", latestAt])).code).toBe(0);
  expect(await diffTrees(atLatest, ws, SNAPSHOT_EXCLUDED)).toBe("");
  const tooEarly = await user.cli(["download", label, join(scratch, "too-early"), "--at", "1d"]);
  expect(tooEarly.code).toBe(1);
  expect(tooEarly.stderr).toContain("has no save from");

  // A destination that exists is refused, directory or file.
  const again = await user.cli(["download", label, out]);
  expect(again.code).toBe(1);
  expect(again.stderr).toContain("already exists");

  // As a .tar.gz: a valid archive with the same tree.
  const archive = join(scratch, "save.tar.gz");
  const tgz = await user.cli(["download", label, archive, "--format", "tar.gz"]);
  expect(tgz.code).toBe(0);
  const listed = await run(["tar", "tzf", archive]);
  expect(listed.code).toBe(0);
  const names = listed.stdout.split("\n").map((n) => n.replace(/^\.\//, ""));
  expect(names).toEqual(expect.arrayContaining(["README.md", "deep/er/still/file.txt", "assets/session.bin", ".git/HEAD"]));
  expect(names.some((n) => n.startsWith("node_modules"))).toBe(false);
  const untarred = join(scratch, "untarred");
  expect((await run(["mkdir", untarred])).code).toBe(0);
  expect((await run(["tar", "xzf", archive, "-C", untarred])).code).toBe(0);
  expect(await diffTrees(untarred, ws, SNAPSHOT_EXCLUDED)).toBe("");
  const tgzAgain = await user.cli(["download", label, archive, "--format", "tar.gz"]);
  expect(tgzAgain.code).toBe(1);
  expect(tgzAgain.stderr).toContain("already exists");

  // sync --dry-run lists, and changes nothing.
  const before = snapshotOf(project);
  const dry = await user.cli(["sync", label, "--dry-run"], { cwd: project });
  expect(dry.code).toBe(0);
  expect(dry.stderr).toContain("nothing was changed");
  expect(section(dry.stdout, "Would create")).toEqual(["assets/session.bin", "deep/er/still/file.txt"]);
  expect(section(dry.stdout, "Would change")).toEqual(["README.md"]);
  expect(section(dry.stdout, "Only here, kept")).toEqual(["src/old.ts"]);
  expect(dry.stdout).not.toContain("debug.log");
  expect(dry.stdout).not.toContain(".git/");
  expect(snapshotOf(project)).toEqual(before);

  // sync brings the project up to date; local-only and ignored files stay, .git is never touched.
  const sync = await user.cli(["sync", label], { cwd: project });
  expect(sync.code).toBe(0);
  expect(sync.stderr).toContain("2 created, 1 changed");
  expect(await diffTrees(project, out, [".git", "debug.log"])).toBe(`Only in ${project}/src: old.ts\n`);
  expect(readFileSync(join(project, "debug.log"), "utf8")).toBe("local only, never uploaded\n");
  expect((await git(project, "log", "--format=%s")).stdout.trim()).toBe("initial commit");

  const resync = await user.cli(["sync", label], { cwd: project });
  expect(resync.code).toBe(0);
  expect(resync.stderr).toContain("already up to date");
  return { label, session };
}

/** The paths listed under a `catty sync` section title. */
function section(stdout: string, title: string): string[] {
  const lines = stdout.split("\n");
  const start = lines.findIndex((l) => l.startsWith(title));
  if (start < 0) return [];
  const paths: string[] = [];
  for (const line of lines.slice(start + 1)) {
    const m = /^ {2}[+~\-!] (.*)$/.exec(line);
    if (!m) break;
    paths.push(m[1] as string);
  }
  return paths;
}

/** Every path with its size, mtime and mode: equal snapshots mean nothing was touched. */
function snapshotOf(root: string): string[] {
  return listTree(root).map((rel) => {
    const st = statSync(join(root, rel), { throwIfNoEntry: false });
    return `${rel} ${st?.size} ${st?.mtimeMs} ${st?.mode}`;
  });
}
