/**
 * Plumbing shared by the benchmarks: a registry of things to undo (run last first, also on
 * failure or Ctrl+C), deadlines, processes and their leftovers, a real `catty-server` process,
 * and the statistics the benches print. Importing it starts nothing.
 */
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort } from "../test/helpers/ports.ts";

export { freePort };

// ── cleaning up ───────────────────────────────────────────────────────────────────────────────

/** Things to undo, last first. */
export const cleanups: Array<{ what: string; run: () => Promise<unknown> | unknown }> = [];
let cleaning: Promise<void> | null = null;

/** Runs every cleanup (last first, each within 30 s); later calls get the same promise. */
export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await withDeadline(Promise.resolve(c.run()), 30_000, `cleanup: ${c.what}`);
      } catch (err) {
        console.error(`cleanup failed (${c.what}): ${(err as Error).message}`);
      }
    }
  })();
  return cleaning;
}

/**
 * Runs a bench's `main` with an overall deadline, cleaning up on SIGINT/SIGTERM, when it gives up
 * and when it ends; exits 0, or 1 when `main` failed (128 + the signal's number after a signal).
 */
export async function runBench(name: string, overallMs: number, main: () => Promise<void>): Promise<never> {
  const overall = setTimeout(() => {
    console.error(`${name}: gave up after ${overallMs / 60_000} min`);
    void cleanup().finally(() => process.exit(1));
  }, overallMs);
  for (const [signal, number] of [["SIGINT", 2], ["SIGTERM", 15]] as const) {
    process.on(signal, () => {
      console.error(`${name}: ${signal}, cleaning up`);
      void cleanup().finally(() => process.exit(128 + number));
    });
  }

  let code = 0;
  try {
    await main();
  } catch (err) {
    // After Ctrl+C the run fails as its processes go away; that is not news.
    if (!cleaning) console.error(`${name} failed: ${(err as Error).message}`);
    code = 1;
  }
  await cleanup();
  clearTimeout(overall);
  process.exit(code);
}

/** `p`, or a rejection naming `what` once `ms` have passed without it settling. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A new temp directory (`prefix` + random) for everything a bench starts, removed at cleanup after
 * whatever process still runs under it has been killed.
 */
export function benchTempDir(prefix: string): string {
  const tmp = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push({ what: "temp dir", run: () => rmSync(tmp, { recursive: true, force: true }) });
  cleanups.push({ what: "leftover session processes", run: () => killProcessesUnder(tmp) });
  return tmp;
}

// ── processes ─────────────────────────────────────────────────────────────────────────────────

/** SIGTERM, then SIGKILL when it is still there after 3 s; resolves once it has exited. */
export async function killAndWait(proc: Subprocess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const gone = await Promise.race([proc.exited.then(() => true), Bun.sleep(3_000).then(() => false)]);
  if (!gone) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

/**
 * Safety net for a session that would not stop: the local provider starts agents detached, in
 * their workspace under `dir`, so whatever still runs there is ours. Linux only (reads /proc).
 */
export function killProcessesUnder(dir: string): void {
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((p) => /^\d+$/.test(p));
  } catch {
    return;
  }
  for (const pid of pids) {
    let cwd: string;
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      continue;
    }
    if (cwd !== dir && !cwd.startsWith(`${dir}/`)) continue;
    console.error(`killing leftover process ${pid} (cwd ${cwd})`);
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** Waits (up to 10 s) until `port` on loopback takes a TCP connection; fails if `proc` exits first. */
export async function waitForPort(port: number, proc: Subprocess, name: string, log: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}:\n${log()}`);
    try {
      const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      s.end();
      return;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error(`${name} did not listen on port ${port} within 10 s:\n${log()}`);
}

// ── a real catty-server ───────────────────────────────────────────────────────────────────────

export interface ServerProcessOptions {
  /** Added to the server's environment (which has CATTY_LOG_LEVEL=warn). */
  env?: Record<string, string>;
  /**
   * When the server counts as up: its `/healthz` answers, within 15 s (the default); or its port
   * takes a TCP connection, within 10 s.
   */
  ready?: "healthz" | "port";
  /** The error when `/healthz` did not answer in time. */
  notReadyMessage?: string;
}

/**
 * `server/main.ts serve` as its own process (as the CLI finds it in real use) on a free loopback
 * port, with `dataDir` as its data dir and its output on ours; registered for cleanup. Resolves
 * once it is up, with its owner token.
 */
export async function startServerProcess(
  dataDir: string,
  opts: ServerProcessOptions = {},
): Promise<{ url: string; port: number; token: string }> {
  const port = freePort();
  const entry = join(import.meta.dir, "..", "server", "main.ts");
  const proc = Bun.spawn([process.execPath, entry, "serve", "--port", String(port), "--data-dir", dataDir], {
    stdin: "ignore",
    stdout: "inherit",
    stderr: "inherit",
    env: { ...process.env, CATTY_LOG_LEVEL: "warn", ...opts.env },
  });
  cleanups.push({ what: "catty server process", run: () => killAndWait(proc) });
  const url = `http://127.0.0.1:${port}`;
  if (opts.ready === "port") {
    await waitForPort(port, proc, "catty-server", () => "");
  } else {
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`catty-server exited with ${proc.exitCode}`);
      if ((await fetch(`${url}/healthz`).catch(() => null))?.ok) break;
      if (Date.now() > deadline) throw new Error(opts.notReadyMessage ?? "catty-server did not start within 15 s");
      await Bun.sleep(50);
    }
  }
  return { url, port, token: readFileSync(join(dataDir, "owner-token"), "utf8").trim() };
}

// ── options and statistics ────────────────────────────────────────────────────────────────────

/**
 * Options (as `parseArgs` gives them) read as whole numbers, each at least its minimum in `mins`;
 * throws for the first, in the order of `mins`, that is not.
 */
export function wholeNumbers<K extends string>(
  values: Record<NoInfer<K>, string | undefined>,
  mins: Record<K, number>,
): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const name of Object.keys(mins) as K[]) {
    const [n, min] = [Number(values[name]), mins[name]];
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number ≥ ${min}`);
    out[name] = n;
  }
  return out;
}

/** The nearest-rank `p`th percentile of `sorted` (ascending). */
export function percentile(sorted: number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

/** The median of `xs` (in any order): the middle value, or the mean of the two middle ones. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
