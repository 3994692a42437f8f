/**
 * Sync-back, client side, driven directly: `SyncBackWriter` fed with events and file bytes as the
 * agent would send them, in temp directories (the path rules themselves are tested in
 * test/lib/safe-fs.test.ts). Whatever arrives, nothing outside the root or inside `.git` is written
 * or deleted, no transfer writes more than it declared or the cap; files land atomically; local
 * edits are kept.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { silentLog } from "../../src/lib/log.ts";
import type { SyncEvent } from "../../src/protocol/index.ts";
import { DEFAULT_SYNC_MAX_BYTES } from "../../src/protocol/agent-env.ts";
import {
  loadSyncState,
  saveSyncState,
  SyncBackWriter,
  syncStateFile,
  type SyncState,
} from "../../src/client/sync-back.ts";
import { snapshotTree } from "../helpers/sync-back.ts";
import { listPaths, noise, tempDirs, writeTree } from "../helpers/fs.ts";
import { waitFor } from "../helpers/wait.ts";

const tempDir = tempDirs("catty-syncback-unit-");

const read = (path: string): string => readFileSync(path, "utf8");
const mode = (path: string): number => statSync(path).mode & 0o7777;
const umask = process.umask();

/** A writer for `root` (a fresh one under a temp dir unless given), its state, and where the state is saved. */
function makeWriter(opts: { root?: string; state?: Partial<SyncState>; maxFileBytes?: number } = {}): {
  root: string;
  writer: SyncBackWriter;
  state: SyncState;
  stateFile: string;
  notices: string[];
} {
  const base = tempDir();
  const root = opts.root ?? join(base, "project");
  mkdirSync(root, { recursive: true });
  const state: SyncState = { root, epoch: "epoch-1", seq: 0, files: {}, ...opts.state };
  const stateFile = join(base, "home", "sync", "state.json");
  const writer = new SyncBackWriter(state, stateFile, silentLog, { maxFileBytes: opts.maxFileBytes });
  const notices: string[] = [];
  writer.onNotice = (m) => notices.push(m);
  writer.event({ kind: "start", epoch: state.epoch ?? "epoch-1", seq: state.seq });
  return { root, writer, state, stateFile, notices };
}

let nextTransfer = 1;
let nextSeq = 1;

/** Feeds one whole file as the agent sends it: `file`, binary chunks, `file_end`. */
function sendFile(w: SyncBackWriter, path: string, data: string | Uint8Array, chunk = 64 * 1024): { seq: number; transfer: number } {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const seq = nextSeq++;
  const transfer = nextTransfer++;
  w.event({ kind: "file", seq, path, size: bytes.length, transfer });
  for (let at = 0; at < bytes.length; at += chunk) w.bytes(transfer, bytes.subarray(at, at + chunk));
  w.event({ kind: "file_end", transfer });
  return { seq, transfer };
}

const event = (w: SyncBackWriter, e: SyncEvent): void => w.event(e);

/** Temp files the writer left in `dir`. */
const temps = (dir: string): string[] => listPaths(dir).filter((n) => n.split("/").pop()?.startsWith(".catty-tmp-"));


describe("SyncBackWriter", () => {
  test("creates files and their parent directories, binary and empty files included", async () => {
    const { root, writer } = makeWriter();
    const bin = noise(1_000_003, 7);
    sendFile(writer, "top.txt", "hello\n");
    sendFile(writer, "a/b/c/deep.txt", "deep\n");
    sendFile(writer, "empty.txt", "");
    sendFile(writer, "bin/blob.dat", bin, 50_000);
    event(writer, { kind: "dir", seq: nextSeq++, path: "empty-dir/nested" });
    await writer.flush();
    expect(read(join(root, "top.txt"))).toBe("hello\n");
    expect(read(join(root, "a/b/c/deep.txt"))).toBe("deep\n");
    expect(statSync(join(root, "empty.txt")).size).toBe(0);
    expect(Buffer.compare(readFileSync(join(root, "bin/blob.dat")), Buffer.from(bin))).toBe(0);
    expect(statSync(join(root, "empty-dir/nested")).isDirectory()).toBe(true);
    expect(writer.summary).toMatchObject({ written: 4, deleted: 0, conflicts: [], refused: [], skipped: [] });
    expect(temps(root)).toEqual([]);
  });

  test("interleaved transfers each get their own bytes", async () => {
    const { root, writer } = makeWriter();
    const a = noise(300_000, 1);
    const b = noise(200_000, 2);
    writer.event({ kind: "file", seq: 1, path: "a.bin", size: a.length, transfer: 101 });
    writer.event({ kind: "file", seq: 2, path: "b.bin", size: b.length, transfer: 102 });
    for (let at = 0; at < 300_000; at += 10_000) {
      writer.bytes(101, a.subarray(at, at + 10_000));
      if (at < 200_000) writer.bytes(102, b.subarray(at, at + 10_000));
    }
    writer.bytes(999, noise(100, 3)); // a transfer nobody announced: dropped
    writer.event({ kind: "file_end", transfer: 102 });
    writer.event({ kind: "file_end", transfer: 101 });
    await writer.flush();
    expect(Buffer.compare(readFileSync(join(root, "a.bin")), Buffer.from(a))).toBe(0);
    expect(Buffer.compare(readFileSync(join(root, "b.bin")), Buffer.from(b))).toBe(0);
    expect(readdirSync(root).sort()).toEqual(["a.bin", "b.bin"]);
  });

  test("a file appears only complete: bytes go to a temp file beside it, renamed into place at file_end", async () => {
    const { root, writer } = makeWriter();
    sendFile(writer, "dir/f.txt", "old contents\n");
    await writer.flush();
    const before = statSync(join(root, "dir/f.txt"));

    writer.event({ kind: "file", seq: 10, path: "dir/f.txt", size: 12, transfer: 500 });
    writer.bytes(500, new TextEncoder().encode("new "));
    const [tmp] = await waitFor(() => {
      const t = temps(join(root, "dir"));
      return t.length === 1 && statSync(join(root, "dir", t[0] as string)).size === 4 ? t : null;
    }, { what: "the temp file to hold the first bytes" });
    expect(tmp).toMatch(/^\.catty-tmp-/);
    // Half way through, the target still holds the old version, whole.
    expect(read(join(root, "dir/f.txt"))).toBe("old contents\n");
    writer.bytes(500, new TextEncoder().encode("contents"));
    writer.event({ kind: "file_end", transfer: 500 });
    await writer.flush();
    expect(read(join(root, "dir/f.txt"))).toBe("new contents");
    expect(statSync(join(root, "dir/f.txt")).ino).not.toBe(before.ino); // replaced by rename, not rewritten in place
    expect(temps(root)).toEqual([]);
  });

  test("an unfinished transfer leaves no temp file behind after flush, and the old version in place", async () => {
    const { root, writer } = makeWriter();
    sendFile(writer, "f.txt", "complete\n");
    writer.event({ kind: "file", seq: 50, path: "f.txt", size: 1000, transfer: 600 });
    writer.bytes(600, new TextEncoder().encode("partial"));
    await writer.flush();
    expect(read(join(root, "f.txt"))).toBe("complete\n");
    expect(temps(root)).toEqual([]);
    expect(writer.position.seq).toBeLessThan(50);
  });

  // A transfer cut off by a re-subscription never gets its file_end: `start` discards it.
  test("a new start discards the unfinished transfers of the previous subscription", async () => {
    const { root, writer } = makeWriter();
    writer.event({ kind: "file", seq: 70, path: "cut.txt", size: 100, transfer: 700 });
    writer.bytes(700, new TextEncoder().encode("first half"));
    await waitFor(() => temps(root).length === 1, { what: "the transfer to start" });
    writer.event({ kind: "start", epoch: "epoch-1", seq: 69 }); // the agent starts over
    sendFile(writer, "other.txt", "whole\n");
    await waitFor(() => existsSync(join(root, "other.txt")), { what: "the next file" });
    expect(temps(root)).toEqual([]);
    await writer.flush();
  });

  test("new files get 0644 whatever the session had; an existing local file keeps its mode", async () => {
    const { root, writer } = makeWriter();
    writeFileSync(join(root, "private.txt"), "x");
    chmodSync(join(root, "private.txt"), 0o600);
    writeFileSync(join(root, "tool.sh"), "x");
    chmodSync(join(root, "tool.sh"), 0o750);
    sendFile(writer, "new.sh", "#!/bin/sh\necho hi\n");
    sendFile(writer, "private.txt", "secret v2");
    sendFile(writer, "tool.sh", "#!/bin/sh\necho v2\n");
    await writer.flush();
    expect(mode(join(root, "new.sh"))).toBe(0o644 & ~umask);
    expect(mode(join(root, "private.txt"))).toBe(0o600);
    expect(mode(join(root, "tool.sh"))).toBe(0o750);
    expect(read(join(root, "tool.sh"))).toBe("#!/bin/sh\necho v2\n");
  });

  describe("refusals: nothing outside the root is written or deleted", () => {
    /**
     * base/
     *   outside.txt, outside-dir/victim.txt   (must never change)
     *   project/                              (the root)
     *     link  -> ../outside-dir             (a symlink to a directory outside)
     *     link2 -> ../outside.txt             (a symlink to a file outside)
     *     inlink -> sub                       (a symlink to a directory inside: still not followed)
     *     sub/, plain.txt
     */
    function hostileSetup(): { base: string; root: string; writer: SyncBackWriter } {
      const base = tempDir();
      const root = join(base, "project");
      mkdirSync(join(base, "outside-dir"), { recursive: true });
      writeFileSync(join(base, "outside.txt"), "outside\n");
      writeFileSync(join(base, "outside-dir/victim.txt"), "victim\n");
      mkdirSync(join(root, "sub"), { recursive: true });
      writeFileSync(join(root, "plain.txt"), "plain\n");
      symlinkSync(join(base, "outside-dir"), join(root, "link"));
      symlinkSync(join(base, "outside.txt"), join(root, "link2"));
      symlinkSync("sub", join(root, "inlink"));
      const { writer } = makeWriter({ root });
      return { base, root, writer };
    }

    test("file writes through bad paths are refused and their bytes dropped", async () => {
      const { base, root, writer } = hostileSetup();
      const before = snapshotTree(base, (rel) => rel === "project" || rel.startsWith("project/") || rel === "home" || rel.startsWith("home/"));
      const hostile = [
        join(base, "abs.txt"),
        "/tmp/catty-syncback-unit-abs.txt",
        "../outside.txt",
        "../new-outside.txt",
        "a/../../x.txt",
        "sub/../../x.txt",
        "link/pwned.txt",
        "link/victim.txt",
        "link2",
        "inlink/x.txt",
        "plain.txt/under-a-file.txt",
        "a\\..\\..\\x.txt",
      ];
      for (const path of hostile) sendFile(writer, path, "PWNED\n");
      sendFile(writer, "sub", "a directory is here\n");
      sendFile(writer, "ok.txt", "fine\n");
      await writer.flush();

      expect(read(join(root, "ok.txt"))).toBe("fine\n");
      expect(writer.summary.refused).toHaveLength(hostile.length + 1);
      for (const path of hostile) expect(writer.summary.refused.some((r) => r.startsWith(`${path} (`))).toBe(true);
      expect(writer.summary.refused.join("\n")).toContain("link/pwned.txt (it goes through the symlink link)");
      expect(writer.summary.refused.join("\n")).toContain("link2 (it is a symlink here)");
      expect(writer.summary.refused.join("\n")).toContain("sub (a directory is in the way here)");
      expect(writer.summary.written).toBe(1);
      // Outside: exactly as before. Inside: only ok.txt is new; the symlinks still point where they did.
      expect(snapshotTree(base, (rel) => rel === "project" || rel.startsWith("project/") || rel === "home" || rel.startsWith("home/"))).toEqual(before);
      expect(existsSync("/tmp/catty-syncback-unit-abs.txt")).toBe(false);
      expect(readdirSync(root).sort()).toEqual(["inlink", "link", "link2", "ok.txt", "plain.txt", "sub"]);
      expect(readdirSync(join(root, "sub"))).toEqual([]);
      expect(lstatSync(join(root, "link2")).isSymbolicLink()).toBe(true);
      expect(read(join(root, "plain.txt"))).toBe("plain\n");
      expect(temps(base)).toEqual([]);
      // A refused change still counts as handled, so it is not sent again.
      expect(writer.position.seq).toBe(nextSeq - 1);
    });

    test("deletes and directories through bad paths are refused", async () => {
      const { base, root, writer } = hostileSetup();
      const before = snapshotTree(base, (rel) => rel === "project" || rel.startsWith("project/") || rel === "home" || rel.startsWith("home/"));
      const deletes = ["../outside.txt", "link/victim.txt", "link2", "inlink/x", join(base, "outside.txt"), "a/../../outside.txt"];
      for (const path of deletes) event(writer, { kind: "delete", seq: nextSeq++, path });
      const dirs = ["../made-outside", "link/made-through-link", join(base, "abs-dir"), "inlink/x"];
      for (const path of dirs) event(writer, { kind: "dir", seq: nextSeq++, path });
      await writer.flush();
      expect(snapshotTree(base, (rel) => rel === "project" || rel.startsWith("project/") || rel === "home" || rel.startsWith("home/"))).toEqual(before);
      expect(lstatSync(join(root, "link")).isSymbolicLink()).toBe(true);
      expect(lstatSync(join(root, "link2")).isSymbolicLink()).toBe(true);
      expect(read(join(base, "outside.txt"))).toBe("outside\n");
      expect(existsSync(join(base, "made-outside"))).toBe(false);
      expect(existsSync(join(base, "abs-dir"))).toBe(false);
      expect(writer.summary.deleted).toBe(0);
      // Every one was bad for a reason the user can see in the log.
      expect(writer.summary.refused.length).toBe(deletes.length + dirs.length);
    });

    test("a symlink put in place of a directory during a transfer stops the file at file_end", async () => {
      const { base, root, writer } = hostileSetup();
      writer.event({ kind: "file", seq: 900, path: "later/f.txt", size: 5, transfer: 900 });
      writer.bytes(900, new TextEncoder().encode("PWNED"));
      await waitFor(() => existsSync(join(root, "later")) && temps(join(root, "later")).length === 1, { what: "the transfer to start" });
      // Someone swaps the directory for a symlink to outside before the file lands.
      rmSync(join(root, "later"), { recursive: true });
      symlinkSync(join(base, "outside-dir"), join(root, "later"));
      writer.event({ kind: "file_end", transfer: 900 });
      await writer.flush();
      expect(readdirSync(join(base, "outside-dir"))).toEqual(["victim.txt"]);
      expect(writer.summary.refused.join("\n")).toContain("later/f.txt (it goes through the symlink later)");
    });
  });

  describe("a rogue agent: .git, planted symlinks, oversized transfers", () => {
    test("paths into .git in any letter case are refused: nothing written, created or deleted", async () => {
      const { root, writer } = makeWriter();
      writeTree(root, { ".git/config": "[core]\n", ".git/hooks/": "", "a/.git/HEAD": "ref\n", "keep.txt": "k\n" });
      const before = snapshotTree(root);
      const files = [".GIT/config", ".Git/hooks/pre-commit", "a/.gIT/x", ".git/config", "new/.GIT/config", ".git./hooks/post-checkout", "GIT~1/config"];
      for (const path of files) sendFile(writer, path, "[core]\n\thooksPath = /tmp/evil\n");
      for (const path of [".GIT/hooks", "b/.Git"]) event(writer, { kind: "dir", seq: nextSeq++, path });
      for (const path of [".GIT/config", "a/.Git/HEAD"]) event(writer, { kind: "delete", seq: nextSeq++, path });
      sendFile(writer, "ok.txt", "fine\n");
      await writer.flush();

      expect(snapshotTree(root)).toEqual({ ...before, "ok.txt": expect.stringMatching(/^file /) });
      expect(writer.summary.refused).toHaveLength(files.length + 4);
      for (const path of [...files, ".GIT/hooks", "b/.Git", "a/.Git/HEAD"]) {
        expect(writer.summary.refused.some((r) => r.startsWith(`${path} (a path into `))).toBe(true);
      }
      expect(writer.summary.refused).toContain(".GIT/config (a path into .GIT, which is .git on some file systems)");
      expect(writer.summary).toMatchObject({ written: 1, deleted: 0 });
      expect(temps(root)).toEqual([]);
    });

    test("temp files have unpredictable names: symlinks planted at any predictable name redirect nothing", async () => {
      const base = tempDir();
      const root = join(base, "project");
      mkdirSync(join(root, "dir"), { recursive: true });
      writeFileSync(join(base, "victim.txt"), "victim\n");
      // Every name the writer could have chosen from what it knows (pid, transfer, seq, path).
      const transfer = 4242;
      const predictable = [`.catty-tmp-${process.pid}-${transfer}`, `.catty-tmp-${transfer}`, ".catty-tmp-", ".f.txt.catty-tmp", "f.txt.tmp", ".f.txt.tmp"];
      for (const name of predictable) symlinkSync(join(base, "victim.txt"), join(root, "dir", name));
      const { writer } = makeWriter({ root });
      writer.event({ kind: "file", seq: 1, path: "dir/f.txt", size: 10, transfer });
      writer.bytes(transfer, new TextEncoder().encode("PWNED"));
      const [tmp] = await waitFor(() => {
        const t = temps(join(root, "dir")).filter((n) => !predictable.includes(n));
        return t.length === 1 ? t : null;
      }, { what: "the transfer's temp file" });
      expect(tmp).toMatch(/^\.catty-tmp-[0-9a-f]{32}$/);
      expect(lstatSync(join(root, "dir", tmp as string)).isFile()).toBe(true);
      expect(statSync(join(root, "dir", tmp as string)).mode & 0o777).toBe(0o600);
      writer.bytes(transfer, new TextEncoder().encode("PWNED"));
      writer.event({ kind: "file_end", transfer, bytes: 10 });
      await writer.flush();
      expect(read(join(base, "victim.txt"))).toBe("victim\n");
      expect(read(join(root, "dir/f.txt"))).toBe("PWNEDPWNED");
      for (const name of predictable) expect(lstatSync(join(root, "dir", name)).isSymbolicLink()).toBe(true);
    });

    test("a transfer that sends more bytes than it declared is discarded: the temp file never grows past the size, nothing is placed", async () => {
      const { root, writer } = makeWriter();
      sendFile(writer, "f.txt", "original\n");
      await writer.flush();
      const before = statSync(join(root, "f.txt"));

      writer.event({ kind: "file", seq: nextSeq++, path: "f.txt", size: 5, transfer: 800 });
      writer.bytes(800, new TextEncoder().encode("PWNED"));
      await waitFor(() => temps(root).length === 1 && statSync(join(root, temps(root)[0] as string)).size === 5, { what: "the declared bytes" });
      writer.bytes(800, new TextEncoder().encode(" and then some more"));
      await waitFor(() => temps(root).length === 0, { what: "the over-long transfer to be discarded" });
      writer.bytes(800, noise(1000, 9)); // later bytes of the same transfer are dropped, not written anywhere
      writer.event({ kind: "file_end", transfer: 800 });
      // Sent whole, but declaring less than it sends.
      writer.event({ kind: "file", seq: nextSeq++, path: "g.txt", size: 3, transfer: 801 });
      writer.bytes(801, new TextEncoder().encode("abcdef"));
      writer.event({ kind: "file_end", transfer: 801, bytes: 6 });
      await writer.flush();

      expect(read(join(root, "f.txt"))).toBe("original\n");
      expect(statSync(join(root, "f.txt")).ino).toBe(before.ino);
      expect(existsSync(join(root, "g.txt"))).toBe(false);
      expect(writer.summary.refused).toEqual([
        "f.txt (it sent more bytes than the file event declared)",
        "g.txt (it sent more bytes than the file event declared)",
      ]);
      expect(temps(root)).toEqual([]);
      expect(readdirSync(root).sort()).toEqual(["f.txt"]);
    });

    test("a file over the client's cap is skipped before anything is created, whatever the agent's own cap", async () => {
      const { root, writer } = makeWriter({ maxFileBytes: 1000 });
      writer.event({ kind: "file", seq: nextSeq++, path: "big/huge.bin", size: 1001, transfer: 900 });
      writer.bytes(900, noise(1001, 4));
      writer.event({ kind: "file_end", transfer: 900 });
      sendFile(writer, "fits.bin", noise(1000, 5));
      await writer.flush();
      expect(existsSync(join(root, "big"))).toBe(false);
      expect(readdirSync(root)).toEqual(["fits.bin"]);
      expect(writer.summary.skipped).toEqual(["big/huge.bin: 1001 B is over this computer's sync-back cap of 1000 B; get it with `catty download`"]);
      expect(writer.summary.written).toBe(1);
      expect(DEFAULT_SYNC_MAX_BYTES).toBe(50 * 1024 * 1024);
    });

    test("a transfer number announced twice: the first transfer's temp file goes, only the second lands", async () => {
      const { root, writer } = makeWriter();
      writer.event({ kind: "file", seq: nextSeq++, path: "one.txt", size: 100, transfer: 950 });
      writer.bytes(950, new TextEncoder().encode("first"));
      writer.event({ kind: "file", seq: nextSeq++, path: "two.txt", size: 6, transfer: 950 });
      writer.bytes(950, new TextEncoder().encode("second"));
      writer.event({ kind: "file_end", transfer: 950 });
      await writer.flush();
      expect(readdirSync(root)).toEqual(["two.txt"]);
      expect(read(join(root, "two.txt"))).toBe("second");
    });
  });

  describe("conflicts", () => {
    test("a local edit since Catty wrote the file is kept as NAME.catty-local, told once", async () => {
      const { root, writer, notices } = makeWriter();
      sendFile(writer, "notes.md", "v1 from the session\n");
      sendFile(writer, "other.md", "other v1\n");
      await writer.flush();
      writeFileSync(join(root, "notes.md"), "my local edit\n");
      writeFileSync(join(root, "other.md"), "another local edit\n");
      sendFile(writer, "notes.md", "v2 from the session\n");
      sendFile(writer, "other.md", "other v2\n");
      await writer.flush();
      expect(read(join(root, "notes.md"))).toBe("v2 from the session\n");
      expect(read(join(root, "notes.md.catty-local"))).toBe("my local edit\n");
      expect(read(join(root, "other.md.catty-local"))).toBe("another local edit\n");
      expect(writer.summary.conflicts).toEqual(["notes.md.catty-local", "other.md.catty-local"]);
      expect(notices).toEqual(["your local edit of notes.md was kept as notes.md.catty-local"]);

      // Catty's own write is not a local edit: the next version replaces it without a copy.
      sendFile(writer, "notes.md", "v3\n");
      await writer.flush();
      expect(read(join(root, "notes.md"))).toBe("v3\n");
      expect(writer.summary.conflicts).toHaveLength(2);

      // A second conflict on the same name does not overwrite the first copy.
      writeFileSync(join(root, "notes.md"), "second local edit\n");
      sendFile(writer, "notes.md", "v4\n");
      await writer.flush();
      expect(read(join(root, "notes.md.catty-local"))).toBe("my local edit\n");
      expect(read(join(root, "notes.md.catty-local.1"))).toBe("second local edit\n");
      expect(read(join(root, "notes.md"))).toBe("v4\n");
    });

    test("an unknown local file is kept aside only when its content differs", async () => {
      const { root, writer } = makeWriter();
      writeFileSync(join(root, "same.txt"), "identical\n");
      writeFileSync(join(root, "differs.txt"), "mine\n");
      sendFile(writer, "same.txt", "identical\n");
      sendFile(writer, "differs.txt", "theirs\n");
      await writer.flush();
      expect(read(join(root, "differs.txt"))).toBe("theirs\n");
      expect(read(join(root, "differs.txt.catty-local"))).toBe("mine\n");
      expect(existsSync(join(root, "same.txt.catty-local"))).toBe(false);
      expect(writer.summary.conflicts).toEqual(["differs.txt.catty-local"]);
    });

    test("the upload's record counts as Catty's own version", async () => {
      const base = tempDir();
      const root = join(base, "p");
      mkdirSync(root);
      writeFileSync(join(root, "up.txt"), "uploaded\n");
      const st = statSync(join(root, "up.txt"));
      const { writer } = makeWriter({ root, state: { files: { "up.txt": { size: st.size, mtimeMs: st.mtimeMs } } } });
      sendFile(writer, "up.txt", "changed in the session\n");
      await writer.flush();
      expect(read(join(root, "up.txt"))).toBe("changed in the session\n");
      expect(existsSync(join(root, "up.txt.catty-local"))).toBe(false);
    });
  });

  describe("deletes", () => {
    test("a file Catty wrote goes; a locally edited one stays and is reported", async () => {
      const { root, writer } = makeWriter();
      sendFile(writer, "gone.txt", "bye\n");
      sendFile(writer, "edited.txt", "v1\n");
      await writer.flush();
      writeFileSync(join(root, "edited.txt"), "edited here, longer\n");
      event(writer, { kind: "delete", seq: nextSeq++, path: "gone.txt" });
      event(writer, { kind: "delete", seq: nextSeq++, path: "edited.txt" });
      event(writer, { kind: "delete", seq: nextSeq++, path: "never-existed.txt" });
      await writer.flush();
      expect(existsSync(join(root, "gone.txt"))).toBe(false);
      expect(read(join(root, "edited.txt"))).toBe("edited here, longer\n");
      expect(writer.summary.deleted).toBe(1);
      expect(writer.summary.conflicts).toEqual(["edited.txt (deleted in the session, kept here: edited locally)"]);
    });

    test("a directory goes only when empty: local files the session never had stay", async () => {
      const { root, writer } = makeWriter();
      sendFile(writer, "d/x.txt", "x\n");
      sendFile(writer, "e/sub/y.txt", "y\n");
      await writer.flush();
      writeFileSync(join(root, "e/sub/local-only.txt"), "mine\n");
      // As the agent reports `mv d …` / `rm -r e`: children first, then the directories.
      for (const path of ["d/x.txt", "d", "e/sub/y.txt", "e/sub", "e"]) event(writer, { kind: "delete", seq: nextSeq++, path });
      await writer.flush();
      expect(existsSync(join(root, "d"))).toBe(false);
      expect(readdirSync(join(root, "e/sub"))).toEqual(["local-only.txt"]);
      expect(writer.summary.deleted).toBe(2);
    });
  });

  describe("symlinks", () => {
    const link = (w: SyncBackWriter, path: string, target: string): void => event(w, { kind: "symlink", seq: nextSeq++, path, target });
    const outside = (path: string, target: string) => `${path}: a symlink to ${target}, outside this directory: kept in the session`;

    test("links that stay inside are made as the session has them, dangling and looping too; changed and deleted later", async () => {
      const { root, writer, state } = makeWriter();
      sendFile(writer, "a.txt", "a\n");
      const links: Record<string, string> = { inside: "a.txt", "sub/back": "../a.txt", dangling: "not/yet/there", loop1: "loop2", loop2: "loop1", self: "self", dot: "." };
      for (const [path, target] of Object.entries(links)) link(writer, path, target);
      await writer.flush();
      for (const [path, target] of Object.entries(links)) expect(readlinkSync(join(root, path))).toBe(target);
      expect(read(join(root, "inside"))).toBe("a\n");
      expect(writer.summary).toMatchObject({ written: 1 + Object.keys(links).length, refused: [], skipped: [], conflicts: [] });
      expect(Object.keys(state.files).sort()).toEqual(["a.txt", ...Object.keys(links)].sort());
      expect(temps(root)).toEqual([]);

      // Changed in the session: replaced whole (never written through: a.txt is untouched).
      link(writer, "inside", "sub");
      // The same again: nothing to do.
      link(writer, "loop1", "loop2");
      // Deleted in the session: the link goes, not what it points to.
      event(writer, { kind: "delete", seq: nextSeq++, path: "sub/back" });
      // A link Catty made becomes a file in the session.
      sendFile(writer, "dot", "now a file\n");
      await writer.flush();
      expect(readlinkSync(join(root, "inside"))).toBe("sub");
      expect(read(join(root, "a.txt"))).toBe("a\n");
      expect(lstatSync(join(root, "sub/back"), { throwIfNoEntry: false })).toBeUndefined();
      expect(read(join(root, "dot"))).toBe("now a file\n");
      expect(writer.summary).toMatchObject({ deleted: 1, refused: [], conflicts: [] });
    });

    test("links that lead outside (absolute, climbing, through a link here) are skipped with the reason; nothing changes", async () => {
      const base = tempDir();
      const root = join(base, "project");
      mkdirSync(join(root, "d"), { recursive: true });
      symlinkSync("/etc", join(root, "sys"));
      const { writer } = makeWriter({ root });
      const before = snapshotTree(base, (rel) => rel === "home" || rel.startsWith("home/"));
      const hostile: Record<string, string> = {
        abs: "/etc/hosts",
        up: "../outside",
        "d/upup": "../../x",
        via: "d/../sys/passwd",
        chain: "d/../d/../..",
        "d/new/deep": "../../../..",
      };
      for (const [path, target] of Object.entries(hostile)) link(writer, path, target);
      await writer.flush();
      expect(writer.summary.skipped).toEqual(Object.entries(hostile).map(([path, target]) => outside(path, target)));
      expect(writer.summary).toMatchObject({ written: 0, refused: [] });
      expect(snapshotTree(base, (rel) => rel === "home" || rel.startsWith("home/"))).toEqual(before);
      expect(writer.position.seq).toBe(nextSeq - 1);
    });

    test("a link that would make one sync-back made before lead outside is skipped too, and kept over attaches", async () => {
      const { root, writer, state, stateFile } = makeWriter();
      link(writer, "m", "d/e");
      link(writer, "l", "m/../.."); // d/e/../.. is the directory itself: inside
      await writer.flush();
      expect(readlinkSync(join(root, "l"))).toBe("m/../..");
      link(writer, "m", "d"); // would make l lead to the parent of the directory
      await writer.flush();
      expect(writer.summary.skipped).toEqual(["m: a symlink to d, which would make l lead outside this directory: kept in the session"]);
      expect(readlinkSync(join(root, "m"))).toBe("d/e");
      // Another attach, from the saved state: the same.
      const again = new SyncBackWriter(await loadSyncState(stateFile, root), stateFile, silentLog);
      again.event({ kind: "start", epoch: state.epoch ?? "epoch-1", seq: state.seq });
      link(again, "m", "d");
      link(again, "n", "m/x"); // through m, still inside: fine
      await again.flush();
      expect(again.summary.skipped).toEqual(["m: a symlink to d, which would make l lead outside this directory: kept in the session"]);
      expect(readlinkSync(join(root, "m"))).toBe("d/e");
      expect(readlinkSync(join(root, "n"))).toBe("m/x");
    });

    test("a link another one leads through is not deleted or replaced by a file while that would strand it outside", async () => {
      const { root, writer } = makeWriter();
      link(writer, "m", "d/e");
      link(writer, "l", "m/../..");
      event(writer, { kind: "delete", seq: nextSeq++, path: "m" });
      sendFile(writer, "m", "a file now\n");
      // Then a directory where m was: l would lead to the parent of the directory.
      event(writer, { kind: "dir", seq: nextSeq++, path: "m" });
      await writer.flush();
      const why = "it is a symlink that l leads through, which would then lead outside this directory: kept here";
      expect(writer.summary.skipped).toEqual([`m: deleted in the session, but ${why}`, `m: a file in the session, but ${why}`]);
      expect(readlinkSync(join(root, "m"))).toBe("d/e");
      expect(temps(root)).toEqual([]);
      // Once l is gone, m may go.
      event(writer, { kind: "delete", seq: nextSeq++, path: "l" });
      event(writer, { kind: "delete", seq: nextSeq++, path: "m" });
      await writer.flush();
      expect(readdirSync(root)).toEqual([]);
      expect(writer.summary.deleted).toBe(2);
    });

    test("never made through a symlinked parent, never over a directory, never with a target no file system holds", async () => {
      const base = tempDir();
      const root = join(base, "project");
      mkdirSync(join(base, "outside-dir"));
      mkdirSync(join(root, "dir"), { recursive: true });
      writeFileSync(join(root, "dir/keep.txt"), "k\n");
      symlinkSync("dir", join(root, "inlink"));
      symlinkSync(join(base, "outside-dir"), join(root, "out"));
      const { writer } = makeWriter({ root });
      link(writer, "inlink/x", "keep.txt");
      link(writer, "out/x", "y");
      link(writer, "dir", "elsewhere");
      link(writer, "nul", "a\0b");
      link(writer, "../escape", "x");
      link(writer, ".git/hooks", "x");
      await writer.flush();
      expect(writer.summary.refused).toEqual([
        "inlink/x (it goes through the symlink inlink)",
        "out/x (it goes through the symlink out)",
        "dir (a directory is in the way here)",
        "nul (a symlink whose target has a NUL character)",
        "../escape (a path with a .. part)",
        ".git/hooks (a path into .git)",
      ]);
      expect(readdirSync(join(base, "outside-dir"))).toEqual([]);
      expect(readdirSync(join(root, "dir"))).toEqual(["keep.txt"]);
      expect(readdirSync(root).sort()).toEqual(["dir", "inlink", "out"]);
    });

    test("a link catty new uploaded counts as Catty's own: changed in the session it is replaced, deleted it goes", async () => {
      const base = tempDir();
      const root = join(base, "p");
      mkdirSync(root);
      symlinkSync("/etc/hosts", join(root, "abs"));
      symlinkSync("a.txt", join(root, "gone"));
      const record = (rel: string) => {
        const st = lstatSync(join(root, rel));
        return { size: st.size, mtimeMs: st.mtimeMs };
      };
      const { writer } = makeWriter({ root, state: { files: { abs: record("abs"), gone: record("gone") } } });
      link(writer, "abs", "b.txt");
      event(writer, { kind: "delete", seq: nextSeq++, path: "gone" });
      await writer.flush();
      expect(readlinkSync(join(root, "abs"))).toBe("b.txt");
      expect(lstatSync(join(root, "gone"), { throwIfNoEntry: false })).toBeUndefined();
      expect(readdirSync(root).sort()).toEqual(["abs"]);
      expect(writer.summary).toMatchObject({ written: 1, deleted: 1, conflicts: [], refused: [] });
    });

    test("a local file or link edited since Catty wrote it is kept as NAME.catty-local", async () => {
      const { root, writer } = makeWriter();
      writeFileSync(join(root, "mine.txt"), "my own file\n");
      symlinkSync("mine.txt", join(root, "my-link"));
      symlinkSync("a", join(root, "same"));
      link(writer, "mine.txt", "other");
      link(writer, "my-link", "other");
      link(writer, "same", "a");
      await writer.flush();
      expect(readlinkSync(join(root, "mine.txt"))).toBe("other");
      expect(read(join(root, "mine.txt.catty-local"))).toBe("my own file\n");
      expect(readlinkSync(join(root, "my-link.catty-local"))).toBe("mine.txt");
      expect(readlinkSync(join(root, "same"))).toBe("a");
      expect(writer.summary.conflicts).toEqual(["mine.txt.catty-local", "my-link.catty-local"]);
    });
  });

  describe("position and state", () => {
    test("the position advances with applied changes and is saved on flush", async () => {
      const { writer, stateFile, root } = makeWriter({ state: { epoch: "E1", seq: 0 } });
      const { seq } = sendFile(writer, "a.txt", "a\n");
      await writer.flush();
      expect(writer.position).toEqual({ epoch: "E1", seq, links: true });
      writer.event({ kind: "caught_up", seq: seq + 5 });
      await writer.flush();
      expect(writer.position).toEqual({ epoch: "E1", seq: seq + 5, links: true });
      const saved = await loadSyncState(stateFile, root);
      expect(saved.epoch).toBe("E1");
      expect(saved.seq).toBe(seq + 5);
      expect(Object.keys(saved.files)).toEqual(["a.txt"]);
      // An older caught_up never moves it back.
      writer.event({ kind: "caught_up", seq: 1 });
      await writer.flush();
      expect(writer.position.seq).toBe(seq + 5);
    });

    test("a start from another epoch (a new journal) starts over; the same epoch keeps the position", async () => {
      const { writer } = makeWriter({ state: { epoch: "E1", seq: 42 } });
      writer.event({ kind: "start", epoch: "E1", seq: 42 });
      await writer.flush();
      expect(writer.position).toEqual({ epoch: "E1", seq: 42, links: true });
      writer.event({ kind: "start", epoch: "E2", seq: 0 });
      await writer.flush();
      expect(writer.position).toEqual({ epoch: "E2", seq: 0, links: true });
      expect(writer.active).toBe(true);
    });

    test("state lives under $CATTY_HOME/sync/<label>-<dir hash>.json, per directory", async () => {
      const home = tempDir();
      const a = syncStateFile(home, "brave-tiger-1234", "/work/a");
      const b = syncStateFile(home, "brave-tiger-1234", "/work/b");
      expect(a).toMatch(new RegExp(`^${home}/sync/brave-tiger-1234-[0-9a-f]{16}\\.json$`));
      expect(a).not.toBe(b);
      await saveSyncState(a, { root: "/work/a", epoch: "E", seq: 7, files: { "x": { size: 1, mtimeMs: 2 } } });
      expect(await loadSyncState(a, "/work/a")).toEqual({ root: "/work/a", epoch: "E", seq: 7, files: { x: { size: 1, mtimeMs: 2 } } });
      // A state for another root, or a broken file, is not used.
      expect(await loadSyncState(a, "/work/other")).toEqual({ root: "/work/other", epoch: null, seq: 0, files: {} });
      mkdirSync(dirname(b), { recursive: true });
      writeFileSync(b, "{not json");
      expect(await loadSyncState(b, "/work/b")).toEqual({ root: "/work/b", epoch: null, seq: 0, files: {} });
      expect(readdirSync(join(home, "sync")).filter((n) => n.endsWith(".tmp"))).toEqual([]);
    });

    test("skips are counted, not written", async () => {
      const { root, writer } = makeWriter();
      writer.event({ kind: "skip", seq: 3, path: "huge.bin", reason: "2 MB is over the sync-back cap of 1 MB; get it with `catty download`" });
      await writer.flush();
      expect(existsSync(join(root, "huge.bin"))).toBe(false);
      expect(writer.summary.skipped).toEqual(["huge.bin: 2 MB is over the sync-back cap of 1 MB; get it with `catty download`"]);
      expect(writer.position.seq).toBe(3);
    });
  });
});
