/**
 * Only the server's user can read its data: the data dir is 0700 and every file the server keeps
 * in it 0600 — the database and its WAL and SHM files, keys, the owner token, the pid file, blobs,
 * agent logs — also when the directory already existed with looser modes.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { killAgents } from "../helpers/agents.ts";
import { freePort } from "../helpers/ports.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { RogueAgent, rogueProvider } from "../helpers/sync-back.ts";
import { saveOf } from "../helpers/vault.ts";
import { waitFor } from "../helpers/wait.ts";
import { removeAfterRun } from "../helpers/fs.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8);

/** Every file and directory the server keeps: the data dir's own files, the blob tree, session dirs' own files. */
function serverFiles(dataDir: string): Record<string, string> {
  const out: Record<string, string> = { ".": mode(dataDir) };
  const walk = (dir: string, recurse: boolean): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      const rel = relative(dataDir, path);
      if (e.isFile()) out[rel] = mode(path);
      else if (e.isDirectory()) {
        out[`${rel}/`] = mode(path);
        if (recurse) walk(path, true);
      }
    }
  };
  walk(dataDir, false);
  walk(join(dataDir, "blobs"), true);
  for (const label of readdirSync(join(dataDir, "sessions"), { withFileTypes: true })) {
    if (label.isDirectory()) walk(join(dataDir, "sessions", label.name), false);
  }
  return out;
}

function expectPrivate(files: Record<string, string>): void {
  for (const [rel, m] of Object.entries(files)) {
    // Session workspaces keep their programs' modes; the 0700 directories above guard them.
    if (/^sessions\/[^/]+\/(workspace|agent-state)\/$/.test(rel)) continue;
    expect(`${rel} ${m}`).toBe(`${rel} ${rel === "." || rel.endsWith("/") ? "700" : "600"}`);
  }
}

/** A data dir as an older server (or a careless user) left it: readable by everyone. */
function looseDataDir(): string {
  const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-modes-")));
  chmodSync(dataDir, 0o755);
  for (const name of ["owner-token", "blob-secret", "catty.db-wal", "server.pid", "notes.log"]) {
    writeFileSync(join(dataDir, name), name === "blob-secret" ? "ab".repeat(32) : "", { mode: 0o644 });
  }
  mkdirSync(join(dataDir, "blobs", "saves", "s1"), { recursive: true, mode: 0o755 });
  writeFileSync(join(dataDir, "blobs", "saves", "s1", "old.tar.gz"), "x", { mode: 0o644 });
  mkdirSync(join(dataDir, "sessions", "brave-tiger-1234", "workspace"), { recursive: true, mode: 0o755 });
  writeFileSync(join(dataDir, "sessions", "brave-tiger-1234", "agent.log"), "log\n", { mode: 0o644 });
  writeFileSync(join(dataDir, "sessions", "brave-tiger-1234", "workspace", "script.sh"), "#!/bin/sh\n", { mode: 0o755 });
  return dataDir;
}

describe("data dir modes", () => {
  test("an existing loose data dir is tightened at start; new files, WAL and SHM included, are 0600", async () => {
    const dataDir = looseDataDir();
    let rogue: ReturnType<typeof rogueProvider> | undefined;
    const server: TestServer = await startTestServer({ dataDir, wrapProvider: (real) => (rogue = rogueProvider(real)) });
    cleanups.push(() => server.stop());
    // Some writes: a session, its agent, a save.
    const { label } = await server.owner.create({ command: ["sh"] });
    const agent = new RogueAgent(server.url, rogue?.tokens.get(label) as string);
    cleanups.push(() => agent.close());
    await agent.hello();
    agent.send({ type: "save_request", id: "save-0001", reason: "initial" });
    const target = await agent.next("save_target");
    const save = saveOf({ "a.txt": "saved" });
    expect((await fetch(new URL(`${target.url}/pack`, server.url), { method: "PUT", body: save.pack })).status).toBe(200);
    agent.send({ type: "save_done", id: "save-0001", root: save.root, size: 5, files: 1 });
    expect((await agent.next("save_result")).ok).toBe(true);
    const files = serverFiles(dataDir);
    for (const name of ["catty.db", "catty.db-wal", "catty.db-shm", "server-key", "master-key", "owner-token", "server.pid"]) {
      expect(files[name]).toBeDefined();
    }
    expect(Object.keys(files).some((k) => k.startsWith("blobs/vault/"))).toBe(true);
    expectPrivate(files);
    // The program's own files are left as they were.
    expect(mode(join(dataDir, "sessions", "brave-tiger-1234", "workspace", "script.sh"))).toBe("755");
  });

  test("catty-server itself (umask 077): every file it creates is private", async () => {
    const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-modes-bin-")));
    const port = freePort();
    const proc = Bun.spawn([process.execPath, join(import.meta.dir, "../../server/main.ts"), "--port", String(port), "--data-dir", dataDir], {
      env: { ...process.env, CATTY_LOG_LEVEL: "warn" },
      stdout: "ignore",
      stderr: "ignore",
    });
    cleanups.push(async () => {
      proc.kill();
      await proc.exited;
      killAgents(dataDir);
    });
    const url = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => null))?.ok, { timeoutMs: 15_000, what: "catty-server" });
    const token = readFileSync(join(dataDir, "owner-token"), "utf8").trim();
    const headers = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${url}/v1/sessions`, { method: "POST", headers, body: JSON.stringify({ command: ["sleep", "60"] }) });
      expect(res.status).toBe(201);
    }
    const upload = await fetch(`${url}/v1/uploads`, { method: "POST", headers: { Authorization: headers.Authorization }, body: "not really a tarball" });
    expect(upload.status).toBe(201);
    const files = serverFiles(dataDir);
    expect(files["catty.db-wal"]).toBeDefined();
    expect(files["catty.db-shm"]).toBeDefined();
    expect(Object.keys(files).some((k) => k.startsWith("blobs/uploads/"))).toBe(true);
    expect(Object.keys(files).some((k) => /^sessions\/[^/]+\/agent\.log$/.test(k))).toBe(true);
    expectPrivate(files);
  }, 30_000); // three sessions start, each a sandbox with a network and a uid of its own
});
