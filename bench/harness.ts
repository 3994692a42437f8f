/**
 * Plumbing shared by the benchmarks: a registry of things to undo (run last first, also on
 * failure or Ctrl+C), deadlines, processes and their leftovers, the compiled binaries, a real
 * `catty-server` process, commands under a PTY, per-process CPU and memory from /proc, and the
 * statistics the benches print. Importing it starts nothing.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { dlopen, FFIType, ptr } from "bun:ffi";
import { buildBinaries, type Binaries } from "../test/helpers/binaries.ts";
import { freePort } from "../test/helpers/ports.ts";

export { freePort, type Binaries };

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

/** Runs `cmd` to its end (killed after `timeoutMs`); its stdout and stderr together. */
export async function run(
  cmd: string[],
  opts: { timeoutMs: number; env?: Record<string, string> },
): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(cmd, {
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
    env: { ...process.env, ...opts.env },
    timeout: opts.timeoutMs,
    killSignal: "SIGKILL",
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, out: out + err };
}

/** Feeds every chunk of `stream` to `onChunk` until it ends; a broken pipe just ends it. */
export async function readAll(stream: ReadableStream<Uint8Array>, onChunk: (chunk: Uint8Array) => void): Promise<void> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      onChunk(value);
    }
  } catch {
    // the process went away
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

// ── the compiled binaries ─────────────────────────────────────────────────────────────────────

/**
 * `catty`, `catty-server` and `catty-agent` as users run them: the ones already in `dir` (say,
 * built from another checkout, to compare), or built by build.ts into a temp dir removed at exit.
 */
export async function compiledBinaries(dir?: string): Promise<Binaries> {
  if (!dir) return buildBinaries();
  const bins = { dir, catty: join(dir, "catty"), server: join(dir, "catty-server"), agent: join(dir, "catty-agent") };
  for (const f of [bins.catty, bins.server, bins.agent]) if (!existsSync(f)) throw new Error(`${f} not found`);
  return bins;
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
  /**
   * A compiled `catty-server` to run (its sessions then run the `catty-agent` beside it); default:
   * `server/main.ts` with this Bun (and the agent from source too).
   */
  bin?: string;
}

/**
 * `server/main.ts serve` as its own process (as the CLI finds it in real use) on a free loopback
 * port, with `dataDir` as its data dir and its output on ours; registered for cleanup. Resolves
 * once it is up, with its owner token.
 */
export async function startServerProcess(
  dataDir: string,
  opts: ServerProcessOptions = {},
): Promise<{ url: string; port: number; token: string; pid: number }> {
  const port = freePort();
  const server = opts.bin ? [opts.bin] : [process.execPath, join(import.meta.dir, "..", "server", "main.ts")];
  const proc = Bun.spawn([...server, "serve", "--port", String(port), "--data-dir", dataDir], {
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
  // A replica sharing another's database finds the owner there and writes no token.
  const tokenFile = join(dataDir, "owner-token");
  return { url, port, token: existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() : "", pid: proc.pid };
}

// ── commands under a PTY ──────────────────────────────────────────────────────────────────────

export interface PtyCommand {
  readonly pid: number;
  /** Writes to the PTY master, as keys typed into a terminal. */
  write(data: Uint8Array | string): void;
  /** Resolves with the exit code. */
  readonly exited: Promise<number>;
  /** Ends the command (SIGTERM, then SIGKILL) and closes the PTY. */
  stop(): Promise<void>;
}

/**
 * `argv` under a new PTY whose master this process holds, as a terminal emulator does; what the
 * command prints goes to `onOutput` with its arrival time (`performance.now()`). Registered for
 * cleanup.
 */
export function spawnInPty(
  argv: string[],
  opts: {
    cwd?: string;
    env?: Record<string, string | undefined>;
    cols?: number;
    rows?: number;
    onOutput(data: Uint8Array, at: number): void;
  },
): PtyCommand {
  const proc = Bun.spawn(argv, {
    cwd: opts.cwd,
    env: opts.env,
    terminal: {
      cols: opts.cols ?? 80,
      rows: opts.rows ?? 24,
      name: "xterm-256color",
      data: (_term, data) => opts.onOutput(data, performance.now()),
    },
  });
  const terminal = proc.terminal as Bun.Terminal;
  const stop = async (): Promise<void> => {
    await killAndWait(proc);
    if (!terminal.closed) terminal.close();
  };
  cleanups.push({ what: `${argv[0]} under a PTY`, run: stop });
  return {
    pid: proc.pid,
    write(data) {
      if (proc.exitCode !== null || terminal.closed) throw new Error(`${argv[0]} exited with ${proc.exitCode}`);
      terminal.write(data);
    },
    exited: proc.exited,
    stop,
  };
}

// ── processes in /proc (Linux) ────────────────────────────────────────────────────────────────

/** /proc counts CPU time in USER_HZ ticks, which Linux fixes at 100 per second on every architecture. */
const TICKS_PER_S = 100;

export interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  /** CPU seconds (user + system) the process used itself. */
  cpuS: number;
  /** CPU seconds its children used, those it has waited for. */
  reapedCpuS: number;
}

/** A file under /proc; null once the process is gone (or the kernel has no such file). */
function readProc(path: string): string | null {
  try {
    return readFileSync(`/proc/${path}`, "utf8");
  } catch {
    return null;
  }
}

/** One process's line of /proc/<pid>/stat; null once it is gone. */
export function procStat(pid: number): ProcStat | null {
  const line = readProc(`${pid}/stat`);
  if (line === null) return null;
  // The command name is in parentheses and may itself hold spaces or parentheses.
  const close = line.lastIndexOf(")");
  const f = line.slice(close + 2).split(" ").map(Number);
  const at = (i: number): number => f[i] ?? 0;
  return {
    pid,
    ppid: at(1),
    comm: line.slice(line.indexOf("(") + 1, close),
    cpuS: (at(11) + at(12)) / TICKS_PER_S,
    reapedCpuS: (at(13) + at(14)) / TICKS_PER_S,
  };
}

/** Every live descendant of `pid`, parents before their children. */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number): void => {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const task of tasks) {
      const children = readProc(`${p}/task/${task}/children`) ?? "";
      for (const c of children.split(" ").filter(Boolean).map(Number)) {
        out.push(c);
        visit(c);
      }
    }
  };
  visit(pid);
  return out;
}

/**
 * CPU seconds of a group of live processes: each one's own, plus what its waited-for children used
 * (so a shell's finished pipelines count; a live child is counted by itself, never twice).
 */
export function cpuSeconds(pids: number[]): number {
  let sum = 0;
  for (const pid of pids) {
    const st = procStat(pid);
    if (st) sum += st.cpuS + st.reapedCpuS;
  }
  return sum;
}

export interface Memory {
  /** VmRSS: resident memory, kB. */
  rssKb: number;
  /** Proportional set size: resident pages, each shared one divided among the processes sharing it. */
  pssKb: number;
  /** Of which anonymous (heap, stacks), file-backed (the executable's pages, shared) and shared memory. */
  anonKb: number;
  fileKb: number;
  shmemKb: number;
}

/** Resident memory of `pid` from /proc/<pid>/status; null once it is gone. */
export function memory(pid: number): Memory | null {
  const status = readProc(`${pid}/status`);
  if (status === null) return null;
  const rollup = readProc(`${pid}/smaps_rollup`) ?? "";
  const kb = (text: string, field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
  return {
    rssKb: kb(status, "VmRSS"),
    pssKb: kb(rollup, "Pss"),
    anonKb: kb(status, "RssAnon"),
    fileKb: kb(status, "RssFile"),
    shmemKb: kb(status, "RssShmem"),
  };
}

// ── the monotonic clock ───────────────────────────────────────────────────────────────────────

let clock: { read(): bigint } | null = null;

/**
 * CLOCK_MONOTONIC in ns, the clock every process on this machine shares (unlike
 * `process.hrtime`, which Bun counts from its own start). Linux only: libc's clock_gettime via FFI.
 */
export function monotonicNs(): bigint {
  clock ??= (() => {
    const libc = dlopen("libc.so.6", { clock_gettime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 } });
    const ts = new BigInt64Array(2);
    const at = ptr(ts);
    const CLOCK_MONOTONIC = 1;
    return {
      read: () => {
        libc.symbols.clock_gettime(CLOCK_MONOTONIC, at);
        return (ts[0] as bigint) * 1_000_000_000n + (ts[1] as bigint);
      },
    };
  })();
  return clock.read();
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
