/**
 * Workspace saves: a generated workspace (100 MB in 20,000 files by default) saved through the
 * agent's real save path — `WorkspaceSaver` (the snapshot builder, the uploader over HTTP) — into
 * the server's real saves (`createSaves`, `createVault`: hash checks, encryption, packs, the
 * completeness check) on a disk blob store, served by `Bun.serve`. References in the same run:
 * `tar czf` of the tree plus a PUT of the archive to the same storage, and restic (Debian's
 * package, installed if missing; a local repository). Prints:
 *   (a) full save: catty, restic, tar czf + PUT — target catty ≤ restic;
 *   (b) one file changed: time and bytes added, catty and restic — targets ≤ 200 ms and < 0.1 %
 *       of the workspace;
 *   (c) unchanged tick: time of a periodic save the journal saw nothing in, and of a tick that
 *       lists the whole tree; restic's unchanged backup — target ≤ 50 ms;
 *   (d) restore (the tar stream into the safe extractor, timed in its process as the agent times
 *       it, without Bun's start), against `tar xzf`: a save's first, right after each full save
 *       (the server has read none of it; it knows where the blobs it stored are) — target ≤ tar
 *       xzf; and the same save again, as a second session from the same project is (the server
 *       kept the save's trees and where its blobs are), also against restic restore;
 *   (e) `catty new` in the workspace to the program's first output, through the compiled binaries
 *       (a real `catty-server`, sandboxed local sessions) under a PTY: the first time, and again
 *       with nothing changed — targets ≤ 3 s and ≤ 1 s;
 *   (f) the second session's agent once idle: CPU over `--idle-s` seconds and resident memory —
 *       targets ≤ 1 % of a core and ≤ 60 MB.
 *
 *   ./node_modules/.bin/bun bench/snapshot.ts [--files 20000] [--mb 100] [--rounds 3] [--idle-s 60] [--no-sessions | --only-sessions] [--agent-log]
 *
 * Everything lives in one temp directory that is removed at the end, also on failure or Ctrl+C.
 * Exits non-zero only when something fails, never because a target was missed.
 */
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { WorkspaceSaver, type ChangeLog, type SaveTransport } from "../agent/saver.ts";
import { createDiskBlobStore, handleBlobRequest } from "../server/blobs/disk.ts";
import { createUserToken, openStore } from "../server/startup.ts";
import { createSaves } from "../server/saves.ts";
import type { SessionRow } from "../server/store/types.ts";
import { ticketKey } from "../server/tickets.ts";
import { createVault } from "../server/vault/vault.ts";
import { formatBytes } from "../src/lib/archive.ts";
import { silentLog } from "../src/lib/log.ts";
import type { ServerToAgent } from "../src/protocol/index.ts";
import { createApiClient } from "../src/client/api.ts";
import { cleanup as cleanupBench, compiledBinaries, cpuSeconds, killProcessesUnder, memory, median, spawnInPty, startServerProcess } from "./harness.ts";
import { workspaceTree } from "../src/lib/tree.ts";

const URL_TTL_SEC = 15 * 60;

const { values } = parseArgs({
  options: {
    files: { type: "string", default: "20000" },
    mb: { type: "string", default: "100" },
    rounds: { type: "string", default: "3" },
    "idle-s": { type: "string", default: "60" },
    "no-sessions": { type: "boolean", default: false },
    "only-sessions": { type: "boolean", default: false },
    "agent-log": { type: "boolean", default: false },
  },
});
const FILES = Number(values.files);
const TOTAL_BYTES = Number(values.mb) * 1024 * 1024;
const ROUNDS = Math.max(1, Number(values.rounds));
const IDLE_S = Math.max(5, Number(values["idle-s"]));

const root = mkdtempSync(join(tmpdir(), "catty-bench-snapshot-"));
let server: ReturnType<typeof Bun.serve> | undefined;
const cleanup = (): void => {
  server?.stop(true);
  // The sessions' agents outlive their server by design (it may come back): they go here.
  killProcessesUnder(root);
  rmSync(root, { recursive: true, force: true });
};
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

// ── the workspace ─────────────────────────────────────────────────────────────────────────────

/** xorshift32: the same tree on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

const WORDS = (
  "const let function return import export from async await if else for while of new this class " +
  "extends interface type string number boolean null undefined true false value result error " +
  "config session workspace save archive server client agent stream buffer offset length path"
).split(" ");

/** Source-like text of about `size` bytes: words from a small vocabulary, so it compresses like code. */
function text(next: () => number, size: number): string {
  const parts: string[] = [];
  let len = 0;
  let line = 0;
  while (len < size) {
    const w = WORDS[next() % WORDS.length] as string;
    const sep = ++line % 12 === 0 ? ";\n" : next() % 5 === 0 ? `(${next() % 1000}) ` : " ";
    parts.push(w, sep);
    len += w.length + sep.length;
  }
  return parts.join("").slice(0, size);
}

function noise(next: () => number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  const words = new Uint32Array(out.buffer, 0, Math.floor(size / 4));
  for (let i = 0; i < words.length; i++) words[i] = next();
  return out;
}

/**
 * FILES files totalling TOTAL_BYTES: 70% of the bytes in small source-like files, 30% in a few
 * binary files (images, archives) that do not compress, in a tree of packages and modules.
 */
function generate(dir: string): { files: number; bytes: number; oneFile: string } {
  const next = rng(42);
  const binaries = Math.max(1, Math.round(FILES / 400));
  const texts = FILES - binaries;
  const textBytes = Math.round(TOTAL_BYTES * 0.7);
  const binBytes = TOTAL_BYTES - textBytes;
  let bytes = 0;
  let oneFile = "";
  for (let i = 0; i < texts; i++) {
    const rel = `packages/pkg-${i % 50}/src/mod-${Math.floor(i / 50) % 20}/file-${i}.ts`;
    mkdirSync(join(dir, rel, ".."), { recursive: true });
    // Sizes vary around the mean (half to one and a half times).
    const mean = textBytes / texts;
    const size = Math.max(1, Math.round(mean * (0.5 + (next() % 1000) / 1000)));
    writeFileSync(join(dir, rel), text(next, size));
    bytes += size;
    if (i === Math.floor(texts / 2)) oneFile = rel;
  }
  for (let i = 0; i < binaries; i++) {
    const rel = `assets/blob-${i}.bin`;
    mkdirSync(join(dir, "assets"), { recursive: true });
    const size = Math.round(binBytes / binaries);
    writeFileSync(join(dir, rel), noise(next, size));
    bytes += size;
  }
  return { files: FILES, bytes, oneFile };
}

// ── the storage and the server's saves ──────────────────────────────────────────────────────────

const store = await openStore({ dataDir: join(root, "server") });
await createUserToken(store, "owner");
const user = (await store.userByName("owner"))!;
const blobs = createDiskBlobStore({ dir: join(root, "blobs"), secret: "bench-secret-bench-secret-bench-secret" });
const master = crypto.getRandomValues(Buffer.alloc(32));
const saves = createSaves({
  store,
  blobs,
  vault: createVault({ store, blobs, master, log: silentLog }),
  ticketKey: ticketKey(master),
  log: silentLog,
  limits: { maxUploadBytes: 4 * 1024 ** 3, maxSaveBytes: 4 * 1024 ** 3, retentionDays: 30 },
  transferTtlMs: URL_TTL_SEC * 1000,
});
const row: SessionRow = {
  id: crypto.randomUUID(), label: "bench-save-0001", userId: user.id, status: "running", region: "local", provider: "local",
  command: ["sh"], cols: 80, rows: 24, agentTokenHash: crypto.randomUUID(), machine: null, createdAt: new Date().toISOString(),
  endedAt: null, exitCode: null, endReason: null, lastScreen: null, restoreKey: null, finalSave: null, idleTimeoutMs: 3_600_000,
  expiresAt: null, ending: null, attention: null, relayReplica: null, lastActivityAt: null,
};
await store.insertSession(row);
/** Bytes of every request body the server took (packs, queries; and the tar reference's PUT). */
let received = 0;
server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  maxRequestBodySize: 4 * 1024 ** 3,
  async fetch(req) {
    const url = new URL(req.url);
    if (url.pathname.startsWith("/v1/blobs/")) {
      const res = await handleBlobRequest(req, blobs, { maxPutBytes: 4 * 1024 ** 3 });
      if (req.method === "PUT" && res.ok) received += Number(req.headers.get("content-length") ?? 0);
      return res;
    }
    const m = /^\/v1\/vault\/([^/]+)\/(missing|pack|tar)$/.exec(url.pathname);
    try {
      // The agent's two control messages, for a saver in a process of its own.
      if (url.pathname === "/bench/target") return Response.json({ url: await transport.target(url.searchParams.get("id") as string, "initial") });
      if (url.pathname === "/bench/done") {
        const { id, ...stats } = (await req.json()) as { id: string; root: string; size: number; files: number };
        await transport.done(id, stats);
        return Response.json({ ok: true });
      }
      if (!m) return new Response("no such route", { status: 404 });
      const [, ticket, what] = m as unknown as [string, string, string];
      if (what === "tar") return new Response((await saves.readTar(ticket)).stream);
      const body = new Uint8Array(await req.arrayBuffer());
      received += body.length;
      if (what === "missing") return Response.json({ missing: await saves.missing(ticket, JSON.parse(new TextDecoder().decode(body)).hashes) });
      return Response.json(await saves.putPack(ticket, body));
    } catch (err) {
      return Response.json({ message: String(err) }, { status: 500 });
    }
  },
});
const base = `http://127.0.0.1:${server.port}`;

/** What the server does for an agent's save, without the WebSocket in between. */
const transport: SaveTransport = {
  target: async (id, reason) => {
    const t = (await saves.control(row, { type: "save_request", id, reason }, async () => {})) as Extract<ServerToAgent, { type: "save_target" }>;
    if (!t.url) throw new Error(t.error ?? "no target");
    return new URL(t.url, base).toString();
  },
  done: async (id, stats) => {
    const r = (await saves.control(row, { type: "save_done", id, ...stats }, async () => {})) as Extract<ServerToAgent, { type: "save_result" }>;
    if (!r.ok) throw new Error(r.error ?? "refused");
  },
};

/** The workspace journal as the agent has it: the bench records the one change it makes. */
const changes: Array<{ path: string; seq: number }> = [];
const journal: ChangeLog & { record(path: string): void } = {
  get seq() {
    return changes.length;
  },
  record(path: string) {
    changes.push({ path, seq: changes.length + 1 });
  },
  changesSince: (seq: number) => changes.filter((e) => e.seq > seq),
};

function saver(workspace: string): WorkspaceSaver {
  return new WorkspaceSaver({ tree: workspaceTree(workspace), transport, journal, log: silentLog, firstDelayMs: 1e9, intervalMs: 1e9 });
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

async function run(cmd: string[], env: Record<string, string> = {}): Promise<string> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (${code}): ${err.slice(0, 500)}`);
  return out;
}

/** The reference: `tar czf` of the tree into a file, then a presigned PUT to the same storage. */
async function tarSave(workspace: string, n: number): Promise<{ file: string; size: number }> {
  const file = join(root, `tar-${n}.tar.gz`);
  await run(["tar", "czf", file, "-C", workspace, "."]);
  const url = new URL(await blobs.presignPut(`saves/bench/tar-${n}.tar.gz`, URL_TTL_SEC), base);
  const res = await fetch(url, { method: "PUT", body: Bun.file(file), headers: { "Content-Type": "application/gzip" } });
  if (!res.ok) throw new Error(`PUT answered ${res.status}`);
  return { file, size: Bun.file(file).size };
}

/** restic, installed from Debian's packages when missing (null when that is impossible). */
async function resticBin(): Promise<string | null> {
  if (Bun.which("restic")) return "restic";
  console.log("  installing restic (Debian package) for the reference…");
  const p = Bun.spawn(["apt-get", "install", "-y", "restic"], { stdout: "ignore", stderr: "ignore" });
  return (await p.exited) === 0 && Bun.which("restic") ? "restic" : null;
}

const RESTIC_ENV = { RESTIC_PASSWORD: "bench", RESTIC_CACHE_DIR: join(root, "restic-cache") };

/** Bytes a restic backup added, from its JSON summary. */
async function resticBackup(repo: string, workspace: string): Promise<number> {
  const out = await run(["restic", "-r", repo, "backup", "--json", "-q", workspace], RESTIC_ENV);
  const summary = out.trim().split("\n").map((l) => JSON.parse(l) as { message_type?: string; data_added?: number }).find((l) => l.message_type === "summary");
  return summary?.data_added ?? NaN;
}

/**
 * (e) and (f): `catty new` in `workspace` twice through the compiled binaries, timed to the
 * program's first output; then the second session's agent, idle.
 */
async function sessions(workspace: string): Promise<{ firstMs: number; secondMs: number; cpuPct: number; rssMb: number }> {
  const bins = await compiledBinaries();
  const dataDir = join(root, "catty-server");
  const server = await startServerProcess(dataDir, { bin: bins.server, env: values["agent-log"] ? { CATTY_LOG_LEVEL: "info" } : {} });
  const api = createApiClient(server.url, server.token);
  const home = join(root, "catty-home");
  mkdirSync(home, { recursive: true });
  const READY = "CATTY-BENCH-READY";
  const start = async (): Promise<number> => {
    let seen = "";
    let ready: (() => void) | undefined;
    const shown = new Promise<void>((resolve) => (ready = resolve));
    const t0 = performance.now();
    if (values["agent-log"]) console.log(`${new Date().toISOString()} catty new`);
    // As a user runs it: with sync-back (the default) into the project directory.
    spawnInPty([bins.catty, "new", "--", "sh", "-c", `echo ${READY}; exec sleep 3600`], {
      cwd: workspace,
      env: { ...process.env, CATTY_API_ADDR: server.url, CATTY_TOKEN: server.token, CATTY_HOME: home, CATTY_NO_UPDATE_CHECK: "1" },
      onOutput: (data) => {
        seen = (seen + new TextDecoder().decode(data)).slice(-4096);
        if (seen.includes(READY)) ready?.();
      },
    });
    const timeout = Bun.sleep(120_000).then(() => {
      throw new Error(`catty new did not show the program within 120 s; the terminal shows: ${seen.slice(-500)}`);
    });
    await Promise.race([shown, timeout]);
    return performance.now() - t0;
  };
  const firstMs = await start();
  const secondMs = await start();
  const label = (await api.list())[0]?.label as string;
  if (values["agent-log"]) console.log(readFileSync(join(dataDir, "sessions", label, "agent.log"), "utf8"));
  const restored = /workspace restored.*"ms":(\d+)/.exec(readFileSync(join(dataDir, "sessions", label, "agent.log"), "utf8"))?.[1];
  if (restored) console.log(`  the second session's agent restored its workspace in ${restored} ms`);
  const agentPid = Number(readFileSync(join(dataDir, "sessions", label, "agent.pid"), "utf8").trim());
  // Idle: after its first save, and a little more.
  for (const deadline = Date.now() + 120_000; (await api.get(label)).saves.length === 0; ) {
    if (Date.now() > deadline) throw new Error("the second session made no save within 120 s");
    await Bun.sleep(500);
  }
  await Bun.sleep(5_000);
  const before = cpuSeconds([agentPid]);
  await Bun.sleep(IDLE_S * 1000);
  const cpuPct = ((cpuSeconds([agentPid]) - before) / IDLE_S) * 100;
  const mem = memory(agentPid);
  const rssMb = (mem?.rssKb ?? NaN) / 1024;
  // The executable's pages are RssShmem, not RssFile, when it lies in tmpfs (TMPDIR=/dev/shm).
  const exePages = (mem?.fileKb ?? NaN) + (mem?.shmemKb ?? NaN);
  console.log(`  the idle agent's memory: ${((mem?.anonKb ?? NaN) / 1024).toFixed(1)} MB its own (heap and the rest), ${(exePages / 1024).toFixed(1)} MB of its executable's pages`);
  return { firstMs, secondMs, cpuPct, rssMb };
}

const ms = (x: number): string => `${Math.round(x)} ms`;
const mark = (ok: boolean): string => (ok ? "ok" : "MISSED");

/** (a) to (d): saves through the server's saves in this process, against tar and restic. */
async function savesReport(workspace: string, generated: { files: number; bytes: number; oneFile: string }): Promise<void> {
  const gen = { value: generated };
  const agentSaver = join(root, "agent-saver.ts");
  const src = (path: string): string => JSON.stringify(join(import.meta.dir, "..", path));
  writeFileSync(
    agentSaver,
    [
      `import { WorkspaceSaver } from ${src("agent/saver.ts")};`,
      `import { silentLog } from ${src("src/lib/log.ts")};`,
      `import { workspaceTree } from ${src("src/lib/tree.ts")};`,
      "const [base, workspace] = process.argv.slice(2);",
      "const saver = new WorkspaceSaver({",
      "  tree: workspaceTree(workspace), log: silentLog, firstDelayMs: 1e9, intervalMs: 1e9,",
      "  transport: {",
      "    target: async (id) => ((await (await fetch(`${base}/bench/target?id=${id}`)).json()) as { url: string }).url,",
      "    done: async (id, stats) => {",
      "      const res = await fetch(`${base}/bench/done`, { method: \"POST\", body: JSON.stringify({ id, ...stats }) });",
      "      if (!res.ok) throw new Error(await res.text());",
      "    },",
      "  },",
      "});",
      "console.log(JSON.stringify(await saver.save(\"initial\")));",
    ].join("\n"),
  );
  const restic = await resticBin();

  const restorer = join(root, "restore.ts");
  writeFileSync(
    restorer,
    `import { restoreWorkspace } from ${JSON.stringify(join(import.meta.dir, "..", "agent", "restore.ts"))};\n` +
      "const started = performance.now();\n" +
      `await restoreWorkspace({ url: process.argv[2], size: null }, { serverUrl: process.argv[3], workspace: process.argv[4], stateDir: process.argv[5] });\n` +
      "console.log(performance.now() - started);\n",
  );
  mkdirSync(join(root, "restore-state"));
  // The server's side alone: the same stream read and thrown away (decrypting, checking, tar).
  const drainer = join(root, "drain.ts");
  writeFileSync(drainer, `const r = (await fetch(new URL(process.argv[2], process.argv[3] + "/"))).body!.getReader();\nwhile (!(await r.read()).done);\n`);
  /**
   * A restore into `dest` and a tar xzf of `tarFile` beside it, each after a sync (the one before
   * does not slow it). The restore is timed inside its process, as in the agent (which is running
   * when it restores): Bun's start and the loading of the modules are not counted.
   */
  const restoreAndXzf = async (url: string, tarFile: string, name: string): Promise<{ catty: number; xzf: number }> => {
    await run(["sync"]);
    const catty = Number(await run([process.execPath, restorer, url, base, join(root, `catty-${name}`), join(root, "restore-state")]));
    mkdirSync(join(root, `tar-${name}`));
    await run(["sync"]);
    const xzf = (await timed(() => run(["tar", "xzf", tarFile, "-C", join(root, `tar-${name}`)]))).ms;
    return { catty, xzf };
  };

  // Warm the page cache so the first measured round is not the only one reading from disk.
  await tarSave(workspace, 0);

  const saveMs: number[] = [];
  const tarMs: number[] = [];
  const resticMs: number[] = [];
  const firstCatMs: number[] = [];
  const firstXzfMs: number[] = [];
  let tarFile = "";
  for (let round = 1; round <= ROUNDS; round++) {
    // A fresh user store each round, so every round stores everything.
    const fresh = await store.createUser(`bench-${round}`);
    row.userId = fresh.id;
    // As an agent does it: the saver in a process of its own, the server's saves in this one.
    const r = await timed(() => run([process.execPath, agentSaver, base, workspace]));
    if (!r.value.includes('"stored"')) throw new Error(`full save: ${r.value}`);
    saveMs.push(r.ms);
    const t = await timed(() => tarSave(workspace, round));
    tarMs.push(t.ms);
    tarFile = t.value.file;
    // The save's first restore: the server has read none of it yet (its trees are read and
    // decoded now); where its blobs are, it knows from storing them, as for `catty new`.
    const first = await saves.restoreFor({ ...row, restoreKey: (await store.listSaves(row.id))[0]?.key ?? null });
    if (!first) throw new Error("no save to restore");
    const firstRead = await restoreAndXzf(first.url, tarFile, `first-${round}`);
    firstCatMs.push(firstRead.catty);
    firstXzfMs.push(firstRead.xzf);
    rmSync(join(root, `catty-first-${round}`), { recursive: true, force: true });
    rmSync(join(root, `tar-first-${round}`), { recursive: true, force: true });
    if (restic) {
      const repo = join(root, `restic-${round}`);
      await run(["restic", "init", "-r", repo], RESTIC_ENV);
      resticMs.push((await timed(() => resticBackup(repo, workspace))).ms);
    }
    console.log(
      `  round ${round}: catty ${ms(r.ms)}, tar czf + PUT ${ms(t.ms)}${restic ? `, restic ${ms(resticMs.at(-1) as number)}` : ""}; ` +
        `first restore: catty ${ms(firstRead.catty)}, tar xzf ${ms(firstRead.xzf)}`,
    );
  }

  // (b), (c), (d) with one saver, as the agent keeps it across its schedule.
  const s = saver(workspace);
  const first = await s.save("initial");
  if (first.kind !== "stored") throw new Error(`save: ${JSON.stringify(first)}`);
  const quiet = await timed(() => s.save("periodic"));
  if (quiet.value.kind !== "unchanged") throw new Error(`unchanged tree: ${JSON.stringify(quiet.value)}`);
  let listed = quiet;
  for (let i = 0; i < 9; i++) listed = await timed(() => s.save("periodic"));

  appendFileSync(join(workspace, gen.value.oneFile), "\n// one more line\n");
  journal.record(gen.value.oneFile);
  const before = received;
  const changed = await timed(() => s.save("periodic"));
  if (changed.value.kind !== "stored") throw new Error(`one file changed: ${JSON.stringify(changed.value)}`);
  const changedBytes = changed.value.added;
  const changedWire = received - before;

  let resticOne: { ms: number; added: number } | null = null;
  let resticQuiet = NaN;
  let resticRestore = NaN;
  if (restic) {
    const repo = join(root, `restic-${ROUNDS}`);
    const one = await timed(() => resticBackup(repo, workspace));
    resticOne = { ms: one.ms, added: one.value };
    resticQuiet = (await timed(() => resticBackup(repo, workspace))).ms;
    const dest = join(root, "restic-restore");
    resticRestore = (await timed(() => run(["restic", "-r", repo, "restore", "latest", "--target", dest], RESTIC_ENV))).ms;
  }

  // (d) restore as the agent does it (its own process: the agent's restore, streaming the save
  // from the server's tar URL into the extractor); against tar xzf of the tar.gz.
  const source = await saves.restoreFor({ ...row, restoreKey: (await store.listSaves(row.id))[0]?.key ?? null });
  if (!source) throw new Error("no save to restore");
  const streamMs: number[] = [];
  const catMs: number[] = [];
  const xzfMs: number[] = [];
  // Rounds take turns, each into a new directory: how fast a file system takes new files varies
  // from one second to the next on a shared disk, and both sides should see the same spells.
  for (let i = 0; i < ROUNDS; i++) {
    streamMs.push((await timed(() => run([process.execPath, drainer, source.url, base]))).ms);
    const again = await restoreAndXzf(source.url, tarFile, `restore-${i}`);
    catMs.push(again.catty);
    xzfMs.push(again.xzf);
    console.log(`  restore round ${i + 1}: catty ${ms(catMs[i]!)}, tar xzf ${ms(xzfMs[i]!)}, the server's stream alone ${ms(streamMs[i]!)}`);
  }
  const catRestore = { ms: median(catMs) };
  const tarRestore = { ms: median(xzfMs) };
  const streamOnly = { ms: median(streamMs) };

  const total = gen.value.bytes;
  console.log("");
  console.log(`workspace: ${gen.value.files.toLocaleString("en-US")} files, ${formatBytes(total)}; full saves: median of ${ROUNDS} rounds`);
  const full = median(saveMs);
  const rFull = restic ? median(resticMs) : NaN;
  console.log(`(a) full save       catty ${ms(full)}   restic ${restic ? ms(rFull) : "n/a"}   tar czf + PUT ${ms(median(tarMs))}`);
  if (restic) console.log(`    catty/restic ${(full / rFull).toFixed(2)} (target ≤ 1) ${mark(full <= rFull)}`);
  console.log(
    `(b) one file changed catty ${ms(changed.ms)}, ${formatBytes(changedBytes)} stored (${((100 * changedBytes) / total).toFixed(4)} % of the workspace; ` +
      `${formatBytes(changedWire)} sent)` +
      (resticOne ? `   restic ${ms(resticOne.ms)}, ${formatBytes(resticOne.added)} added` : ""),
  );
  console.log(`    targets ≤ 200 ms ${mark(changed.ms <= 200)}, < 0.1 % ${mark(changedBytes < total / 1000)}`);
  console.log(`(c) unchanged tick   catty ${ms(quiet.ms)} (journal quiet)   ${ms(listed.ms)} (every tenth tick: lists the tree)   restic ${restic ? ms(resticQuiet) : "n/a"}`);
  console.log(`    target ≤ 50 ms ${mark(quiet.ms <= 50)}`);
  const firstCat = median(firstCatMs);
  const firstXzf = median(firstXzfMs);
  console.log(`(d) restore, a save's first (median of ${ROUNDS}) catty ${ms(firstCat)}   tar xzf ${ms(firstXzf)}`);
  console.log(`    catty/tar xzf ${(firstCat / firstXzf).toFixed(2)} (target ≤ 1) ${mark(firstCat <= firstXzf)}`);
  console.log(
    `    again (the server kept what it read, as for a second session from the same project; median of ${ROUNDS}) catty ${ms(catRestore.ms)}   ` +
      `tar xzf ${ms(tarRestore.ms)}   restic ${restic ? ms(resticRestore) : "n/a"}: ${(catRestore.ms / tarRestore.ms).toFixed(2)}`,
  );
  console.log(`    of which the server's stream alone (read and discarded) ${ms(streamOnly.ms)}`);
}

// ── the run ───────────────────────────────────────────────────────────────────────────────────

try {
  const workspace = join(root, "workspace");
  console.log(`Generating ${FILES.toLocaleString("en-US")} files, ${formatBytes(TOTAL_BYTES)} in ${workspace}…`);
  const gen = await timed(async () => generate(workspace));
  console.log(`  done in ${ms(gen.ms)} (${cpus().length} CPUs)`);
  if (!values["only-sessions"]) await savesReport(workspace, gen.value);
  if (!values["no-sessions"]) {
    console.log("");
    console.log(`Sessions through the compiled binaries (idle measured over ${IDLE_S} s)…`);
    const r = await sessions(workspace);
    console.log(`(e) catty new to the program: first ${ms(r.firstMs)} (target ≤ 3000) ${mark(r.firstMs <= 3000)}, unchanged ${ms(r.secondMs)} (target ≤ 1000) ${mark(r.secondMs <= 1000)}`);
    console.log(`(f) idle agent: ${r.cpuPct.toFixed(2)} % of a core (target ≤ 1) ${mark(r.cpuPct <= 1)}, ${r.rssMb.toFixed(1)} MB resident (target ≤ 60) ${mark(r.rssMb <= 60)}`);
  }
} catch (err) {
  console.error(`bench failed: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
} finally {
  await cleanupBench();
  cleanup();
  store.close();
}
