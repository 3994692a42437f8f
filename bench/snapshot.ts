/**
 * Workspace saves: a generated workspace (100 MB in 20,000 files by default) saved through the
 * agent's real save path — `WorkspaceSaver` (fingerprint scan, `packToFile`, PUT to a presigned
 * URL, the server's completeness check) — into a real disk blob store served by `Bun.serve` with
 * `handleBlobRequest`, against `tar czf` of the same tree to a file and the same PUT to the same
 * storage. Prints, in one run:
 *   (a) full save vs tar czf (median of the rounds; the two take turns) — target ratio ≤ 1.3;
 *   (b) bytes uploaded by a save of the unchanged tree (counted at the storage) — target 0;
 *   (c) a save after one file changed.
 *
 *   ./node_modules/.bin/bun bench/snapshot.ts [--files 20000] [--mb 100] [--rounds 3]
 *
 * Everything lives in one temp directory that is removed at the end, also on failure or Ctrl+C.
 * Exits non-zero only when something fails, never because a target was missed.
 */
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { WorkspaceSaver, type SaveTransport } from "../agent/saver.ts";
import { createDiskBlobStore, handleBlobRequest } from "../server/blobs/disk.ts";
import { formatBytes } from "../src/lib/archive.ts";
import { silentLog } from "../src/lib/log.ts";
import { median } from "./harness.ts";

const TARGET_RATIO = 1.3;
const URL_TTL_SEC = 15 * 60;

const { values } = parseArgs({
  options: {
    files: { type: "string", default: "20000" },
    mb: { type: "string", default: "100" },
    rounds: { type: "string", default: "3" },
  },
});
const FILES = Number(values.files);
const TOTAL_BYTES = Number(values.mb) * 1024 * 1024;
const ROUNDS = Math.max(1, Number(values.rounds));

const root = mkdtempSync(join(tmpdir(), "catty-bench-snapshot-"));
let server: ReturnType<typeof Bun.serve> | undefined;
const cleanup = (): void => {
  server?.stop(true);
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

// ── the storage ───────────────────────────────────────────────────────────────────────────────

const store = createDiskBlobStore({ dir: join(root, "blobs"), secret: "bench-secret-bench-secret-bench-secret" });
/** Bytes of every PUT the storage accepted. */
let received = 0;
server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  maxRequestBodySize: 4 * 1024 ** 3,
  async fetch(req) {
    const res = await handleBlobRequest(req, store, { maxPutBytes: 4 * 1024 ** 3 });
    if (req.method === "PUT" && res.ok) received += Number(req.headers.get("content-length") ?? 0);
    return res;
  },
});
const base = `http://127.0.0.1:${server.port}`;

/** What the server does for an agent's save: a presigned PUT, then a check of the stored size. */
const transport: SaveTransport = {
  target: async (id) => new URL(await store.presignPut(`saves/bench/${id}.tar.gz`, URL_TTL_SEC), base).toString(),
  done: async (id, stats) => {
    const st = await store.stat(`saves/bench/${id}.tar.gz`);
    if (st?.size !== stats.size) throw new Error(`stored ${st?.size} bytes, expected ${stats.size}`);
  },
};

function saver(workspace: string): WorkspaceSaver {
  const stateDir = join(root, "agent-state");
  mkdirSync(stateDir, { recursive: true });
  return new WorkspaceSaver({ workspace, stateDir, transport, log: silentLog, firstDelayMs: 1e9, intervalMs: 1e9 });
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

/** The reference: `tar czf` of the tree into a file, then the same presigned PUT. */
async function tarSave(workspace: string, n: number): Promise<number> {
  const file = join(root, `tar-${n}.tar.gz`);
  const tar = Bun.spawn(["tar", "czf", file, "-C", workspace, "."], { stdout: "ignore", stderr: "pipe" });
  if ((await tar.exited) !== 0) throw new Error(`tar czf failed: ${await new Response(tar.stderr).text()}`);
  const url = new URL(await store.presignPut(`saves/bench/tar-${n}.tar.gz`, URL_TTL_SEC), base);
  const res = await fetch(url, { method: "PUT", body: Bun.file(file), headers: { "Content-Type": "application/gzip" } });
  if (!res.ok) throw new Error(`PUT answered ${res.status}`);
  const size = Bun.file(file).size;
  rmSync(file);
  return size;
}

const ms = (x: number): string => `${Math.round(x)} ms`;

// ── the run ───────────────────────────────────────────────────────────────────────────────────

try {
  const workspace = join(root, "workspace");
  console.log(`Generating ${FILES.toLocaleString("en-US")} files, ${formatBytes(TOTAL_BYTES)} in ${workspace}…`);
  const gen = await timed(async () => generate(workspace));
  console.log(`  done in ${ms(gen.ms)} (${cpus().length} CPUs)`);

  // Warm the page cache so the first measured round is not the only one reading from disk.
  await tarSave(workspace, 0);

  const saveMs: number[] = [];
  const tarMs: number[] = [];
  let saveSize = 0;
  let tarSize = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    const order = round % 2 === 1 ? ["save", "tar"] : ["tar", "save"];
    for (const which of order) {
      if (which === "save") {
        const r = await timed(() => saver(workspace).save("initial"));
        if (r.value.kind !== "stored") throw new Error(`full save: ${JSON.stringify(r.value)}`);
        saveMs.push(r.ms);
        saveSize = r.value.size;
      } else {
        const r = await timed(() => tarSave(workspace, round));
        tarMs.push(r.ms);
        tarSize = r.value;
      }
    }
    console.log(`  round ${round}: save ${ms(saveMs.at(-1) as number)}, tar czf ${ms(tarMs.at(-1) as number)}`);
  }

  // (b) and (c) with one saver, as the agent keeps it across its schedule.
  const s = saver(workspace);
  const first = await s.save("initial");
  if (first.kind !== "stored") throw new Error(`save: ${JSON.stringify(first)}`);
  const before = received;
  const unchanged = await timed(() => s.save("periodic"));
  if (unchanged.value.kind !== "unchanged") throw new Error(`unchanged tree: ${JSON.stringify(unchanged.value)}`);
  const unchangedBytes = received - before;

  appendFileSync(join(workspace, gen.value.oneFile), "\n// one more line\n");
  const changed = await timed(() => s.save("periodic"));
  if (changed.value.kind !== "stored") throw new Error(`one file changed: ${JSON.stringify(changed.value)}`);

  const ratio = median(saveMs) / median(tarMs);
  console.log("");
  console.log(`workspace: ${gen.value.files.toLocaleString("en-US")} files, ${formatBytes(gen.value.bytes)}; ${ROUNDS} rounds, medians`);
  console.log(`(a) full save     ${ms(median(saveMs)).padStart(9)}  → ${formatBytes(saveSize)} stored`);
  console.log(`    tar czf + PUT ${ms(median(tarMs)).padStart(9)}  → ${formatBytes(tarSize)} stored`);
  console.log(`    ratio save/tar ${ratio.toFixed(2)} (target ≤ ${TARGET_RATIO}) ${ratio <= TARGET_RATIO ? "ok" : "MISSED"}`);
  console.log(
    `(b) unchanged tree: ${unchangedBytes} bytes uploaded (target 0) ${unchangedBytes === 0 ? "ok" : "MISSED"}; ` +
      `the check took ${ms(unchanged.ms)}`,
  );
  console.log(`(c) one file changed: save ${ms(changed.ms)} → ${formatBytes(changed.value.size)} stored`);
} catch (err) {
  console.error(`bench failed: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
} finally {
  cleanup();
}
