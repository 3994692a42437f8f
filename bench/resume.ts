/**
 * Resume after a disconnect during heavy output: a client (`SessionLink`, the CLI's own link)
 * reaches a real server process through a TCP proxy; the session prints numbered lines at a fixed
 * rate; the proxy cuts the link for 5 s and restores it. Measured, per round:
 *
 * - reconnect → current: from the client's connection coming back (the proxy accepts it) until
 *   the client has everything an uninterrupted viewer attached straight to the server has — the
 *   figure with the target (< 100 ms on loopback);
 * - restore → reconnect: how long the client's backoff left the restored link unused (the CLI
 *   retries with backoff capped at 10 s, so after a 5 s cut the next attempt is up to ~1.2 s out);
 * - bytes lost: stream bytes the client never received (a ring overrun gives a screen instead),
 *   and bytes that differ from the uninterrupted viewer's stream (target 0 for both).
 *
 *   ./node_modules/.bin/bun bench/resume.ts [--rounds 3] [--cut-ms 5000] [--rate 1000000]
 *
 * `--rate` is the program's output in bytes per second (0: as fast as the terminal takes it).
 * Exact replay needs everything printed while the link is down to fit in the agent's ring
 * (8 MiB by default, CATTY_RING_BYTES), so above ~1.3 MB/s with a 5 s cut the client gets the
 * screen instead and the bench reports the bytes it skipped. Cleans up everything it started, also
 * on failure or Ctrl+C, and exits non-zero only when something failed.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createApiClient, type ApiClient } from "../src/client/api.ts";
import { TcpProxy } from "../test/helpers/proxy.ts";
import { Recorder } from "../test/helpers/recorder.ts";
import { cleanup, cleanups, median, startServerProcess, withDeadline } from "./harness.ts";

const TARGET_MS = 100;
const OVERALL_TIMEOUT_MS = 5 * 60_000;
const CATCH_UP_TIMEOUT_MS = 30_000;
const COLS = 100;
const ROWS = 30;

// ── plumbing ──────────────────────────────────────────────────────────────────────────────────

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ── the program and the clients ───────────────────────────────────────────────────────────────

/** Numbered 64-byte lines at `rate` bytes per second (0: as fast as stdout takes them). */
const PRINTER = `
const rate = Number(process.argv[2] ?? 0);
const pad = "x".repeat(50);
let n = 0;
const lines = (count) => {
  let s = "";
  for (let i = 0; i < count; i++) s += String(n++).padStart(12, "0") + " " + pad + "\\n";
  return s;
};
const write = (s) => new Promise((resolve) => (process.stdout.write(s) ? resolve() : process.stdout.once("drain", resolve)));
const started = performance.now();
let written = 0;
for (;;) {
  if (rate === 0) {
    await write(lines(1024));
    continue;
  }
  const due = Math.floor(((performance.now() - started) / 1000) * rate / 64) - written;
  if (due > 0) {
    await write(lines(due));
    written += due;
  }
  await new Promise((r) => setTimeout(r, 5));
}
`;

/** One client's stream: what it received, where, and when. */
class Stream {
  readonly chunks: Array<{ offset: number; data: Uint8Array }> = [];
  received = 0;
  readonly rec: Recorder;

  constructor(url: string, token: string, mode: "interactive" | "view", onOutput?: (at: number) => void) {
    this.rec = new Recorder({
      url,
      token,
      mode,
      offset: 0,
      cols: COLS,
      rows: ROWS,
      keepText: false,
      onOutput: (data, at) => {
        const end = this.rec.offset ?? 0;
        this.chunks.push({ offset: end - data.length, data });
        this.received += data.length;
        onOutput?.(at);
      },
    });
  }

  get offset(): number {
    return this.rec.offset ?? 0;
  }

  /** The stream from 0 to `end`, with what this client never got left as zeros; and which bytes it got. */
  assemble(end: number): { bytes: Uint8Array; have: Uint8Array } {
    const bytes = new Uint8Array(end);
    const have = new Uint8Array(end);
    for (const { offset, data } of this.chunks) {
      if (offset >= end) continue;
      const part = data.subarray(0, Math.max(0, end - offset));
      bytes.set(part, offset);
      have.fill(1, offset, offset + part.length);
    }
    return { bytes, have };
  }

  close(): void {
    this.rec.close();
  }
}

interface Round {
  producedWhileCut: number;
  backoffMs: number;
  catchUpMs: number;
  totalMs: number;
  replayed: number;
  lost: number;
  differing: number;
  screens: number;
}

async function round(api: ApiClient, direct: ApiClient, proxy: TcpProxy, opts: { rate: number; cutMs: number }): Promise<Round> {
  const session = await api.create({ command: [process.execPath, printerFile, String(opts.rate)], cols: COLS, rows: ROWS });
  const stop = { what: `session ${session.label}`, run: () => api.stop(session.label) };
  cleanups.push(stop);

  const reference = new Stream(direct.attachUrl(session.label), direct.token, "view");
  let afterRestore = false;
  let acceptedAt: number | null = null;
  let currentAt: number | null = null;
  let offsetAtReconnect = 0;
  const client: Stream = new Stream(createApiClient(proxy.url, api.token).attachUrl(session.label), api.token, "interactive", (at) => {
    if (afterRestore && currentAt === null && acceptedAt !== null && client.offset >= reference.offset) currentAt = at;
  });
  proxy.onAccept = (at) => {
    if (afterRestore && acceptedAt === null) acceptedAt = at;
  };

  try {
    // Output is flowing to both.
    const warm = opts.rate === 0 ? 1_000_000 : opts.rate / 2;
    await until(() => client.offset >= warm && reference.offset >= warm, 30_000, "output to reach both clients");

    proxy.cut();
    const cutOffset = client.offset;
    await Bun.sleep(opts.cutMs); // the fault
    const producedWhileCut = reference.offset - cutOffset;
    afterRestore = true;
    const restoredAt = performance.now();
    proxy.restore();
    await until(() => acceptedAt !== null, CATCH_UP_TIMEOUT_MS, "the client to reconnect");
    offsetAtReconnect = reference.offset;
    await until(() => currentAt !== null, CATCH_UP_TIMEOUT_MS, "the client to catch up");
    const replayed = client.chunks.filter((c) => c.offset >= cutOffset && c.offset < offsetAtReconnect).reduce((n, c) => n + c.data.length, 0);

    // A little live output after the catch-up, then the program ends and both streams are complete.
    await Bun.sleep(300);
    await api.stop(session.label);
    cleanups.splice(cleanups.indexOf(stop), 1);
    await withDeadline(Promise.all([client.rec.outcome, reference.rec.outcome]), 30_000, "both clients to see the exit");

    const end = reference.offset;
    if (reference.received !== end || reference.rec.screens.length > 0) {
      throw new Error(`the uninterrupted viewer itself missed output (${reference.received} of ${end} bytes)`);
    }
    const ref = reference.assemble(end).bytes;
    const got = client.assemble(end);
    let lost = 0;
    let differing = 0;
    for (let i = 0; i < end; i++) {
      if (!got.have[i]) lost++;
      else if (got.bytes[i] !== ref[i]) differing++;
    }
    const accepted = acceptedAt ?? Number.NaN;
    const current = currentAt ?? Number.NaN;
    return {
      producedWhileCut,
      backoffMs: accepted - restoredAt,
      catchUpMs: current - accepted,
      totalMs: current - restoredAt,
      replayed,
      lost,
      differing,
      screens: client.rec.screens.length,
    };
  } finally {
    proxy.onAccept = null;
    client.close();
    reference.close();
  }
}

const fmtMs = (ms: number): string => `${ms.toFixed(1)} ms`;
const fmtBytes = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`);

let printerFile = "";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: "string", default: "3" },
      "cut-ms": { type: "string", default: "5000" },
      rate: { type: "string", default: "1000000" },
    },
  });
  const rounds = Number(values.rounds);
  const cutMs = Number(values["cut-ms"]);
  const rate = Number(values.rate);
  if (!(rounds >= 1) || !(cutMs >= 0) || !(rate >= 0)) throw new Error("--rounds, --cut-ms and --rate must be numbers");

  const tmp = mkdtempSync(join(tmpdir(), "catty-bench-resume-"));
  cleanups.push({ what: "temp directory", run: () => rmSync(tmp, { recursive: true, force: true }) });
  printerFile = join(tmp, "printer.mjs");
  writeFileSync(printerFile, PRINTER);
  const dataDir = join(tmp, "server");
  const srv = await startServerProcess(dataDir);
  // Safety net: whatever agent is still running when we leave is killed.
  cleanups.push({
    what: "leftover agents",
    run: () => {
      const sessions = join(dataDir, "sessions");
      for (const label of existsSync(sessions) ? readdirSync(sessions) : []) {
        try {
          const pid = Number(readFileSync(join(sessions, label, "agent.pid"), "utf8").trim());
          if (pid > 0 && pidAlive(pid)) process.kill(pid, "SIGKILL");
        } catch {
          // no pid file
        }
      }
    },
  });
  const proxy = TcpProxy.start({ port: srv.port });
  cleanups.push({ what: "proxy", run: () => proxy.stop() });
  const api = createApiClient(srv.url, srv.token);

  console.log(`resume after a ${cutMs / 1000} s cut, program printing ${rate === 0 ? "as fast as it can" : `${fmtBytes(rate)}/s`}, ${rounds} round(s)`);
  const results: Round[] = [];
  for (let i = 0; i < rounds; i++) {
    const r = await round(api, createApiClient(srv.url, srv.token), proxy, { rate, cutMs });
    results.push(r);
    console.log(
      `  round ${i + 1}: reconnect → current ${fmtMs(r.catchUpMs)} (replayed ${fmtBytes(r.replayed)}), ` +
        `restore → reconnect ${fmtMs(r.backoffMs)}, restore → current ${fmtMs(r.totalMs)}; ` +
        `printed while cut ${fmtBytes(r.producedWhileCut)}; lost ${r.lost} B, differing ${r.differing} B${r.screens ? `, ${r.screens} screen(s)` : ""}`,
    );
  }
  const catchUp = results.map((r) => r.catchUpMs);
  const lost = results.reduce((n, r) => n + r.lost + r.differing, 0);
  const worst = Math.max(...catchUp);
  console.log(
    `reconnect → current: median ${fmtMs(median(catchUp))}, max ${fmtMs(worst)} (target < ${TARGET_MS} ms: ${worst < TARGET_MS ? "met" : "missed"}); ` +
      `restore → current median ${fmtMs(median(results.map((r) => r.totalMs)))}; ` +
      `bytes lost ${lost} (target 0: ${lost === 0 ? "met" : "missed"})`,
  );
}

const overall = setTimeout(() => {
  console.error(`bench/resume: gave up after ${OVERALL_TIMEOUT_MS / 1000} s`);
  void cleanup().then(() => process.exit(1));
}, OVERALL_TIMEOUT_MS);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => void cleanup().then(() => process.exit(130)));
}
try {
  await main();
  await cleanup();
  clearTimeout(overall);
  process.exit(0);
} catch (err) {
  console.error(`bench/resume failed: ${(err as Error).stack ?? err}`);
  await cleanup();
  process.exit(1);
}
