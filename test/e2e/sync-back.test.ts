/**
 * Sync-back end to end: the real catty-server binary with real agents, `catty` attached inside
 * tmux from a temp project directory. What the session does to its workspace shows up in that
 * directory; what a hostile agent sends never lands outside it.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { syncStateFile } from "../../src/client/sync-back.ts";
import { buildBinaries, type Binaries } from "../helpers/binaries.ts";
import { ServerProcess } from "../helpers/server-process.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { fileHash, RogueAgent, rogueProvider, snapshotTree } from "../helpers/sync-back.ts";
import { Tmux } from "../helpers/tmux.ts";
import { waitFor } from "../helpers/wait.ts";

const LABEL_RE = /Session ([a-z]+-[a-z]+-\d{4}) started/;
/** Long enough for the agent's safety-net scan (5 s) to catch anything the watcher missed. */
const ARRIVE_MS = 20_000;

let bins: Binaries;
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const readOrNull = (path: string): string | null => (existsSync(path) ? readFileSync(path, "utf8") : null);
const mode = (path: string): number => statSync(path).mode & 0o777;

/** What a tree holds, modes aside: `dir`, or the file's hash (symlinks as their target). */
function contents(root: string): Record<string, string> {
  return Object.fromEntries(
    Object.entries(snapshotTree(root)).map(([rel, what]) => [rel, what.startsWith("dir ") ? "dir" : what.replace(/^file \d+ /, "")]),
  );
}

/** Waits until `path` holds `want` (a string, or null for "gone"). */
function arrives(path: string, want: string | null, timeoutMs = ARRIVE_MS): Promise<true> {
  return waitFor(() => readOrNull(path) === want, {
    timeoutMs,
    what: want === null ? `${path} to be gone` : `${path} to hold ${JSON.stringify(want.slice(0, 40))}`,
  });
}

/** Waits until the file at `local` has the same bytes as `remote`. */
function sameBytes(local: string, remote: string, timeoutMs = ARRIVE_MS): Promise<true> {
  return waitFor(() => {
    const want = fileHash(remote);
    return want !== null && fileHash(local) === want;
  }, { timeoutMs, what: `${local} to match ${remote}` });
}

/** One terminal (tmux) with its own CATTY_HOME, logged in to one server. */
class Term {
  readonly tmux: Tmux;
  private marks = 0;

  constructor(readonly home: string, extraEnv: Record<string, string> = {}) {
    this.tmux = new Tmux({ HOME: home, CATTY_HOME: home, PATH: `${bins.dir}:${process.env.PATH}`, PS1: "$ ", ...extraEnv });
    this.tmux.start({ cols: 200, rows: 40, cwd: home });
    cleanups.push(() => this.tmux.kill());
  }

  login(server: { url: string; ownerToken: string }): void {
    const res = Bun.spawnSync([bins.catty, "login", "--api", server.url, "--token", server.ownerToken], {
      env: { ...process.env, HOME: this.home, CATTY_HOME: this.home },
    });
    if (res.exitCode !== 0) throw new Error(`catty login: ${res.stderr.toString()}`);
  }

  /** Types a shell line (outside or inside a session) and waits until it has run. */
  async shell(line: string, timeoutMs = 15_000): Promise<string> {
    const n = ++this.marks;
    this.tmux.type(`${line}; echo DONE-$((${n}+${n}))`);
    return this.tmux.waitFor(new RegExp(`DONE-${n + n}\\b`), timeoutMs);
  }

  /** `cd dir && catty new FLAGS -- bash`; resolves once bash answers inside the session. */
  async newSession(dir: string, flags: string[] = []): Promise<{ label: string; exit: string; screen: string }> {
    const exit = `NEW_EXIT_${++this.marks}`;
    this.tmux.type("clear");
    this.tmux.type(`cd ${dir} && catty new ${flags.join(" ")} -- bash --norc --noprofile; echo ${exit}=$?`);
    const started = await this.tmux.waitFor(LABEL_RE, 30_000);
    const label = LABEL_RE.exec(started)?.[1] as string;
    const screen = await this.shell("true", 30_000);
    return { label, exit, screen };
  }

  /** `cd dir && catty connect LABEL FLAGS`; resolves once bash answers inside the session. */
  async connect(dir: string, label: string, flags: string[] = []): Promise<{ exit: string; screen: string }> {
    const exit = `CONNECT_EXIT_${++this.marks}`;
    this.tmux.type("clear");
    this.tmux.type(`cd ${dir} && catty connect ${label} ${flags.join(" ")}; echo ${exit}=$?`);
    const screen = await this.shell("true", 30_000);
    return { exit, screen };
  }

  /** Ctrl+C twice; waits for catty to exit 0 and returns the screen with its farewell lines. */
  async detach(label: string, exit: string): Promise<string> {
    this.tmux.keys("C-c");
    this.tmux.keys("C-c");
    const re = new RegExp(`${exit}=(\\d+)`);
    const screen = await this.tmux.waitFor(re, 15_000);
    expect(screen).toContain(`Detached from ${label}`);
    expect(Number(re.exec(screen)?.[1])).toBe(0);
    return screen;
  }
}

/** The `catty` process running in `dir` (Linux: found through /proc). */
function cattyPid(dir: string): number {
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      if (readlinkSync(`/proc/${pid}/cwd`) === dir && readlinkSync(`/proc/${pid}/exe`) === bins.catty) return Number(pid);
    } catch {
      // gone, or not ours
    }
  }
  throw new Error(`no catty process in ${dir}`);
}

/** `N files written, M deleted` from a detach summary. */
function summaryCounts(screen: string): { written: number; deleted: number } | null {
  const m = /Sync-back paused: (\d+) files? written, (\d+) deleted in /.exec(screen);
  return m ? { written: Number(m[1]), deleted: Number(m[2]) } : null;
}

beforeAll(async () => {
  bins = await buildBinaries();
}, 120_000);

describe("sync-back through the real binaries", () => {
  let server: ServerProcess;
  let home: string;
  /** Each test gets its own terminal (same login), so one that fails attached cannot derail the next. */
  let term: Term;
  const workspace = (label: string): string => join(server.dataDir, "sessions", label, "workspace");

  beforeAll(async () => {
    server = new ServerProcess(bins.server);
    await server.start();
    home = tempDir("catty-sb-home-");
    cleanups.push(async () => {
      await stopAll();
      await server.stop();
      rmSync(server.dataDir, { recursive: true, force: true });
    });
    new Term(home).login(server);
  }, 60_000);

  beforeEach(() => {
    term?.tmux.kill();
    term = new Term(home);
  });

  /** Stops every session still running, all at once. */
  async function stopAll(): Promise<void> {
    const api = (path: string, method = "GET"): Promise<Response> =>
      fetch(`${server.url}${path}`, { method, headers: { Authorization: `Bearer ${server.ownerToken}` } });
    const res = await api("/v1/sessions").catch(() => null);
    if (!res?.ok) return;
    const sessions = (await res.json()) as Array<{ label: string; status: string }>;
    await Promise.all(sessions.filter((s) => s.status === "running").map((s) => api(`/v1/sessions/${s.label}/stop`, "POST").catch(() => null)));
  }

  test("creates, modifies, deletes and renames of files and directories arrive: nested, binary, empty, large, rapid rewrites", async () => {
    const proj = tempDir("catty-sb-proj-");
    writeFileSync(join(proj, "readme.txt"), "uploaded\n");
    writeFileSync(join(proj, "tool.sh"), "#!/bin/sh\necho v1\n");
    chmodSync(join(proj, "tool.sh"), 0o700);
    writeFileSync(join(proj, "plain.txt"), "plain\n");
    chmodSync(join(proj, "plain.txt"), 0o640);

    const { label, exit, screen } = await term.newSession(proj);
    const ws = workspace(label);
    expect(readOrNull(join(ws, "readme.txt"))).toBe("uploaded\n");
    // The agent acknowledged: the status line says so (for a few seconds).
    if (!screen.includes("sync-back on")) await term.tmux.waitFor("sync-back on", 5_000);

    // Create: top level, nested, empty file, empty directory, binary.
    await term.shell("echo one > top.txt && mkdir -p a/b/c && echo deep > a/b/c/deep.txt && : > empty.txt && mkdir -p emptydir/inner");
    await term.shell("head -c 300000 /dev/urandom > bin.dat && printf '\\x00\\xff\\r\\n\\x1b[2J' > ctl.bin");
    await arrives(join(proj, "top.txt"), "one\n");
    await arrives(join(proj, "a/b/c/deep.txt"), "deep\n");
    await waitFor(() => existsSync(join(proj, "empty.txt")) && statSync(join(proj, "empty.txt")).size === 0, { timeoutMs: ARRIVE_MS, what: "empty.txt" });
    await waitFor(() => existsSync(join(proj, "emptydir/inner")) && statSync(join(proj, "emptydir/inner")).isDirectory(), {
      timeoutMs: ARRIVE_MS,
      what: "emptydir/inner",
    });
    await sameBytes(join(proj, "bin.dat"), join(ws, "bin.dat"));
    await sameBytes(join(proj, "ctl.bin"), join(ws, "ctl.bin"));
    expect(readFileSync(join(proj, "ctl.bin"))).toEqual(Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x1b, 0x5b, 0x32, 0x4a]));

    // Modify (append, overwrite), a file from the upload included: it keeps its local mode.
    await term.shell("echo two >> top.txt && echo v2 > readme.txt && echo 'echo v2' >> tool.sh && chmod 755 plain.txt && echo changed > plain.txt");
    await arrives(join(proj, "top.txt"), "one\ntwo\n");
    await arrives(join(proj, "readme.txt"), "v2\n");
    await arrives(join(proj, "tool.sh"), "#!/bin/sh\necho v1\necho v2\n");
    await arrives(join(proj, "plain.txt"), "changed\n");
    expect(mode(join(proj, "tool.sh"))).toBe(0o700);
    expect(mode(join(proj, "plain.txt"))).toBe(0o640);

    // New files get 0644, even when the session made them executable.
    await term.shell("printf '#!/bin/sh\\necho hi\\n' > script.sh && chmod 755 script.sh && install -m 0700 /dev/null private.bin");
    await arrives(join(proj, "script.sh"), "#!/bin/sh\necho hi\n");
    await waitFor(() => existsSync(join(proj, "private.bin")), { timeoutMs: ARRIVE_MS, what: "private.bin" });
    expect(mode(join(ws, "script.sh"))).toBe(0o755);
    expect(mode(join(proj, "script.sh"))).toBe(0o644);
    expect(mode(join(proj, "private.bin"))).toBe(0o644);

    // Delete: a file, and a directory tree.
    await term.shell("mkdir -p tree/x/y && echo 1 > tree/x/y/f1 && echo 2 > tree/x/f2 && echo 3 > tree/f3");
    await arrives(join(proj, "tree/x/y/f1"), "1\n");
    await arrives(join(proj, "tree/f3"), "3\n");
    await term.shell("rm top.txt && rm -r tree");
    await arrives(join(proj, "top.txt"), null);
    await arrives(join(proj, "tree/x/y/f1"), null);
    await arrives(join(proj, "tree/x/f2"), null);
    await arrives(join(proj, "tree/f3"), null);

    // Rename: a file, and a directory with nested contents.
    await term.shell("mv a/b/c/deep.txt a/moved.txt && mkdir -p d1/sub && echo f > d1/sub/f.txt && echo g > d1/g.txt");
    await arrives(join(proj, "a/moved.txt"), "deep\n");
    await arrives(join(proj, "a/b/c/deep.txt"), null);
    await arrives(join(proj, "d1/sub/f.txt"), "f\n");
    await term.shell("mv d1 d2");
    await arrives(join(proj, "d2/sub/f.txt"), "f\n");
    await arrives(join(proj, "d2/g.txt"), "g\n");
    await arrives(join(proj, "d1/sub/f.txt"), null);
    await arrives(join(proj, "d1/g.txt"), null);

    // A large file streams through in chunks.
    await term.shell("head -c 20000000 /dev/urandom > big.bin", 30_000);
    await sameBytes(join(proj, "big.bin"), join(ws, "big.bin"), 40_000);

    rmSync(join(ws, "big.bin")); // keeps the final save small
    await arrives(join(proj, "big.bin"), null);

    // Rapid rewrites of one file: the last content wins.
    await term.shell('for i in $(seq 1 200); do echo "version $i" > rapid.txt; done');
    await arrives(join(proj, "rapid.txt"), "version 200\n");

    // What the saves leave out (node_modules/, .git internals) is not synced back.
    await term.shell("mkdir -p node_modules/pkg .git/objects && echo x > node_modules/pkg/index.js && echo y > .git/HEAD && echo after > barrier.txt");
    await arrives(join(proj, "barrier.txt"), "after\n");

    // Symlinks the session makes come back as they are when they stay inside this directory;
    // those that lead outside stay in the session (the user's tools would write through them).
    await term.shell("ln -s /etc/passwd evil-link && ln -s .. up-link && ln -s rapid.txt in-link && ln -s nowhere dangling-link && echo after-links > barrier2.txt");
    await arrives(join(proj, "barrier2.txt"), "after-links\n");
    await waitFor(() => lstatSync(join(proj, "dangling-link"), { throwIfNoEntry: false })?.isSymbolicLink(), { what: "dangling-link" });
    expect(readlinkSync(join(proj, "in-link"))).toBe("rapid.txt");
    expect(readlinkSync(join(proj, "dangling-link"))).toBe("nowhere");
    for (const link of ["evil-link", "up-link"]) expect(lstatSync(join(proj, link), { throwIfNoEntry: false })).toBeUndefined();

    // In the end the directory holds the files the workspace holds (modes aside). Directories are
    // left out here (removed ones are the subject of their own test below), and so are temp files
    // of abandoned transfers, which go at detach (see the unit tests).
    const skip = (rel: string): boolean =>
      rel === "node_modules" || rel.startsWith("node_modules/") || rel === ".git" || rel.startsWith(".git/") || /(^|\/)\.catty-tmp-/.test(rel);
    const files = (root: string): Record<string, string> =>
      Object.fromEntries(Object.entries(contents(root)).filter(([rel, what]) => what !== "dir" && !what.startsWith("link ") && !skip(rel)));
    const differences = (): string[] => {
      const [here, there] = [files(proj), files(ws)];
      return [...new Set([...Object.keys(here), ...Object.keys(there)])].filter((rel) => here[rel] !== there[rel]).sort();
    };
    try {
      await waitFor(() => differences().length === 0, { timeoutMs: ARRIVE_MS, what: "the directory's files to match the workspace's" });
    } catch (err) {
      throw new Error(`${(err as Error).message}; these differ: ${differences().join(", ")}`);
    }
    expect(existsSync(join(proj, "node_modules"))).toBe(false);
    expect(existsSync(join(proj, ".git"))).toBe(false);
    expect(readdirSync(proj, { recursive: true }).map(String).filter((n) => n.includes(".catty-local"))).toEqual([]);

    const farewell = await term.detach(label, exit);
    expect(readdirSync(proj, { recursive: true }).map(String).filter((n) => n.includes(".catty-tmp-"))).toEqual([]);
    const counts = summaryCounts(farewell);
    expect(counts).not.toBeNull();
    // Rapid rewrites coalesce: far fewer writes than the 200 versions plus the other files.
    expect(counts?.written).toBeLessThan(100);
    expect(counts?.deleted).toBeGreaterThanOrEqual(6);
    expect(farewell).toContain(`in ${proj}.`);
    expect(farewell).toContain("Not synced back: evil-link: a symlink to /etc/passwd, outside this directory: kept in the session");
    expect(farewell).toContain("Not synced back: up-link: a symlink to .., outside this directory: kept in the session");
  }, 120_000);

  // A late `unlink` event for a child must not be recorded after its parent's delete.
  test("deleted and renamed directory trees disappear locally, directories included", async () => {
    const proj = tempDir("catty-sb-dirs-");
    const { label, exit } = await term.newSession(proj, ["--no-upload"]);
    const trees = Array.from({ length: 20 }, (_, i) => i + 1);
    await term.shell(`for i in ${trees.join(" ")}; do mkdir -p t$i/x/y && echo 1 > t$i/x/y/f && echo 2 > t$i/x/g && echo 3 > t$i/h; done`);
    for (const i of trees) await arrives(join(proj, `t${i}/x/y/f`), "1\n");
    await term.shell("for i in $(seq 1 10); do rm -r t$i; done; for i in $(seq 11 20); do mv t$i moved$i; done");
    for (const i of trees.slice(10)) await arrives(join(proj, `moved${i}/x/y/f`), "1\n");
    for (const i of trees) await arrives(join(proj, `t${i}/x/y/f`), null);
    const leftover = (): string[] => readdirSync(proj, { recursive: true }).map(String).filter((n) => n.startsWith("t")).sort();
    try {
      await waitFor(() => leftover().length === 0, { timeoutMs: 12_000, what: "the removed directories to be gone" });
    } catch (err) {
      throw new Error(`${(err as Error).message}; still here: ${leftover().join(", ")}`);
    } finally {
      await term.detach(label, exit);
    }
  }, 90_000);

  // A burst bigger than the server's per-socket buffer to a briefly stalled client: the relay
  // drops frames, and the catch-up after the drain must resend every file it missed, never a
  // truncated one.
  test("a burst of large files arrives complete, also when the client stalls for a moment", async () => {
    const proj = tempDir("catty-sb-burst-");
    await term.shell("set +m"); // no job control: a stopped catty stays in the foreground and carries on when continued
    const { label, exit } = await term.newSession(proj, ["--no-upload"]);
    const ws = workspace(label);
    const files = Array.from({ length: 12 }, (_, k) => `burst-${k + 1}.bin`);
    // Staged beside the workspace (same file system) and renamed in, so each appears whole at once.
    for (const name of files) {
      const proc = Bun.spawnSync(["head", "-c", String(20_000_000), "/dev/urandom"], { stdout: Bun.file(join(ws, "..", `.${name}`)) });
      expect(proc.exitCode).toBe(0);
    }
    // The client stalls (a busy laptop) while the files come in several batches, as a program writes them.
    const client = cattyPid(proj);
    process.kill(client, "SIGSTOP");
    try {
      for (const name of files) {
        renameSync(join(ws, "..", `.${name}`), join(ws, name));
        await Bun.sleep(25); // pacing the writes, not waiting for anything
      }
      await Bun.sleep(1_000); // the length of the stall
    } finally {
      process.kill(client, "SIGCONT");
    }
    // Each file appears whole in the workspace, so locally any other size is a truncated placement.
    const wrong = new Set<string>();
    const watch = setInterval(() => {
      for (const name of files) {
        const size = existsSync(join(proj, name)) ? statSync(join(proj, name), { throwIfNoEntry: false })?.size : undefined;
        if (size !== undefined && size !== 20_000_000) wrong.add(`${name} (${size} bytes)`);
      }
    }, 20);
    try {
      for (const name of files) await sameBytes(join(proj, name), join(ws, name), 20_000);
      expect([...wrong]).toEqual([]);
    } finally {
      clearInterval(watch);
      await term.detach(label, exit);
      for (const name of files) rmSync(join(ws, name), { force: true }); // keeps the final save small
    }
  }, 90_000);

  test("--no-sync-back: the session's changes do not appear locally", async () => {
    const proj = tempDir("catty-sb-off-");
    const { label, exit } = await term.newSession(proj, ["--no-sync-back"]);
    await term.shell("echo nope > created.txt && mkdir -p sub && echo nope > sub/nested.txt");
    await waitFor(() => existsSync(join(workspace(label), "sub/nested.txt")), { what: "the file in the workspace" });
    const farewell = await term.detach(label, exit);
    expect(farewell).not.toContain("Sync-back paused");
    expect(farewell).not.toContain("sync-back on");

    // A client that does ask, from another directory, gets them: so the agent had them to send.
    const other = tempDir("catty-sb-other-");
    const again = await term.connect(other, label);
    await arrives(join(other, "created.txt"), "nope\n");
    await arrives(join(other, "sub/nested.txt"), "nope\n");
    // …and the `--no-sync-back` directory still has nothing.
    expect(readdirSync(proj)).toEqual([]);
    await term.detach(label, again.exit);

    // `catty connect --no-sync-back` too.
    const third = await term.connect(proj, label, ["--no-sync-back"]);
    await term.shell("echo later > later.txt");
    await waitFor(() => existsSync(join(workspace(label), "later.txt")), { what: "later.txt in the workspace" });
    const bye = await term.detach(label, third.exit);
    expect(bye).not.toContain("Sync-back paused");
    expect(readdirSync(proj)).toEqual([]);
  }, 90_000);

  test("catch-up: changes made while detached arrive on a fresh catty connect from the same directory", async () => {
    const proj = tempDir("catty-sb-catchup-");
    const { label, exit } = await term.newSession(proj, ["--no-upload"]);
    const ws = workspace(label);
    await term.shell("echo keep > keep.txt && echo old > change.txt && echo bye > gone.txt && mkdir -p olddir/sub && echo o > olddir/sub/o.txt");
    await arrives(join(proj, "gone.txt"), "bye\n");
    await arrives(join(proj, "olddir/sub/o.txt"), "o\n");
    await term.detach(label, exit);
    const stateFile = syncStateFile(term.home, label, proj);
    expect(existsSync(stateFile)).toBe(true);

    // While nobody is attached, the workspace changes (the agent's watcher sees it).
    writeFileSync(join(ws, "change.txt"), "new\n");
    writeFileSync(join(ws, "fresh.txt"), "fresh\n");
    mkdirSync(join(ws, "newdir/deeper"), { recursive: true });
    writeFileSync(join(ws, "newdir/deeper/n.txt"), "nested\n");
    rmSync(join(ws, "gone.txt"));
    rmSync(join(ws, "olddir"), { recursive: true });
    expect(readOrNull(join(proj, "fresh.txt"))).toBeNull();

    // A new catty process from the same directory picks up where the last one stopped.
    const again = await term.connect(proj, label);
    await arrives(join(proj, "change.txt"), "new\n");
    await arrives(join(proj, "fresh.txt"), "fresh\n");
    await arrives(join(proj, "newdir/deeper/n.txt"), "nested\n");
    await arrives(join(proj, "gone.txt"), null);
    await arrives(join(proj, "olddir/sub/o.txt"), null);
    expect(readOrNull(join(proj, "keep.txt"))).toBe("keep\n");
    const farewell = await term.detach(label, again.exit);
    // Only what it missed was sent (3 files, 2 deletions), not everything again: the position was remembered.
    expect(summaryCounts(farewell)).toEqual({ written: 3, deleted: 2 });

    // Nothing changed since: the next connect writes nothing.
    const quiet = await term.connect(proj, label);
    await term.shell("true");
    expect(summaryCounts(await term.detach(label, quiet.exit))).toEqual({ written: 0, deleted: 0 });
  }, 90_000);

  test("catch-up after the link drops: the same catty process applies what it missed once the server is back", async () => {
    const proj = tempDir("catty-sb-drop-");
    const { label, exit } = await term.newSession(proj, ["--no-upload"]);
    const ws = workspace(label);
    await term.shell("echo before > before.txt && echo doomed > doomed.txt");
    await arrives(join(proj, "doomed.txt"), "doomed\n");

    await server.kill9();
    writeFileSync(join(ws, "during.txt"), "written while the server was down\n");
    writeFileSync(join(ws, "before.txt"), "changed while the server was down\n");
    rmSync(join(ws, "doomed.txt"));
    await server.start();

    await arrives(join(proj, "during.txt"), "written while the server was down\n", 40_000);
    await arrives(join(proj, "before.txt"), "changed while the server was down\n");
    await arrives(join(proj, "doomed.txt"), null);
    // And live changes keep coming after the reconnect.
    await term.shell("echo after > after.txt", 30_000);
    await arrives(join(proj, "after.txt"), "after\n");
    await term.detach(label, exit);
  }, 120_000);

  test("conflicts: a local edit is kept beside the session's version; a locally edited file survives a remote delete", async () => {
    const proj = tempDir("catty-sb-conflict-");
    const { label, exit } = await term.newSession(proj, ["--no-upload"]);
    await term.shell("echo v1 > conf.txt && echo k1 > keep.txt");
    await arrives(join(proj, "conf.txt"), "v1\n");
    await arrives(join(proj, "keep.txt"), "k1\n");

    writeFileSync(join(proj, "conf.txt"), "my local edit\n");
    writeFileSync(join(proj, "keep.txt"), "my local keep edit\n");
    await term.shell("echo v2 > conf.txt && rm keep.txt");
    await arrives(join(proj, "conf.txt"), "v2\n");
    await arrives(join(proj, "conf.txt.catty-local"), "my local edit\n");
    await term.tmux.waitFor("your local edit of conf.txt was kept as conf.txt.catty-local", 5_000);
    await term.shell("echo barrier > barrier.txt");
    await arrives(join(proj, "barrier.txt"), "barrier\n");
    expect(readOrNull(join(proj, "keep.txt"))).toBe("my local keep edit\n");

    const farewell = await term.detach(label, exit);
    expect(farewell).toContain("Kept your local version: conf.txt.catty-local");
    expect(farewell).toContain("Kept your local version: keep.txt (deleted in the session, kept here: edited locally)");
  }, 60_000);
});

describe("the sync-back size cap", () => {
  test("files over CATTY_SYNC_MAX_BYTES are not written locally, and the detach summary says so", async () => {
    const server = new ServerProcess(bins.server, { CATTY_SYNC_MAX_BYTES: String(1024 * 1024) });
    await server.start();
    const term = new Term(tempDir("catty-sb-cap-home-"));
    cleanups.push(async () => {
      await server.stop();
      rmSync(server.dataDir, { recursive: true, force: true });
    });
    term.login(server);
    const proj = tempDir("catty-sb-cap-");
    const { label, exit } = await term.newSession(proj, ["--no-upload"]);
    await term.shell("head -c 2097152 /dev/urandom > huge.bin && head -c 1048576 /dev/urandom > under.bin && echo small > small.txt");
    const ws = join(server.dataDir, "sessions", label, "workspace");
    await sameBytes(join(proj, "under.bin"), join(ws, "under.bin"));
    await arrives(join(proj, "small.txt"), "small\n");
    // The notice names the file's final size. The agent waits for a file to settle before it
    // reports it, but a writer can stall longer than that on a busy machine, so an earlier size
    // may come first: wait until the client has the final one (its log says so) before detaching.
    const reason = "2.0 MB is over the sync-back cap of 1.0 MB; get it with `catty download`";
    const clientLog = join(term.home, "logs", "catty.log");
    await waitFor(() => readOrNull(clientLog)?.includes(`"path":"huge.bin","reason":${JSON.stringify(reason)}`), {
      timeoutMs: ARRIVE_MS,
      what: "the client to be told huge.bin's final size",
    });
    expect(existsSync(join(proj, "huge.bin"))).toBe(false);
    const farewell = await term.detach(label, exit);
    const skipped = farewell.split("\n").filter((line) => line.includes("Not synced back: huge.bin"));
    expect(skipped.at(-1)).toContain(`Not synced back: huge.bin: ${reason}`);
    expect(existsSync(join(proj, "huge.bin"))).toBe(false);
    Bun.spawnSync([bins.catty, "stop", label], { env: { ...process.env, HOME: term.home, CATTY_HOME: term.home } });
  }, 60_000);
});

describe("a rogue agent", () => {
  let server: TestServer;
  let rogue: ReturnType<typeof rogueProvider>;

  beforeAll(async () => {
    server = await startTestServer({ wrapProvider: (real) => (rogue = rogueProvider(real)) });
    cleanups.push(async () => {
      await server.stop();
      rmSync(server.dataDir, { recursive: true, force: true });
    });
  });

  test("hostile paths are refused, nothing outside the directory changes, and the session stays usable", async () => {
    // home/
    //   .ssh/authorized_keys            the prize
    //   .catty/                         the CLI's own files (may change)
    //   work/outside.txt, work/outside-dir/victim.txt
    //   work/proj/                      where catty runs
    //     link  -> ../outside-dir, link2 -> ../outside.txt, mine.txt
    const home = tempDir("catty-rogue-home-");
    const cattyHome = join(home, ".catty");
    const proj = join(home, "work", "proj");
    const absTarget = join(tmpdir(), `catty-rogue-abs-${process.pid}-${Date.now()}`);
    cleanups.push(() => rmSync(absTarget, { recursive: true, force: true }));
    mkdirSync(join(home, ".ssh"), { recursive: true, mode: 0o700 });
    writeFileSync(join(home, ".ssh/authorized_keys"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKnownGoodKey user@laptop\n", { mode: 0o600 });
    mkdirSync(join(home, "work/outside-dir"), { recursive: true });
    writeFileSync(join(home, "work/outside.txt"), "outside\n");
    writeFileSync(join(home, "work/outside-dir/victim.txt"), "victim\n");
    mkdirSync(proj, { recursive: true });
    writeFileSync(join(proj, "mine.txt"), "mine\n");
    symlinkSync(join(home, "work/outside-dir"), join(proj, "link"));
    symlinkSync(join(home, "work/outside.txt"), join(proj, "link2"));
    const outsideProj = (rel: string): boolean => rel === ".catty" || rel.startsWith(".catty/") || rel === "work/proj" || rel.startsWith("work/proj/");
    const before = snapshotTree(home, outsideProj);
    const projBefore = snapshotTree(proj);

    const session = await server.owner.create({ command: [], cols: 80, rows: 24 });
    const agent = new RogueAgent(server.url, rogue.tokens.get(session.label) as string);
    cleanups.push(() => agent.close());
    await agent.hello();

    const term = new Term(home, { CATTY_HOME: cattyHome, CATTY_API_ADDR: server.url, CATTY_TOKEN: server.ownerToken });
    const exit = "ROGUE_EXIT";
    term.tmux.type(`cd ${proj} && catty connect ${session.label}; echo ${exit}=$?`);
    const attach = await agent.next("attach");
    expect(attach.syncBack).toEqual({ epoch: null, seq: 0, links: true });
    const clientId = attach.clientId;
    agent.synced(clientId);
    agent.sync(clientId, { kind: "start", epoch: "rogue-epoch", seq: 0 });

    const hostileFiles = [
      join(absTarget, "abs.txt"),
      join(home, "work/outside.txt"),
      "../outside.txt",
      "../dropped.txt",
      "a/../../x.txt",
      "link/pwned.txt",
      "link/victim.txt",
      "link2",
      "../../.ssh/authorized_keys",
      join(home, ".ssh/authorized_keys"),
      "sub\\..\\..\\win.txt",
      // .git in another letter case is .git on macOS: its config and hooks run code here.
      ".GIT/config",
      ".Git/hooks/pre-commit",
      "a/.gIT/x",
    ];
    for (const path of hostileFiles) agent.file(clientId, path, "PWNED ssh-rsa AAAAevil attacker@rogue\n");
    const hostileDeletes = ["../outside.txt", "link/victim.txt", "link2", "link", "../../.ssh/authorized_keys", join(home, "work/outside-dir/victim.txt")];
    for (const path of hostileDeletes) agent.sync(clientId, { kind: "delete", seq: agent.nextSeq(), path });
    const hostileDirs = ["../made-outside", "link/made-through-link", join(absTarget, "dir")];
    for (const path of hostileDirs) agent.sync(clientId, { kind: "dir", seq: agent.nextSeq(), path });
    // Symlinks: through a local symlink, bad paths, a target no file system holds (refused); and
    // links that lead outside, which stay in the session (skipped, listed).
    const hostileLinks: Record<string, string> = { "link/planted": "x", "../up": "x", ".GIT/hooks": "x", nul: "a\0b" };
    for (const [path, target] of Object.entries(hostileLinks)) agent.sync(clientId, { kind: "symlink", seq: agent.nextSeq(), path, target });
    const outsideLinks: Record<string, string> = { keys: join(home, ".ssh/authorized_keys"), up: "../outside.txt", "deep/er": "../../../.ssh" };
    for (const [path, target] of Object.entries(outsideLinks)) agent.sync(clientId, { kind: "symlink", seq: agent.nextSeq(), path, target });
    // Bytes for a transfer nobody announced, and events for a client that is not this one.
    agent.sendRaw(new Uint8Array([2, 0, 0, 0, clientId, 0, 0, 0x30, 0x39, 0x50, 0x57, 0x4e]));
    agent.file(clientId + 1000, "../other-client.txt", "PWNED\n");
    // A malformed sync message: the server drops it.
    agent.sendRaw(JSON.stringify({ type: "sync", clientId, event: { kind: "file", seq: 1, path: "x".repeat(5000), size: 1, transfer: 1 } }));
    // Then a legitimate file.
    agent.file(clientId, "ok.txt", "legit content\n");
    agent.file(clientId, "nested/ok2.txt", "legit nested\n");
    agent.sync(clientId, { kind: "caught_up", seq: agent.nextSeq() });

    await arrives(join(proj, "ok.txt"), "legit content\n");
    await arrives(join(proj, "nested/ok2.txt"), "legit nested\n");
    await term.tmux.waitFor("sync-back on", 5_000);

    // Outside the directory nothing changed; inside only the two legitimate files are new.
    expect(snapshotTree(home, outsideProj)).toEqual(before);
    expect(readFileSync(join(home, ".ssh/authorized_keys"), "utf8")).toBe("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKnownGoodKey user@laptop\n");
    expect(existsSync(absTarget)).toBe(false);
    const projAfter = snapshotTree(proj);
    expect(Object.keys(projAfter).filter((k) => !(k in projBefore)).sort()).toEqual(["nested", "nested/ok2.txt", "ok.txt"]);
    for (const [rel, what] of Object.entries(projBefore)) expect(projAfter[rel]).toBe(what);

    // The session is still usable both ways: output reaches the screen, typing reaches the agent.
    agent.output("\r\nROGUE-SCREEN-OK-42\r\n");
    await term.tmux.waitFor("ROGUE-SCREEN-OK-42");
    term.tmux.type("typed-after-attack", false);
    await waitFor(() => agent.input.includes("typed-after-attack"), { what: "typed input to reach the agent" });

    term.tmux.keys("C-c");
    term.tmux.keys("C-c");
    const farewell = await term.tmux.waitFor(new RegExp(`${exit}=\\d+`));
    expect(farewell).toContain(`${exit}=0`);
    expect(farewell).toContain("Sync-back paused: 2 files written, 0 deleted");
    for (const [path, target] of Object.entries(outsideLinks)) {
      expect(farewell).toContain(`Not synced back: ${path}: a symlink to ${target}, outside this directory: kept in the session`);
    }
    const refused = hostileFiles.length + hostileDeletes.length + hostileDirs.length + Object.keys(hostileLinks).length;
    expect(farewell).toContain(`Refused ${refused} unsafe paths from the session (nothing was written outside this directory); see the log.`);
    // The log names each one.
    const log = readFileSync(join(cattyHome, "logs/catty.log"), "utf8");
    for (const path of [...hostileFiles, ...hostileDeletes, ...hostileDirs, ...Object.keys(hostileLinks)]) expect(log).toContain(JSON.stringify(path).slice(1, -1));
    expect(snapshotTree(home, outsideProj)).toEqual(before);
    expect(readdirSync(proj, { recursive: true }).map(String).filter((n) => n.includes(".catty-tmp-"))).toEqual([]);
  }, 60_000);
});
