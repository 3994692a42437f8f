/**
 * Sync-back latency and throughput: a real server process and a real agent (started by the local
 * provider, running `cat`), and a client made of the CLI's own parts — `SessionLink` feeding a
 * `SyncBackWriter` in a temp directory, wired as `catty connect` wires them. Measured:
 *
 * - latency: from just before a small file is written into the session's workspace (on disk,
 *   `<data-dir>/sessions/<label>/workspace`, where the agent's watcher sees it as it would see the
 *   program's write) until that file, complete, has been renamed into place locally (the writer's
 *   own count of written files, checked against the content) — p50 and p99 over `--writes`
 *   sequential writes; target p50 < 100 ms on loopback;
 * - throughput: one `--mb` MB file (incompressible) moved into the workspace in one rename, until
 *   it is complete locally, as MB/s (median of `--big-rounds`); target ≥ 50 MB/s. Also the same
 *   with the file written into the workspace in place (the agent sees it grow), and, as a
 *   reference measured in the same run, `cp` of the same file on this disk.
 *
 *   ./node_modules/.bin/bun bench/syncback.ts [--writes 200] [--warmup 10] [--mb 50] [--big-rounds 3]
 *
 * The agent's periodic saves are pushed out of the run (CATTY_SAVE_FIRST_MS/INTERVAL_MS), so they
 * do not compete for the disk. The file stays at or under the default sync-back cap of 50 MB
 * (50,000,000 bytes). Cleans up everything it started, also on failure or Ctrl+C, and exits
 * non-zero only when something failed, never because a target was missed.
 */
import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createApiClient } from "../src/client/api.ts";
import { silentLog } from "../src/lib/log.ts";
import { SessionLink } from "../src/client/session-link.ts";
import { loadSyncState, SyncBackWriter, syncStateFile } from "../src/client/sync-back.ts";
import { benchTempDir, cleanups, percentile, runBench, startServerProcess, wholeNumbers, withDeadline } from "./harness.ts";

const TARGET_P50_MS = 100;
const TARGET_MB_S = 50;
const MB = 1_000_000;
const SMALL_TIMEOUT_MS = 10_000;
const BIG_TIMEOUT_MS = 120_000;
const READY_TIMEOUT_MS = 30_000;
const OVERALL_TIMEOUT_MS = 10 * 60_000;

// ── the client: SessionLink + SyncBackWriter, as `catty connect` wires them ───────────────────

/** Tells whoever waits when the writer has put another file in place. */
class Arrivals {
  private waiter: { check: () => boolean; resolve: (at: number) => void } | null = null;

  constructor(writer: SyncBackWriter) {
    // The writer counts a file as written right after its rename into place: that is the moment.
    const summary = writer.summary;
    let written = summary.written;
    Object.defineProperty(summary, "written", {
      get: () => written,
      set: (v: number) => {
        written = v;
        const at = performance.now();
        if (this.waiter?.check()) {
          const w = this.waiter;
          this.waiter = null;
          w.resolve(at);
        }
      },
    });
  }

  /** Resolves with the time of the first placement after which `check()` holds. */
  until(check: () => boolean, ms: number, what: string): Promise<number> {
    return withDeadline(new Promise<number>((resolve) => (this.waiter = { check, resolve })), ms, what).finally(
      () => (this.waiter = null),
    );
  }
}

const sha256 = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

function readOrNull(path: string): Buffer | null {
  try {
    return readFileSync(path);
  } catch {
    return null;
  }
}

/** The lower of the two middle values for an even count (not `median` from the harness, which averages them). */
const median = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50);

/** `n` incompressible bytes, written to `path` in 4 MB pieces. */
function writeNoise(path: string, n: number): string {
  const hash = createHash("sha256");
  const fd = openSync(path, "w");
  try {
    const piece = new Uint8Array(4 * 1024 * 1024);
    for (let left = n; left > 0; ) {
      const len = Math.min(piece.length, left);
      for (let at = 0; at < len; at += 65_536) crypto.getRandomValues(piece.subarray(at, Math.min(at + 65_536, len)));
      writeSync(fd, piece, 0, len);
      hash.update(piece.subarray(0, len));
      left -= len;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      writes: { type: "string", default: "200" },
      warmup: { type: "string", default: "10" },
      mb: { type: "string", default: "50" },
      "big-rounds": { type: "string", default: "3" },
    },
  });
  const { writes, warmup, mb, "big-rounds": bigRounds } = wholeNumbers(values, { writes: 1, warmup: 0, mb: 1, "big-rounds": 1 });

  const tmp = benchTempDir("catty-bench-syncback-");
  const dataDir = join(tmp, "server");
  const local = join(tmp, "local");
  const scratch = join(tmp, "scratch");
  const home = join(tmp, "home");
  for (const d of [local, scratch, home]) mkdirSync(d, { recursive: true });

  const { url, token } = await startServerProcess(dataDir, {
    // Saves would read the whole workspace in the middle of the measurement.
    env: { CATTY_SAVE_FIRST_MS: String(3_600_000), CATTY_SAVE_INTERVAL_MS: String(3_600_000) },
    notReadyMessage: "catty-server did not answer within 15 s",
  });
  const api = createApiClient(url, token);
  const session = await withDeadline(api.create({ command: ["cat"], cols: 80, rows: 24 }), 30_000, "create a session");
  cleanups.push({ what: `session ${session.label}`, run: async () => void (await api.stop(session.label)) });
  const workspace = join(dataDir, "sessions", session.label, "workspace");

  const stateFile = syncStateFile(home, session.label, local);
  const writer = new SyncBackWriter(await loadSyncState(stateFile, local), stateFile, silentLog);
  const arrivals = new Arrivals(writer);
  const link = new SessionLink(
    {
      url: api.attachUrl(session.label),
      token,
      mode: "interactive",
      offset: null,
      size: () => ({ cols: 80, rows: 24 }),
      autoReconnect: false,
      log: silentLog,
      syncPosition: () => writer.position,
    },
    {
      output() {},
      screen() {},
      status() {},
      sync: (event) => writer.event(event),
      syncBytes: (transfer, data) => writer.bytes(transfer, data),
    },
  );
  cleanups.push({ what: "client link", run: () => link.close() });
  let ended: string | null = null;
  void link.start().then((o) => {
    ended = o.kind === "error" ? o.error.message : o.kind;
  });
  const alive = (): void => {
    if (ended) throw new Error(`the client's link ended (${ended})`);
  };

  // Ready: the agent acknowledged sync-back, and a first file makes the round trip.
  await withDeadline(
    (async () => {
      while (!writer.active) {
        alive();
        await Bun.sleep(20);
      }
    })(),
    READY_TIMEOUT_MS,
    "the agent to acknowledge sync-back",
  );

  /** One small file: written into the workspace, until it is complete locally (ms). */
  let n = 0;
  const smallRound = async (): Promise<number> => {
    alive();
    const name = `small-${++n}.txt`;
    const content = Buffer.from(`sync-back latency probe ${n} ${"x".repeat(200)}\n`);
    const target = join(local, name);
    const wait = arrivals.until(() => readOrNull(target)?.equals(content) ?? false, SMALL_TIMEOUT_MS, `${name} to arrive`);
    const t0 = performance.now();
    writeFileSync(join(workspace, name), content);
    return (await wait) - t0;
  };
  await withDeadline(smallRound(), READY_TIMEOUT_MS, "the first file to arrive");
  for (let i = 0; i < warmup; i++) await smallRound();
  const samples: number[] = [];
  for (let i = 0; i < writes; i++) samples.push(await smallRound());
  const sorted = [...samples].sort((a, b) => a - b);
  const p50 = percentile(sorted, 50);
  const p99 = percentile(sorted, 99);

  // Throughput: one big file, appearing whole (rename) or written in place.
  const bytes = mb * MB;
  const source = join(scratch, "big.bin");
  const want = writeNoise(source, bytes);
  const bigRound = async (name: string, how: "rename" | "write"): Promise<number> => {
    alive();
    const target = join(local, name);
    const wait = arrivals.until(
      () => {
        const got = readOrNull(target);
        return got !== null && got.length === bytes && sha256(got) === want;
      },
      BIG_TIMEOUT_MS,
      `${name} (${mb} MB) to arrive`,
    );
    let t0: number;
    if (how === "rename") {
      const staged = join(workspace, `..${name}.staged`); // beside the workspace, same file system
      writeFileSync(staged, readFileSync(source));
      t0 = performance.now();
      renameSync(staged, join(workspace, name));
    } else {
      const data = readFileSync(source);
      t0 = performance.now();
      writeFileSync(join(workspace, name), data);
    }
    const ms = (await wait) - t0;
    rmSync(join(workspace, name));
    await withDeadline(
      (async () => {
        while (readOrNull(target) !== null) await Bun.sleep(10);
      })(),
      SMALL_TIMEOUT_MS,
      `${name} to be deleted locally`,
    );
    return bytes / MB / (ms / 1000);
  };
  const renamed: number[] = [];
  const inPlace: number[] = [];
  for (let r = 0; r < bigRounds; r++) {
    renamed.push(await bigRound(`big-renamed-${r}.bin`, "rename"));
    inPlace.push(await bigRound(`big-written-${r}.bin`, "write"));
  }

  // Reference: the same bytes copied on this disk.
  const copies: number[] = [];
  for (let r = 0; r < bigRounds; r++) {
    const t0 = performance.now();
    const cp = Bun.spawn(["cp", source, join(scratch, `copy-${r}.bin`)], { stdout: "ignore", stderr: "inherit" });
    if ((await cp.exited) !== 0) throw new Error("cp failed");
    copies.push(bytes / MB / ((performance.now() - t0) / 1000));
    rmSync(join(scratch, `copy-${r}.bin`));
  }
  await writer.flush();

  const ms = (v: number): string => `${v.toFixed(1)} ms`.padStart(11);
  const rate = (v: number): string => `${v.toFixed(0)} MB/s`.padStart(11);
  console.log(`${`sync-back latency (n=${writes})`.padEnd(34)}${"p50".padStart(11)}${"p99".padStart(11)}`);
  console.log(
    `${"write → complete locally".padEnd(34)}${ms(p50)}${ms(p99)}     (target p50 < ${TARGET_P50_MS} ms: ${p50 < TARGET_P50_MS ? "met" : "MISSED"})`,
  );
  console.log(`${`sync-back throughput (${mb} MB, median of ${bigRounds})`.padEnd(34)}${"MB/s".padStart(11)}`);
  console.log(
    `${"file renamed into the workspace".padEnd(34)}${rate(median(renamed))}     (target ≥ ${TARGET_MB_S} MB/s: ${median(renamed) >= TARGET_MB_S ? "met" : "MISSED"})`,
  );
  console.log(`${"file written in the workspace".padEnd(34)}${rate(median(inPlace))}     (write + sync, the agent sees it grow)`);
  console.log(`${"reference: cp on this disk".padEnd(34)}${rate(median(copies))}     (ratio sync/cp ${(median(renamed) / median(copies)).toFixed(2)})`);
  console.log(`(server in its own process, agent started by the local provider, loopback; MB = 10^6 bytes)`);
}

await runBench("syncback", OVERALL_TIMEOUT_MS, main);
