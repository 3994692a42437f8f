/**
 * Keystroke round trip: one byte typed, until its echo comes back, through Catty's real path
 * (`SessionLink` → server relay → agent → PTY → back) and through `ssh -tt` to a loopback sshd
 * started by this run. Both ends run `cat` under a PTY in canonical mode, so the echo is the
 * terminal's own and no program has to wake up; each typed byte is erased again (DEL) before the
 * next, so the line buffer stays empty. One byte in flight at a time; the two paths alternate in
 * blocks so that drift in the machine's load hits both alike.
 *
 *   ./node_modules/.bin/bun bench/echo-latency.ts [--rounds 500] [--warmup 50] [--block 50]
 *                                                 [--gap-ms 0] [--server process|inproc]
 *
 * `--server process` (the default) runs `server/main.ts` as its own process, as the CLI finds it
 * in real use; `--server inproc` runs it inside this process, on the client's event loop, which
 * saves a process wake-up per hop and flatters Catty by some 30 µs. `--gap-ms` waits between
 * keystrokes, as a typist does: every process then wakes from idle, which costs both paths alike.
 *
 * Needs `sshd` (installs Debian's openssh-server when it is missing). Cleans up everything it
 * started, also on failure or Ctrl+C, and exits non-zero when something fails.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startServer } from "../server/listen.ts";
import { readServerConfig } from "../server/config.ts";
import { createApiClient } from "../src/client/api.ts";
import { createLog, silentLog } from "../src/lib/log.ts";
import { SessionLink } from "../src/client/session-link.ts";
import {
  benchTempDir,
  cleanups,
  freePort,
  killAndWait,
  percentile,
  runBench,
  startServerProcess,
  waitForPort,
  wholeNumbers,
  withDeadline,
} from "./harness.ts";

const TARGET_P50_RATIO = 1.5;
const ECHO_TIMEOUT_MS = 5_000;
const READY_TIMEOUT_MS = 30_000;
const OVERALL_TIMEOUT_MS = 15 * 60_000;
const SSHD = "/usr/sbin/sshd";
const DEL = 0x7f;
const CTRL_U = 0x15;
const KEYS = "abcdefghijklmnopqrstuvwxyz";

// ── plumbing ──────────────────────────────────────────────────────────────────────────────────

/** Output seen since the last reset, and a wait for it to match; timestamps are taken on arrival. */
class Tap {
  private seen = "";
  private waiter: { want: (s: string) => boolean; resolve: (t: number) => void } | null = null;

  push(data: Uint8Array): void {
    const at = performance.now();
    for (const b of data) this.seen += String.fromCharCode(b);
    if (this.waiter?.want(this.seen)) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(at);
    }
  }

  reset(): void {
    this.seen = "";
  }

  /** Resolves with the arrival time of the output that made `want` true. */
  until(want: (s: string) => boolean, ms: number, what: string): Promise<number> {
    if (want(this.seen)) return Promise.resolve(performance.now());
    return withDeadline(
      new Promise<number>((resolve) => (this.waiter = { want, resolve })),
      ms,
      what,
    ).finally(() => (this.waiter = null));
  }
}

interface Peer {
  name: string;
  tap: Tap;
  send(data: Uint8Array): void;
}

async function run(cmd: string[], opts: { timeoutMs: number; env?: Record<string, string> }): Promise<{ code: number; out: string }> {
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
async function readAll(stream: ReadableStream<Uint8Array>, onChunk: (chunk: Uint8Array) => void): Promise<void> {
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

// ── the two paths ─────────────────────────────────────────────────────────────────────────────

/** Where the server runs: its own process (as in real use), or this one. */
type ServerMode = "inproc" | "process";

async function startCattyServer(dataDir: string, mode: ServerMode): Promise<{ url: string; token: string }> {
  if (mode === "inproc") {
    const server = await startServer(readServerConfig({ port: "0", "data-dir": dataDir }), createLog({ scope: "bench", level: "warn" }));
    cleanups.push({ what: "catty server", run: () => server.stop() });
    return { url: server.url, token: readFileSync(server.ownerTokenFile, "utf8").trim() };
  }
  const { url, token } = await startServerProcess(dataDir, { ready: "port" });
  return { url, token };
}

async function startCatty(tmp: string, mode: ServerMode): Promise<Peer> {
  const { url, token } = await startCattyServer(join(tmp, "catty"), mode);
  const api = createApiClient(url, token);
  const session = await withDeadline(api.create({ command: ["cat"], cols: 80, rows: 24 }), 30_000, "create a catty session");
  cleanups.push({ what: `catty session ${session.label}`, run: async () => void (await api.stop(session.label)) });

  const tap = new Tap();
  const link = new SessionLink(
    {
      url: api.attachUrl(session.label),
      token,
      mode: "interactive",
      offset: 0,
      size: () => ({ cols: 80, rows: 24 }),
      autoReconnect: false,
      log: silentLog,
    },
    { output: (data) => tap.push(data), screen() {}, status() {} },
  );
  cleanups.push({ what: "catty link", run: () => link.close() });
  let ended: string | null = null;
  void link.start().then((o) => {
    ended = o.kind === "error" ? o.error.message : o.kind;
  });
  return {
    name: "catty",
    tap,
    send(data) {
      if (ended) throw new Error(`the catty link ended (${ended})`);
      link.send(data);
    },
  };
}

async function ensureSshd(): Promise<void> {
  if (existsSync(SSHD) && Bun.which("ssh") && Bun.which("ssh-keygen")) return;
  console.error("sshd not found; installing openssh-server…");
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = ["apt-get", "install", "-y", "--no-install-recommends", "openssh-server"];
  let r = await run(install, { timeoutMs: 300_000, env });
  if (r.code !== 0) {
    const u = await run(["apt-get", "update"], { timeoutMs: 300_000, env });
    if (u.code !== 0) throw new Error(`apt-get update failed:\n${u.out.slice(-2000)}`);
    r = await run(install, { timeoutMs: 300_000, env });
  }
  if (r.code !== 0 || !existsSync(SSHD)) {
    throw new Error(`could not install openssh-server (run as root, or install it yourself):\n${r.out.slice(-2000)}`);
  }
}

async function startSsh(tmp: string): Promise<Peer> {
  await ensureSshd();
  const dir = join(tmp, "ssh");
  mkdirSync(dir, { mode: 0o700 });
  for (const key of ["host_key", "client_key"]) {
    const r = await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "catty-bench", "-f", join(dir, key)], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`ssh-keygen failed:\n${r.out}`);
  }
  writeFileSync(join(dir, "authorized_keys"), readFileSync(join(dir, "client_key.pub")), { mode: 0o600 });
  // sshd refuses to start without its privilege separation directory (normally made by systemd).
  if (process.getuid?.() === 0) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const port = freePort();
  const config = join(dir, "sshd_config");
  writeFileSync(
    config,
    [
      `ListenAddress 127.0.0.1`,
      `HostKey ${join(dir, "host_key")}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      `PubkeyAuthentication yes`,
      `PasswordAuthentication no`,
      `KbdInteractiveAuthentication no`,
      `PermitRootLogin prohibit-password`,
      `StrictModes no`,
      `UsePAM no`,
      `PrintMotd no`,
      `PrintLastLog no`,
      `LogLevel ERROR`,
      "",
    ].join("\n"),
  );
  let sshdLog = "";
  const sshd = Bun.spawn([SSHD, "-D", "-e", "-p", String(port), "-f", config], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  cleanups.push({
    what: "sshd",
    run: async () => {
      // Once the client is gone its session process ends; reaped here, it leaves no zombie behind.
      await childrenGone(sshd.pid, 2_000);
      await killAndWait(sshd);
    },
  });
  void readAll(sshd.stderr, (chunk) => (sshdLog += new TextDecoder().decode(chunk)));
  await waitForPort(port, sshd, "sshd", () => sshdLog);

  // os.userInfo() can answer "unknown" under Bun; `id -un` reads the account database.
  const user = (await run(["id", "-un"], { timeoutMs: 10_000 })).out.trim();
  const ssh = Bun.spawn(
    [
      "ssh", "-tt", "-e", "none", "-F", "/dev/null", "-p", String(port), "-i", join(dir, "client_key"),
      "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
      "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
      `${user}@127.0.0.1`, "cat",
    ],
    { stdin: "pipe", stdout: "pipe", stderr: "pipe" },
  );
  cleanups.push({ what: "ssh client", run: () => killAndWait(ssh) });
  let sshLog = "";
  void readAll(ssh.stderr, (chunk) => (sshLog += new TextDecoder().decode(chunk)));
  const tap = new Tap();
  void readAll(ssh.stdout, (chunk) => tap.push(chunk));
  return {
    name: "ssh",
    tap,
    send(data) {
      if (ssh.exitCode !== null) throw new Error(`ssh exited with ${ssh.exitCode}: ${sshLog.trim()} ${sshdLog.trim()}`);
      ssh.stdin.write(data);
      ssh.stdin.flush();
    },
  };
}

async function childrenGone(pid: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      if (readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim() === "") return;
    } catch {
      return; // no /proc here, or already gone
    }
    await Bun.sleep(20);
  }
}

// ── measuring ─────────────────────────────────────────────────────────────────────────────────

/** Types until the echo comes back (the remote end may still be starting), then clears the line. */
async function ready(peer: Peer): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  peer.tap.reset();
  for (;;) {
    peer.send(new Uint8Array([KEYS.charCodeAt(0)]));
    try {
      await peer.tap.until((s) => s.includes(KEYS[0] as string), 300, "first echo");
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`${peer.name}: no echo within ${READY_TIMEOUT_MS / 1000} s`);
    }
  }
  // Late echoes of earlier probes and the kill-line echo settle, then the line buffer is empty.
  await Bun.sleep(300);
  peer.send(new Uint8Array([CTRL_U]));
  await Bun.sleep(300);
  peer.tap.reset();
}

let keyIndex = 0;

/** One measured keystroke (ms), then an unmeasured erase so the line buffer stays empty. */
async function roundTrip(peer: Peer): Promise<number> {
  const key = KEYS[keyIndex++ % KEYS.length] as string;
  peer.tap.reset();
  const sent = performance.now();
  peer.send(new Uint8Array([key.charCodeAt(0)]));
  const echoed = await peer.tap.until((s) => s.includes(key), ECHO_TIMEOUT_MS, `${peer.name}: echo of "${key}"`);
  peer.tap.reset();
  peer.send(new Uint8Array([DEL]));
  await peer.tap.until((s) => s.includes("\b \b"), ECHO_TIMEOUT_MS, `${peer.name}: echo of the erase`);
  peer.tap.reset();
  return echoed - sent;
}

function summary(samples: number[]): { p50: number; p99: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: "string", default: "500" },
      warmup: { type: "string", default: "50" },
      block: { type: "string", default: "50" },
      server: { type: "string", default: "process" },
      "gap-ms": { type: "string", default: "0" },
    },
  });
  const mode = values.server as ServerMode;
  if (mode !== "inproc" && mode !== "process") throw new Error(`--server must be "inproc" or "process"`);
  const { rounds, warmup, block, "gap-ms": gapMs } = wholeNumbers(values, { rounds: 1, warmup: 0, block: 1, "gap-ms": 0 });

  const tmp = benchTempDir("catty-bench-echo-");
  const peers = [await startCatty(tmp, mode), await startSsh(tmp)];
  for (const p of peers) await ready(p);
  for (const p of peers) for (let i = 0; i < warmup; i++) await roundTrip(p);

  const samples = new Map<string, number[]>(peers.map((p) => [p.name, []]));
  for (let b = 0; samples.get("catty")!.length < rounds; b++) {
    // Alternate which path goes first, so neither always follows the other's idle gap.
    const order = b % 2 === 0 ? peers : [...peers].reverse();
    for (const p of order) {
      const list = samples.get(p.name)!;
      const n = Math.min(block, rounds - list.length);
      for (let i = 0; i < n; i++) {
        list.push(await roundTrip(p));
        if (gapMs > 0) await Bun.sleep(gapMs);
      }
    }
  }

  const catty = summary(samples.get("catty")!);
  const ssh = summary(samples.get("ssh")!);
  const ms = (v: number): string => `${v.toFixed(3)} ms`.padStart(10);
  const ratio = (v: number): string => v.toFixed(2).padStart(10);
  console.log(`${`echo latency (n=${rounds})`.padEnd(24)}${"p50".padStart(10)}${"p99".padStart(10)}`);
  console.log(`${"catty".padEnd(24)}${ms(catty.p50)}${ms(catty.p99)}`);
  console.log(`${"ssh -tt (loopback)".padEnd(24)}${ms(ssh.p50)}${ms(ssh.p99)}`);
  console.log(
    `${"ratio catty/ssh".padEnd(24)}${ratio(catty.p50 / ssh.p50)}${ratio(catty.p99 / ssh.p99)}` +
      `     (target p50 ≤ ${TARGET_P50_RATIO})`,
  );
  const where = mode === "process" ? "server in its own process" : "server in the client's process";
  console.log(`(${where}; ${gapMs > 0 ? `${gapMs} ms between keystrokes` : "keystrokes back to back"}; remote program: cat)`);
}

await runBench("echo-latency", OVERALL_TIMEOUT_MS, main);
