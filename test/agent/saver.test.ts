/**
 * The agent's saves: content-addressed and incremental. The root changes with what a save holds
 * and not otherwise; a save sends only blobs the store lacks; a tick the journal saw nothing in
 * lists nothing; a refused save makes the next one start over, one that failed on the way costs
 * the next only what it had read.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { restoreWorkspace } from "../../agent/restore.ts";
import { FULL_CHECK_EVERY, WorkspaceSaver, type ChangeLog } from "../../agent/saver.ts";
import { ManifestWriter, sha256 } from "../../src/lib/snapshot/format.ts";
import { TarReader } from "../../src/lib/tar-reader.ts";
import { silentLog } from "../../src/lib/log.ts";
import { tempDirs, writeTree } from "../helpers/fs.ts";
import { memoryVault } from "../helpers/vault.ts";
import { workspaceTree } from "../../src/lib/tree.ts";

const tempDir = tempDirs("catty-saver-");

/** A saver over `workspace` storing into a memory vault; `roots` are the saves the "server" accepted. */
function saver(workspace: string, journal?: ChangeLog, opts: { refuse?: () => boolean } = {}) {
  const vault = memoryVault();
  const roots: string[] = [];
  let targets = 0;
  const s = new WorkspaceSaver({
    tree: workspaceTree(workspace),
    log: silentLog,
    firstDelayMs: 60_000,
    intervalMs: 60_000,
    ...(journal ? { journal } : {}),
    vault: () => vault,
    transport: {
      target: async (id) => {
        targets++;
        return `http://vault.invalid/${id}`;
      },
      done: async (_id, stats) => {
        if (opts.refuse?.()) throw new Error("refused");
        roots.push(stats.root);
      },
    },
  });
  return { saver: s, vault, roots, targets: () => targets };
}

/** A journal the test writes to. */
function journal() {
  const entries: Array<{ path: string; seq: number }> = [];
  return {
    seq: 0,
    record(path: string) {
      entries.push({ path, seq: ++this.seq });
    },
    changesSince(seq: number) {
      return entries.filter((e) => e.seq > seq);
    },
  };
}

describe("what a save holds", () => {
  test("contents, modes, new and removed entries and link targets change the root; excluded paths and what a symlink points into do not", async () => {
    const base = tempDir();
    const root = writeTree(join(base, "ws"), { "a.txt": "a", "src/b.ts": "b", "node_modules/x/i.js": "dep", "empty/": "" });
    writeTree(join(base, "outside"), { "o.txt": "o" });
    symlinkSync(join(base, "outside"), join(root, "link"));
    const { saver: s, vault, roots } = saver(root);
    expect(await s.save("initial")).toMatchObject({ kind: "stored", files: 3, size: 2 });
    expect(vault.files(roots[0] as string)).toEqual({ "a.txt": "a", "src/b.ts": "b", link: `-> ${join(base, "outside")}` });

    writeFileSync(join(root, "node_modules/x/i.js"), "changed dependency");
    writeFileSync(join(base, "outside/o.txt"), "changed outside");
    expect(await s.save("final")).toEqual({ kind: "unchanged" });

    const changes: Array<() => void> = [
      () => writeFileSync(join(root, "src/b.ts"), "B"),
      () => utimesSync(join(root, "src/b.ts"), new Date(1_000_000), new Date(1_000_000)),
      () => chmodSync(join(root, "a.txt"), 0o600),
      () => writeFileSync(join(root, "new.txt"), ""),
      () => rmSync(join(root, "empty"), { recursive: true }),
      () => {
        rmSync(join(root, "link"));
        symlinkSync("a.txt", join(root, "link"));
      },
    ];
    for (const change of changes) {
      change();
      expect((await s.save("final")).kind).toBe("stored");
    }
    expect(new Set(roots).size).toBe(roots.length);
    const last = roots.at(-1) as string;
    expect(vault.files(last)).toEqual({ "a.txt": "a", "src/b.ts": "B", "new.txt": "", link: "-> a.txt" });
    expect(vault.modes(last)["a.txt"]).toBe(0o600);
  });

  test("a save sends only what the store lacks: one changed file of many sends that file and the trees above it", async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 300; i++) files[`d${i % 10}/f${i}.txt`] = `file ${i} `.repeat(50);
    const root = writeTree(tempDir(), files);
    const j = journal();
    const { saver: s, vault } = saver(root, j);
    const first = await s.save("initial");
    expect(first).toMatchObject({ kind: "stored", files: 300 });
    const blobsAfterFirst = vault.blobs.size;
    writeFileSync(join(root, "d3/f13.txt"), "changed");
    j.record("d3/f13.txt");
    const second = await s.save("periodic");
    expect(second.kind).toBe("stored");
    // The file's chunk, its directory's tree, the root tree.
    expect(vault.blobs.size - blobsAfterFirst).toBe(3);
    expect(second.kind === "stored" && second.added).toBeLessThan(8000);
  });
});

describe("periodic saves with the workspace journal", () => {
  test("a tick with no recorded change lists nothing and asks for nothing; a recorded change is saved; every tenth tick lists the tree anyway", async () => {
    const root = writeTree(tempDir(), { "a.txt": "a", "sub/b.txt": "b" });
    const j = journal();
    const { saver: s, roots, targets } = saver(root, j);
    expect((await s.save("initial")).kind).toBe("stored");
    const asked = targets();

    // A change the journal missed is not seen by the quiet ticks…
    writeFileSync(join(root, "missed.txt"), "m");
    for (let i = 0; i < FULL_CHECK_EVERY - 1; i++) expect(await s.save("periodic")).toEqual({ kind: "unchanged" });
    expect(targets()).toBe(asked);
    // …but by the tenth, which lists the whole tree.
    expect((await s.save("periodic")).kind).toBe("stored");

    writeFileSync(join(root, "sub/c.txt"), "c");
    j.record("sub/c.txt");
    expect((await s.save("periodic")).kind).toBe("stored");
    expect(roots).toHaveLength(3);
  });

  test("a git commit is saved although the journal does not watch .git", async () => {
    const root = writeTree(tempDir(), { "a.txt": "a", ".git/HEAD": "ref: refs/heads/main\n", ".git/refs/heads/main": "1111\n" });
    const j = journal();
    const { saver: s, vault, roots } = saver(root, j);
    expect((await s.save("initial")).kind).toBe("stored");
    writeFileSync(join(root, ".git/refs/heads/main"), "2222\n");
    mkdirSync(join(root, ".git/logs"), { recursive: true });
    writeFileSync(join(root, ".git/logs/HEAD"), "1111 2222 commit\n");
    expect((await s.save("periodic")).kind).toBe("stored");
    expect(vault.files(roots.at(-1) as string)[".git/refs/heads/main"]).toBe("2222\n");
  });

  test("a save that fails on the way (no link) costs the next one only what it had read", async () => {
    const files = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`f${i}.txt`, `file ${i}`]));
    const root = writeTree(tempDir(), files);
    const j = journal();
    let linkDown = false;
    const asked: number[] = [];
    const vault = memoryVault();
    const s = new WorkspaceSaver({
      tree: workspaceTree(root),
      log: silentLog,
      firstDelayMs: 60_000,
      intervalMs: 60_000,
      journal: j,
      vault: () => ({ ...vault, missing: async (h) => (asked.push(h.length), vault.missing(h)) }),
      transport: {
        target: async (id) => {
          if (linkDown) throw new Error("the server is not connected");
          return `http://vault.invalid/${id}`;
        },
        done: async () => {},
      },
    });
    expect((await s.save("initial")).kind).toBe("stored");
    writeFileSync(join(root, "f3.txt"), "changed");
    j.record("f3.txt");
    linkDown = true;
    expect((await s.save("periodic")).kind).toBe("failed");
    linkDown = false;
    asked.length = 0;
    expect((await s.save("periodic")).kind).toBe("stored");
    // The changed file's chunk and the root's tree: not the 19 files the failed save did not read.
    expect(asked.reduce((a, n) => a + n, 0)).toBe(2);
  });

  test("after a refused save the next one starts over and sends what the store lacks", async () => {
    const root = writeTree(tempDir(), { "a.txt": "a" });
    const j = journal();
    let refuse = true;
    const { saver: s, vault, roots } = saver(root, j, { refuse: () => refuse });
    expect((await s.save("initial")).kind).toBe("failed");
    // The store lost what it was sent (a collection ran, say).
    vault.blobs.clear();
    refuse = false;
    expect((await s.save("periodic")).kind).toBe("stored");
    expect(vault.files(roots[0] as string)).toEqual({ "a.txt": "a" });
  });
});

describe("the first save after a restore", () => {
  test("reads back none of the files the restore wrote (their chunks came with the stream); a file changed since is read; with no manifest, all are", async () => {
    const files: Record<string, string | Uint8Array> = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`src/f${i}.ts`, `export const f${i} = ${i};\n`]));
    files["empty.txt"] = "";
    // Larger than one chunk.
    files["assets/big.bin"] = crypto.getRandomValues(new Uint8Array(600_000));
    const src = writeTree(tempDir(), files);
    const { saver: first, vault, roots } = saver(src);
    expect((await first.save("initial")).kind).toBe("stored");

    // The save as the server streams it for a restore: a plain tar (whole-second times), then
    // each file's chunks in the archive's order.
    const tar = join(tempDir(), "save.tar");
    const made = Bun.spawnSync(["tar", "--format=posix", "-cf", tar, "-C", src, "."]);
    expect(made.exitCode).toBe(0);
    const archive = new Uint8Array(await Bun.file(tar).arrayBuffer());
    const chunks = vault.chunks(roots[0]!);
    const manifest = new ManifestWriter();
    const reader = new TarReader({
      entry: (h) => void (h.type === "file" && manifest.add(h.size, chunks[h.name.replace(/^\.\//, "")]!)),
      data: () => {},
      end: () => {},
    });
    reader.push(archive);
    const streamed = Buffer.concat([archive, manifest.bytes()]);
    const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => new Response(new URL(req.url).pathname === "/plain" ? archive : streamed) });
    try {
      const restore = async (url: string) => {
        const base = tempDir();
        const stateDir = join(base, "state");
        mkdirSync(stateDir);
        const workspace = join(base, "workspace");
        const stats = await restoreWorkspace({ url, size: null }, { serverUrl: `http://127.0.0.1:${server.port}`, workspace, stateDir });
        return { workspace, stats };
      };
      const { workspace, stats } = await restore("/save");
      expect(stats.written?.size).toBe(32);
      expect(stats.written?.get("assets/big.bin")?.chunks).toEqual(chunks["assets/big.bin"]!);
      expect(stats.written?.get("src/f7.ts")?.chunks).toEqual([sha256(new TextEncoder().encode("export const f7 = 7;\n"))]);

      const restored = (at: string, written: NonNullable<typeof stats.written>): WorkspaceSaver => {
        const s = new WorkspaceSaver({
          tree: workspaceTree(at),
          log: silentLog,
          firstDelayMs: 60_000,
          intervalMs: 60_000,
          vault: () => vault,
          transport: { target: async (id) => `http://vault.invalid/${id}`, done: async (_id, stats) => void roots.push(stats.root) },
        });
        s.seedRestored(written);
        return s;
      };
      // Nothing was read; the tree is the save it came from.
      expect(await restored(workspace, stats.written!).save("initial")).toMatchObject({ kind: "stored", read: 0, files: 32, added: 0 });
      expect(roots.at(-1)).toBe(roots[0]);

      // Same size and time, other contents: its ctime moved, so it is read and saved.
      const third = restored(workspace, stats.written!);
      const f3 = join(workspace, "src/f3.ts");
      const { mtime } = statSync(f3);
      writeFileSync(f3, "export const f3 = 9;\n");
      utimesSync(f3, mtime, mtime);
      expect(await third.save("initial")).toMatchObject({ kind: "stored", read: 1 });
      expect(vault.files(roots.at(-1)!)["src/f3.ts"]).toBe("export const f3 = 9;\n");

      // A stream with no manifest (a server from before): every file is read.
      const plain = await restore("/plain");
      expect([...plain.stats.written!.values()].every((f) => f.chunks === null)).toBe(true);
      expect(await restored(plain.workspace, plain.stats.written!).save("initial")).toMatchObject({ kind: "stored", read: 32 });
    } finally {
      server.stop(true);
    }
  });
});
