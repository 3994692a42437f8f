/**
 * Workspaces end to end with the embedded (disk) storage: the upload of `catty new`, saves while
 * a session runs, and getting files back — through the real binaries, a real server process,
 * real agents and `catty` in tmux. Saves are made fast (first after 300 ms, then every 700 ms)
 * so the schedule can be watched in seconds.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Session } from "../../src/protocol/index.ts";
import type { Binaries } from "../helpers/binaries.ts";
import { ServerProcess } from "../helpers/server-process.ts";
import { waitFor } from "../helpers/wait.ts";
import { workspaceRoundTrip } from "../helpers/workspace-round-trip.ts";
import {
  type CattyUser,
  craftTarGz,
  craftTruncatedTarGz,
  diffTrees,
  git,
  listTree,
  noise,
  startWorkspaceServer,
  type WorkspaceFixture,
  type CraftedEntry,
  writeTree,
} from "../helpers/workspace.ts";
import { pidAlive } from "../helpers/agents.ts";

const SAVE_ENV = {
  CATTY_SAVE_FIRST_MS: "300",
  CATTY_SAVE_INTERVAL_MS: "700",
  // Notice a killed agent within a second or so.
  CATTY_AGENT_LOST_MS: "1000",
  // The agent says at debug level when a periodic check found nothing to save.
  CATTY_LOG_LEVEL: "debug",
};

let fixture: WorkspaceFixture;
let bins: Binaries;
let server: ServerProcess;
let user: CattyUser;
const scratch = mkdtempSync(join(tmpdir(), "catty-ws-e2e-"));

beforeAll(async () => {
  fixture = await startWorkspaceServer(SAVE_ENV);
  ({ bins, server, user } = fixture);
}, 60_000);

afterAll(async () => {
  await fixture?.close();
  rmSync(scratch, { recursive: true, force: true });
});

function dir(name: string): string {
  return join(scratch, name);
}

describe("upload on catty new", () => {
  const project = dir("upload-project");

  beforeAll(async () => {
    writeTree(project, {
      ".gitignore": "*.tmp\ndist/\n",
      "README.md": "# project\n",
      "src/index.ts": "export {};\n",
      "src/build.tmp": "ignored by the root .gitignore\n",
      "dist/bundle.js": "ignored directory\n",
      "sub/.gitignore": "secret.txt\n!keep.tmp\n",
      "sub/secret.txt": "ignored by sub/.gitignore\n",
      "sub/deeper/secret.txt": "ignored by sub/.gitignore at any depth below sub\n",
      "sub/keep.tmp": "re-included by sub/.gitignore\n",
      "sub/other.tmp": "still ignored by the root .gitignore\n",
      "sub/code.py": "print('kept')\n",
      "other/secret.txt": "a sibling's rules do not apply here\n",
      "node_modules/left/index.js": "default exclusion\n",
      "pkg/node_modules/nested/index.js": "default exclusion at depth\n",
      "__pycache__/mod.cpython-312.pyc": "x",
      "lib/mod.pyc": "x",
      ".venv/bin/python": "x",
      "venv/lib/site.py": "x",
      ".env": "SECRET=1\n",
      ".env.example": "SECRET=\n",
      ".DS_Store": "x",
      "server.log": "x",
      "logs/app.log": "x",
      "bin/data.bin": noise(4096, 3),
    });
    expect((await git(project, "init", "-q")).code).toBe(0);
    expect((await git(project, "add", "-A")).code).toBe(0);
    expect((await git(project, "commit", "-qm", "uploaded with the project")).code).toBe(0);
  });

  const kept = [
    ".env.example",
    ".gitignore",
    "README.md",
    "bin/data.bin",
    "other/secret.txt",
    "src/index.ts",
    "sub/.gitignore",
    "sub/code.py",
    "sub/keep.tmp",
  ];
  const excluded = [
    "src/build.tmp",
    "dist",
    "sub/secret.txt",
    "sub/deeper/secret.txt",
    "sub/other.tmp",
    "node_modules",
    "pkg/node_modules",
    "__pycache__",
    "lib/mod.pyc",
    ".venv",
    "venv",
    ".env",
    ".DS_Store",
    "server.log",
    "logs/app.log",
  ];

  test("honours nested .gitignore files and the default exclusions, keeps .git so git works", async () => {
    const { label, exitMarker } = await user.newSession(project);
    const ws = user.workspace(label);
    const files = listTree(ws, { skip: (rel) => rel.startsWith(".git/") });
    expect(files.filter((f) => !f.endsWith("/"))).toEqual(kept);
    for (const rel of kept) expect(readFileSync(join(ws, rel))).toEqual(readFileSync(join(project, rel)));
    expect(excluded.filter((rel) => existsSync(join(ws, rel)))).toEqual([]);

    expect(existsSync(join(ws, ".git/HEAD"))).toBe(true);
    const screen = await user.shell("git log --format=%s | cat");
    expect(screen).toContain("uploaded with the project");
    const local = await git(ws, "log", "--format=%s");
    expect(local.stdout.trim()).toBe("uploaded with the project");

    user.tmux.type("exit");
    expect(await user.exitCode(exitMarker)).toBe(0);
  }, 60_000);

  test("--no-git leaves .git out", async () => {
    const { label, exitMarker } = await user.newSession(project, ["--no-git"]);
    const ws = user.workspace(label);
    expect(existsSync(join(ws, ".git"))).toBe(false);
    expect(listTree(ws).filter((f) => !f.endsWith("/"))).toEqual(kept);
    user.tmux.type("exit");
    expect(await user.exitCode(exitMarker)).toBe(0);
  }, 60_000);

  test("--no-upload starts with an empty workspace", async () => {
    const { label, screen, exitMarker } = await user.newSession(project, ["--no-upload"]);
    expect(screen).not.toContain("Uploaded");
    expect(readdirSync(user.workspace(label))).toEqual([]);
    user.tmux.type("exit");
    expect(await user.exitCode(exitMarker)).toBe(0);
  }, 60_000);
});

describe("round trip with disk storage", () => {
  test("upload, change inside, stop, download (dir and tar.gz), sync --dry-run, sync", async () => {
    const { session } = await workspaceRoundTrip(user);
    // The saves are encrypted packs in the data dir: none holds the project's text or a file name.
    expect(session.saves.length).toBeGreaterThan(0);
    const vault = join(server.dataDir, "blobs", "vault");
    const packs = listTree(vault).filter((p) => !p.endsWith("/")).map((p) => join(vault, p));
    expect(packs.length).toBeGreaterThan(0);
    for (const pack of packs) {
      const bytes = readFileSync(pack);
      expect(bytes.includes("# demo")).toBe(false);
      expect(bytes.includes("script.sh")).toBe(false);
    }
  }, 90_000);
});

describe("an upload over the server's cap", () => {
  test("is refused before anything is sent, naming the largest path and what to do", async () => {
    const capped = new ServerProcess(bins.server, { CATTY_MAX_UPLOAD_BYTES: "1000000" });
    await capped.start();
    try {
      const project = writeTree(dir("big-project"), {
        "README.md": "small\n",
        "assets/big.bin": noise(3_000_000, 11),
        "assets/medium.bin": noise(300_000, 12),
        "src/a.ts": "export {};\n",
      });
      const marker = user.mark("CAP");
      user.freshTerminal();
      user.tmux.type(
        `cd ${project} && CATTY_TOKEN=${capped.ownerToken} catty new --api ${capped.url} -- bash; echo ${marker.printed}=$?`,
      );
      const code = await user.exitCode(marker.printed, 30_000);
      const screen = user.tmux.capture();
      expect(code).toBe(1);
      expect(screen).toContain("assets/big.bin");
      // The next largest too (the message lists the five largest). Fails today: the packer drops
      // the entry that follows the one during which the cap was passed (see the report).
      expect(screen).toContain("assets/medium.bin");
      expect(screen).toContain(".gitignore");
      expect(screen).toContain("--no-upload");
      expect(screen).not.toContain("Uploaded");
      expect(screen).not.toMatch(/Session \S+ started/);

      const uploads = join(capped.dataDir, "blobs", "uploads");
      expect(existsSync(uploads) ? readdirSync(uploads) : []).toEqual([]);
      const res = await fetch(`${capped.url}/v1/sessions`, { headers: { Authorization: `Bearer ${capped.ownerToken}` } });
      expect(await res.json()).toEqual([]);
    } finally {
      await capped.stop();
      rmSync(capped.dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("a hostile upload", () => {
  const outside = mkdtempSync(join(tmpdir(), "catty-ws-outside-"));
  afterAll(() => rmSync(outside, { recursive: true, force: true }));

  const file = (name: string, data = "x"): CraftedEntry => ({ header: { name, type: "file", size: Buffer.byteLength(data) }, data });
  const cases: { name: string; entries: () => CraftedEntry[]; truncate?: number; entry: string; escapes: (sessionDir: string) => string[] }[] = [
    {
      name: "path traversal with ..",
      entries: () => [file("ok.txt"), file("../escape.txt", "escaped")],
      entry: "../escape.txt",
      escapes: (s) => [join(s, "escape.txt"), join(s, "..", "escape.txt")],
    },
    {
      name: "an absolute path",
      entries: () => [file(join(outside, "absolute.txt"), "escaped")],
      entry: join(outside, "absolute.txt"),
      escapes: () => [join(outside, "absolute.txt")],
    },
    {
      name: "a symlink out of the tree and a write through it",
      entries: () => [{ header: { name: "link", type: "symlink", linkname: outside } }, file("link/pwned.txt", "escaped")],
      entry: "link/pwned.txt",
      escapes: () => [join(outside, "pwned.txt")],
    },
    {
      name: "a relative symlink escape",
      entries: () => [{ header: { name: "up", type: "symlink", linkname: "../.." } }, file("up/pwned2.txt", "escaped")],
      entry: "up/pwned2.txt",
      escapes: (s) => [join(s, "..", "pwned2.txt"), join(s, "pwned2.txt")],
    },
    {
      name: "a hard link",
      entries: () => [{ header: { name: "passwd", type: "link", linkname: "/etc/passwd" } }],
      entry: "passwd",
      escapes: () => [],
    },
    {
      name: "a device file",
      entries: () => [{ header: { name: "null", type: "character-device", devmajor: 1, devminor: 3 } }],
      entry: "null",
      escapes: () => [],
    },
    {
      name: "a decompression bomb (an entry claiming 2 GiB)",
      entries: () => [file("small.txt"), { header: { name: "bomb.bin", type: "file", size: 2 * 1024 ** 3 }, data: new Uint8Array(64 * 1024) }],
      truncate: 3 * 512 + 64 * 1024,
      entry: "bomb.bin",
      escapes: () => [],
    },
  ];

  for (const c of cases) {
    test(`${c.name}: the session fails with the restore error and nothing is written`, async () => {
      const archive = c.truncate ? await craftTruncatedTarGz(c.entries(), c.truncate) : await craftTarGz(c.entries());
      const up = await user.api("POST", "/v1/uploads", archive, {
        "Content-Type": "application/gzip",
        "Content-Length": String(archive.byteLength),
      });
      expect(up.status).toBe(201);
      const { id } = (await up.json()) as { id: string };
      const created = await user.api("POST", "/v1/sessions", { command: ["bash"], upload: id });
      expect(created.status).toBe(201);
      const { label } = (await created.json()) as Session;

      const ended = await user.waitForStatus(label, ["failed", "stopped"]);
      expect(ended.status).toBe("failed");
      expect(ended.endReason).toContain("could not be restored");
      expect(ended.endReason).toContain(JSON.stringify(c.entry));
      expect(ended.saves).toEqual([]);

      // Not half-filled, nothing beside it, nothing outside.
      const sessionDir = user.sessionDir(label);
      expect(readdirSync(user.workspace(label))).toEqual([]);
      expect(readdirSync(sessionDir).filter((n) => n.includes("extract"))).toEqual([]);
      for (const path of c.escapes(sessionDir)) expect(existsSync(path)).toBe(false);
      expect(readdirSync(outside)).toEqual([]);
      // The agent has gone.
      const pid = user.agentPid(label);
      await waitFor(() => !pidAlive(pid), { what: `agent ${pid} to exit` });
    }, 30_000);
  }
});

describe("symlinks are data", () => {
  test("a project with absolute, climbing, dangling and looping links starts, and its save downloads with them", async () => {
    const project = writeTree(dir("links-project"), { "a.txt": "a\n", "sub/b.txt": "b\n" });
    const links: Record<string, string> = {
      abs: "/etc/hosts",
      up: "../outside",
      dangling: "missing/file.txt",
      loop1: "loop2",
      loop2: "loop1",
      "sub/back": "../a.txt",
    };
    for (const [rel, target] of Object.entries(links)) symlinkSync(target, join(project, rel));
    const { label, exitMarker } = await user.newSession(project);
    const ws = user.workspace(label);
    for (const [rel, target] of Object.entries(links)) expect(readlinkSync(join(ws, rel))).toBe(target);
    // The program sees them as they are, and makes one of its own.
    expect(await user.shell("readlink abs up; cat sub/back; ln -s /etc/passwd made")).toContain("../outside");
    await user.detach(label, exitMarker);
    const stop = await user.cli(["stop", label]);
    expect(stop.code).toBe(0);
    const ended = await user.session(label);
    expect(ended.status).toBe("stopped");
    expect(ended.saves.length).toBeGreaterThanOrEqual(1);

    const out = dir("links-out");
    const down = await user.cli(["download", label, out]);
    expect(down.code).toBe(0);
    for (const [rel, target] of Object.entries({ ...links, made: "/etc/passwd" })) expect(readlinkSync(join(out, rel))).toBe(target);
    expect(readFileSync(join(out, "sub/back"), "utf8")).toBe("a\n");
    expect(listTree(out).filter((p) => !p.endsWith("/")).sort()).toEqual(["a.txt", "abs", "dangling", "loop1", "loop2", "made", "sub/b.txt", "sub/back", "up"]);
  }, 60_000);
});

describe("saves while running", () => {
  test("an unchanged workspace is not saved again; a change is", async () => {
    const { label, exitMarker } = await user.newSession(writeTree(dir("idle-project"), { "notes.md": "one\n" }));
    await user.detach(label, exitMarker);
    const first = await user.waitForSaves(label, 1);
    expect(first.saves[0]?.reason).toBe("initial");

    // Several periodic checks pass without a save.
    const unchangedChecks = (): number => user.agentLog(label).match(/workspace unchanged/g)?.length ?? 0;
    await waitFor(() => unchangedChecks() >= 3, {
      timeoutMs: 10_000,
      what: 'three periodic checks logged as "workspace unchanged" in agent.log',
    });
    expect((await user.session(label)).saves.length).toBe(1);

    // One changed file: the next check saves.
    writeFileSync(join(user.workspace(label), "notes.md"), "one\ntwo\n");
    const second = await user.waitForSaves(label, 2, 10_000);
    expect(second.saves[0]?.reason).toBe("periodic");
    expect(second.saves[1]?.id).toBe(first.saves[0]?.id);
    // And then it is quiet again.
    const checks = unchangedChecks();
    await waitFor(() => unchangedChecks() >= checks + 2, { timeoutMs: 10_000, what: "two more unchanged checks" });
    expect((await user.session(label)).saves.length).toBe(2);

    const stop = await user.cli(["stop", label]);
    expect(stop.code).toBe(0);
    expect(stop.stderr).toContain("Nothing changed since the last save");
    expect((await user.session(label)).finalSave).toBe("unchanged");
  }, 60_000);

  test("kill -9 of the agent leaves the last save downloadable", async () => {
    const { label, exitMarker } = await user.newSession(writeTree(dir("killed-project"), { "a.txt": "before\n" }));
    await user.shell("printf 'after\\n' > a.txt && mkdir -p new && printf 'made in session\\n' > new/b.txt");
    await user.detach(label, exitMarker);
    const ws = user.workspace(label);
    // Wait for a save that has the change (a.txt and new/b.txt; the first save may predate it).
    await waitFor(async () => ((await user.session(label)).saves[0]?.files ?? 0) >= 2, {
      timeoutMs: 15_000,
      what: "a save with the session's changes",
    });

    const pid = user.agentPid(label);
    process.kill(pid, "SIGKILL");
    await waitFor(() => !pidAlive(pid), { what: `agent ${pid} to die` });

    // Right away, while the server may still count the session as running…
    const now = dir("killed-now");
    const down = await user.cli(["download", label, now]);
    expect(down.stderr).toContain("Downloaded");
    expect(down.code).toBe(0);
    expect(await diffTrees(now, ws)).toBe("");
    expect(readFileSync(join(now, "a.txt"), "utf8")).toBe("after\n");

    // …and once it has noticed the machine is gone.
    const failed = await user.waitForStatus(label, ["failed"], 15_000);
    expect(failed.saves.length).toBeGreaterThanOrEqual(1);
    const later = dir("killed-later");
    expect((await user.cli(["download", label, later])).code).toBe(0);
    expect(await diffTrees(later, now)).toBe("");
  }, 60_000);
});
