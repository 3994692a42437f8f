/**
 * The paths the speed benches compare, each through the real executables under a PTY whose master
 * the bench holds, as a terminal emulator does:
 *
 * - catty: `catty connect <label>` (the compiled CLI, with its own raw-mode stdin and its stdout
 *   writes) against a real `catty-server` process, whose local provider runs the session's program
 *   under the compiled `catty-agent`;
 * - ssh: `ssh -tt` to a loopback `sshd` this run starts (installing Debian's openssh-server when
 *   it is missing); optionally through a jump host (`ssh -J`), a relay in the middle as Catty has.
 *
 * Both run the same program, as `sh -c <program>`, under the remote end's PTY. Each path also
 * names its processes by role, so a bench can charge CPU time and memory to each of them.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { createApiClient } from "../src/client/api.ts";
import {
  cleanups,
  compiledBinaries,
  cpuSeconds,
  descendants,
  freePort,
  killAndWait,
  procStat,
  readAll,
  run,
  spawnInPty,
  startServerProcess,
  waitForPort,
  withDeadline,
} from "./harness.ts";

export const COLS = 80;
export const ROWS = 24;
const SSHD = "/usr/sbin/sshd";

export interface Path {
  /** "ssh", "catty", or "catty <dir>" when several builds are compared. */
  readonly name: string;
  /** Types into the terminal (writes to the PTY master). */
  type(data: Uint8Array | string): void;
  /**
   * Where the terminal's output goes, with its arrival time; the bench sets it. While it is null
   * the output is kept (the last 64 kB) for `takeUnclaimed`.
   */
  onOutput: ((data: Uint8Array, at: number) => void) | null;
  /** The output that arrived while nobody listened, as text; cleared. */
  takeUnclaimed(): string;
  /** The processes of this path, by role (the client, the relays, the program), live ones only. */
  processes(): Record<string, number[]>;
}

/** CPU seconds used so far by each role of `path` (see `cpuSeconds`). */
export function cpuByRole(path: Path): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [role, pids] of Object.entries(path.processes())) out[role] = cpuSeconds(pids);
  return out;
}

const UNCLAIMED_MAX = 64 * 1024;

/** A path whose output goes wherever `onOutput` points at the time. */
function tapped(name: string, type: Path["type"], processes: Path["processes"]): { path: Path; feed: (d: Uint8Array, at: number) => void } {
  let unclaimed = "";
  const path: Path = {
    name,
    type,
    onOutput: null,
    processes,
    takeUnclaimed() {
      const s = unclaimed;
      unclaimed = "";
      return s;
    },
  };
  const decoder = new TextDecoder();
  const feed = (data: Uint8Array, at: number): void => {
    if (path.onOutput) return path.onOutput(data, at);
    unclaimed = (unclaimed + decoder.decode(data, { stream: true })).slice(-UNCLAIMED_MAX);
  };
  return { path, feed };
}

// ── catty ─────────────────────────────────────────────────────────────────────────────────────

export interface CattyPathOptions {
  /** Compiled binaries to use (default: built by build.ts for this run). */
  binDir?: string;
  /** The path's name (default "catty"). */
  name?: string;
  /** Added to the server's environment (e.g. CATTY_AGENT_BIN, or agent settings it passes on). */
  serverEnv?: Record<string, string>;
  /** Added to the CLI's environment (e.g. CATTY_PREDICT). */
  clientEnv?: Record<string, string>;
  /** The URL the CLI dials for a server on `port` (e.g. a delaying proxy's); default the server's own. */
  via?: (port: number) => string;
}

/**
 * The catty paths for `binDirs` (none: one path, binaries built for this run; several: one path
 * per build, named after its directory, to compare builds in one run).
 */
export async function startCattyPaths(tmp: string, program: string, binDirs: string[] | undefined): Promise<Path[]> {
  if (!binDirs || binDirs.length === 0) return [await startCattyPath(tmp, program)];
  const paths: Path[] = [];
  for (const [i, binDir] of binDirs.entries()) {
    const name = binDirs.length === 1 ? "catty" : `catty ${basename(binDir)}`;
    paths.push(await startCattyPath(join(tmp, `catty-${i}`), program, { binDir, name }));
  }
  return paths;
}

/** Starts a server process, a session running `program`, and `catty connect` to it under a PTY. */
export async function startCattyPath(tmp: string, program: string, opts: CattyPathOptions = {}): Promise<Path> {
  const bins = await compiledBinaries(opts.binDir);
  const dataDir = join(tmp, "catty-server");
  const server = await startServerProcess(dataDir, { bin: bins.server, env: opts.serverEnv });
  const api = createApiClient(server.url, server.token);
  const session = await withDeadline(
    api.create({ command: ["sh", "-c", program], cols: COLS, rows: ROWS }),
    30_000,
    "create a catty session",
  );
  cleanups.push({ what: `catty session ${session.label}`, run: async () => void (await api.stop(session.label)) });
  const agentPidFile = join(dataDir, "sessions", session.label, "agent.pid");
  const agentPid = Number(readFileSync(agentPidFile, "utf8").trim());

  // The CLI as a user runs it: its own home (log, sync-back state) and an empty directory to sync into.
  const home = join(tmp, "catty-home");
  const cwd = join(tmp, "catty-cwd");
  mkdirSync(home, { recursive: true });
  mkdirSync(cwd, { recursive: true });
  let feed: (d: Uint8Array, at: number) => void = () => {};
  const cli = spawnInPty([bins.catty, "connect", session.label], {
    cwd,
    env: {
      ...process.env,
      CATTY_API_ADDR: opts.via ? opts.via(Number(new URL(server.url).port)) : server.url,
      CATTY_TOKEN: server.token,
      CATTY_HOME: home,
      ...opts.clientEnv,
    },
    cols: COLS,
    rows: ROWS,
    onOutput: (data, at) => feed(data, at),
  });
  const t = tapped(opts.name ?? "catty", (data) => cli.write(data), () => ({
    catty: [cli.pid],
    "catty-server": [server.pid],
    "catty-agent": [agentPid],
    program: descendants(agentPid),
  }));
  feed = t.feed;
  return t.path;
}

// ── ssh ───────────────────────────────────────────────────────────────────────────────────────

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

async function childrenGone(pid: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (descendants(pid).length === 0) return;
    await Bun.sleep(20);
  }
}

/** A loopback sshd on a free port with its own host key, and a client key it accepts. */
export async function startSshd(dir: string): Promise<{ port: number; pid: number; clientKey: string; log: () => string }> {
  await ensureSshd();
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
  let log = "";
  const sshd = Bun.spawn([SSHD, "-D", "-e", "-p", String(port), "-f", config], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  cleanups.push({
    what: "sshd",
    run: async () => {
      // Once the client is gone its session processes end; reaped here, they leave no zombie behind.
      await childrenGone(sshd.pid, 2_000);
      await killAndWait(sshd);
    },
  });
  void readAll(sshd.stderr, (chunk) => (log += new TextDecoder().decode(chunk)));
  await waitForPort(port, sshd, "sshd", () => log);
  return { port, pid: sshd.pid, clientKey: join(dir, "client_key"), log: () => log };
}

const shellQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

export interface SshPathOptions {
  /**
   * Go through a jump host (`ProxyCommand ssh -W`, what `ssh -J` does; the same sshd plays both
   * hosts): a relay in the middle, as Catty's server is. The path is then named "ssh -J".
   */
  jump?: boolean;
  /** The port ssh dials for the sshd on `port` (e.g. a delaying proxy's); default the sshd's own. */
  via?: (port: number) => number;
  /** The path's name (default "ssh", or "ssh -J"). */
  name?: string;
}

/** Starts a loopback sshd and `ssh -tt` to it under a PTY, running `program`. */
export async function startSshPath(tmp: string, program: string, opts: SshPathOptions = {}): Promise<Path> {
  const sshd = await startSshd(join(tmp, opts.jump ? "ssh-jump" : "ssh"));
  // os.userInfo() can answer "unknown" under Bun; `id -un` reads the account database.
  const user = (await run(["id", "-un"], { timeoutMs: 10_000 })).out.trim();
  const common = [
    "-F", "/dev/null", "-p", String(opts.via ? opts.via(sshd.port) : sshd.port), "-i", sshd.clientKey,
    "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
  ];
  const jump = opts.jump ? ["-o", `ProxyCommand=ssh ${common.join(" ")} -W %h:%p ${user}@127.0.0.1`] : [];
  let feed: (d: Uint8Array, at: number) => void = () => {};
  const cli = spawnInPty(
    ["ssh", "-tt", "-e", "none", ...common, ...jump, `${user}@127.0.0.1`, `exec sh -c ${shellQuote(program)}`],
    { cols: COLS, rows: ROWS, onOutput: (data, at) => feed(data, at) },
  );
  const t = tapped(opts.name ?? (opts.jump ? "ssh -J" : "ssh"), (data) => cli.write(data), () => {
    // sshd forks a privileged and a user process per connection; the program runs under the latter.
    const tree = descendants(sshd.pid).map((pid) => procStat(pid)).filter((s) => s !== null);
    return {
      ssh: [cli.pid, ...descendants(cli.pid)],
      sshd: [sshd.pid, ...tree.filter((s) => s.comm === "sshd").map((s) => s.pid)],
      program: tree.filter((s) => s.comm !== "sshd").map((s) => s.pid),
    };
  });
  feed = t.feed;
  return t.path;
}

// ── mosh ──────────────────────────────────────────────────────────────────────────────────────

export interface MoshPathOptions {
  /** The UDP port mosh-client sends to for the mosh-server on `port` (e.g. a delaying proxy's). */
  via?: (port: number) => number | Promise<number>;
}

/**
 * `mosh-server new` on loopback running `program` (no ssh: started directly, its key handed to
 * the client in MOSH_KEY), and `mosh-client` to it under a PTY. Needs Debian's `mosh`.
 */
export async function startMoshPath(program: string, opts: MoshPathOptions = {}): Promise<Path> {
  if (!Bun.which("mosh-server") || !Bun.which("mosh-client")) throw new Error("mosh not found: apt-get install mosh");
  const env = { ...process.env, LANG: "C.UTF-8", LC_ALL: "C.UTF-8" };
  const started = await run(["mosh-server", "new", "-s", "-i", "127.0.0.1", "-c", "256", "--", "sh", "-c", program], { timeoutMs: 20_000, env });
  const m = /MOSH CONNECT (\d+) (\S+)/.exec(started.out);
  if (!m) throw new Error(`mosh-server did not start:\n${started.out.slice(-2000)}`);
  const serverPort = Number(m[1]);
  const port = opts.via ? await opts.via(serverPort) : serverPort;
  // It detaches and says as which process: "[mosh-server detached, pid = 1234]".
  const detached = /detached, pid = (\d+)/.exec(started.out);
  const serverPids = detached ? [Number(detached[1])] : [];
  cleanups.push({ what: "mosh-server", run: () => { for (const pid of serverPids) try { process.kill(pid, "SIGTERM"); } catch {} } });
  let feed: (d: Uint8Array, at: number) => void = () => {};
  const cli = spawnInPty(["mosh-client", "127.0.0.1", String(port)], {
    env: { ...env, MOSH_KEY: m[2] as string },
    cols: COLS,
    rows: ROWS,
    onOutput: (data, at) => feed(data, at),
  });
  const t = tapped("mosh", (data) => cli.write(data), () => ({
    "mosh-client": [cli.pid],
    "mosh-server": serverPids,
    program: serverPids.flatMap((pid) => descendants(pid)),
  }));
  feed = t.feed;
  return t.path;
}

// ── getting ready ─────────────────────────────────────────────────────────────────────────────

/**
 * Waits until the terminal shows `expect` — typing `probe` over and over meanwhile, if given (the
 * far end may still be starting) — and then until it has been quiet for `quietMs`: catty shows its
 * sync-back notice for 3 s after attaching and then repaints the screen, which must not land in a
 * measurement. With `busy` (a far end that never stops printing) it waits `quietMs` instead.
 */
export async function settle(
  path: Path,
  opts: { expect: string; probe?: string; timeoutMs?: number; quietMs?: number; busy?: boolean },
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  // Only the tail can complete a match across chunks, so only the tail is kept.
  let tail = path.takeUnclaimed();
  let found = tail.includes(opts.expect);
  let last = performance.now();
  const decoder = new TextDecoder();
  path.onOutput = (data, at) => {
    tail = (tail + decoder.decode(data, { stream: true })).slice(-(opts.expect.length + data.length));
    found ||= tail.includes(opts.expect);
    tail = tail.slice(-opts.expect.length);
    last = at;
  };
  while (!found) {
    if (Date.now() > deadline) throw new Error(`${path.name}: "${opts.expect}" not shown within ${timeoutMs} ms`);
    if (opts.probe) path.type(opts.probe);
    await Bun.sleep(opts.probe ? 300 : 20);
  }
  const quietMs = opts.quietMs ?? 4_000;
  if (opts.busy) await Bun.sleep(quietMs);
  while (!opts.busy && performance.now() - last < quietMs) {
    if (Date.now() > deadline + quietMs) throw new Error(`${path.name}: output did not stop`);
    await Bun.sleep(50);
  }
  path.onOutput = null;
}
