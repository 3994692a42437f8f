/**
 * Session start as a terminal sees it: from spawning `catty new --no-upload -- sh -c PROGRAM` (the
 * compiled CLI under a PTY whose master this process holds, against a real `catty-server` process
 * that this run starts) until the program's first output, a marker it prints at once, is on that
 * master. Two catty servers: the local provider with the bubblewrap sandbox (`CATTY_SANDBOX=bwrap`,
 * what `--sandbox auto` picks when bubblewrap is installed) and without one (`CATTY_SANDBOX=none`).
 * The reference is tmux on a socket of its own, measured in the same run: `tmux new-session`
 * (which creates a session and attaches to it) running the same program, its server already up,
 * as catty's is, and again with the server started by each `new-session`. Beside them `catty
 * --version`, the CLI's own start-up, a floor under `catty new`; catty's time is also split at its
 * "Session … started" line (CLI up and session created | attach until the output). The paths take
 * turns, the first of each round alternating; every catty session is stopped after its round,
 * every tmux session killed, so none pile up. The bench answers the cursor position query catty
 * sends as it attaches, as a terminal does.
 *
 *   ./node_modules/.bin/bun bench/start.ts [--rounds 10] [--warmup 1] [--sessions 0] [--bin-dir DIR] [--docker]
 *
 * `--docker` adds the Docker provider (a catty server with `--provider docker` on a Docker engine
 * the bench starts, with the session image built from this checkout, containers on the host's
 * network) and, as its reference, `docker run -it` of the same image running the same program.
 *
 * `--sessions N` then starts N idle sessions on the sandboxed server one after another (the
 * program prints the marker and sleeps; the CLI is ended once the marker is shown, the session
 * stays), and reports how long the last ones took to start, the agents' mean resident memory and
 * the server's, with N sessions running. `--rounds 0` skips the rounds.
 *
 * Needs bubblewrap (/usr/bin/bwrap) and tmux. Cleans up everything it started, also on failure or
 * Ctrl+C, and exits non-zero only when something failed.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createApiClient, type ApiClient } from "../src/client/api.ts";
import { isLive } from "../src/protocol/index.ts";
import {
  benchTempDir,
  cleanups,
  compiledBinaries,
  memory,
  median,
  percentile,
  run,
  runBench,
  spawnInPty,
  startServerProcess,
  wholeNumbers,
  withDeadline,
  type Binaries,
} from "./harness.ts";
import { testEngine, type TestEngine } from "../test/helpers/docker.ts";
import { COLS, ROWS } from "./paths.ts";

const TARGET_SANDBOXED_P50_MS = 300;
const TARGET_DOCKER_RATIO = 1.5;
const MARKER = "READY";
/** Prints the marker without it ever being in a command line a terminal could show. */
const PROGRAM = `printf '%s%s' ${MARKER.slice(0, 2)} ${MARKER.slice(2)}; exec cat`;
const IDLE_PROGRAM = `printf '%s%s' ${MARKER.slice(0, 2)} ${MARKER.slice(2)}; exec sleep 86400`;
const START_TIMEOUT_MS = 30_000;
const OVERALL_TIMEOUT_MS = 20 * 60_000;

/** The environment of a client we start: ours, without a tmux we may be running inside of. */
function clientEnv(extra: Record<string, string> = {}): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, ...extra };
  delete env.TMUX;
  delete env.TMUX_PANE;
  return env;
}

/**
 * Spawns `argv` under a PTY and resolves with the ms from the spawn until the marker is on the
 * master, and a way to end the command; fails (after ending it) when it does not show in time.
 */
async function timeToMarker(
  argv: string[],
  opts: { cwd?: string; env: Record<string, string | undefined>; what: string; stage?: string },
): Promise<{ ms: number; stageMs: number; output: string; stop: () => Promise<void> }> {
  let output = "";
  let stageAt = NaN;
  let answered = false;
  let seen: ((at: number) => void) | null = null;
  const shown = new Promise<number>((resolve) => (seen = resolve));
  const decoder = new TextDecoder();
  const start = performance.now();
  const cmd = spawnInPty(argv, {
    cwd: opts.cwd,
    env: opts.env,
    cols: COLS,
    rows: ROWS,
    onOutput: (data, at) => {
      output += decoder.decode(data, { stream: true });
      if (opts.stage && Number.isNaN(stageAt) && output.includes(opts.stage)) stageAt = at;
      // A terminal answers a cursor position query (catty asks one as it attaches).
      if (!answered && output.includes("\x1b[6n")) {
        answered = true;
        const row = Math.min(ROWS, output.split("\n").length);
        cmd.write(`\x1b[${row};1R`);
      }
      if (seen && output.includes(MARKER)) {
        seen(at);
        seen = null;
      }
    },
  });
  const exitedEarly = cmd.exited.then((code) => {
    throw new Error(`${opts.what} exited with ${code} before showing ${MARKER}:\n${output.slice(-2000)}`);
  });
  try {
    const at = await withDeadline(Promise.race([shown, exitedEarly]), START_TIMEOUT_MS, `${opts.what}: ${MARKER} on screen`);
    return { ms: at - start, stageMs: stageAt - start, output, stop: cmd.stop };
  } catch (err) {
    await cmd.stop();
    throw new Error(`${(err as Error).message}\n(screen so far: ${JSON.stringify(output.slice(-1000))})`);
  }
}

interface StartPath {
  /** Short: "catty bwrap", "catty none", "tmux". */
  readonly name: string;
  /** As printed. */
  readonly label: string;
  /**
   * One start: the ms until the marker was on screen, and for catty until the "Session … started"
   * line was (the CLI up and the session created); everything it started is gone after.
   */
  start(): Promise<Start>;
}

interface Start {
  ms: number;
  createdMs?: number;
}

interface CattyServer {
  url: string;
  token: string;
  pid: number;
  dataDir: string;
  api: ApiClient;
  bins: Binaries;
  home: string;
  cwd: string;
}

type Kind = "bwrap" | "none" | "docker";

async function startCattyServer(tmp: string, bins: Binaries, sandbox: Kind, engine?: TestEngine): Promise<CattyServer> {
  const dir = join(tmp, `catty-${sandbox}`);
  const dataDir = join(dir, "server");
  const env: Record<string, string> =
    sandbox === "docker" && engine
      ? { CATTY_PROVIDER: "docker", DOCKER_HOST: engine.host, CATTY_DOCKER_IMAGE: engine.image, CATTY_DOCKER_NETWORK: "host" }
      : { CATTY_SANDBOX: sandbox };
  const server = await startServerProcess(dataDir, { bin: bins.server, env });
  const api = createApiClient(server.url, server.token);
  cleanups.push({ what: `catty sessions (${sandbox})`, run: () => stopLiveSessions(api) });
  const home = join(dir, "home");
  const cwd = join(dir, "cwd");
  mkdirSync(home, { recursive: true });
  mkdirSync(cwd, { recursive: true });
  return { ...server, dataDir, api, bins, home, cwd };
}

async function stopLiveSessions(api: ApiClient): Promise<void> {
  const live = (await api.list()).filter((s) => isLive(s.status));
  for (const s of live) await withDeadline(api.stop(s.label), 30_000, `stop catty session ${s.label}`);
}

/** `catty new` as a user types it, in an empty directory; resolves once the marker is shown, the CLI ended. */
async function cattyNew(server: CattyServer, program: string, what: string): Promise<Start & { label: string }> {
  const r = await timeToMarker([server.bins.catty, "new", "--no-upload", "--", "sh", "-c", program], {
    cwd: server.cwd,
    env: clientEnv({ CATTY_API_ADDR: server.url, CATTY_TOKEN: server.token, CATTY_HOME: server.home }),
    what,
    stage: " started (",
  });
  await r.stop();
  const label = /Session (\S+) started/.exec(r.output)?.[1];
  if (!label) throw new Error(`${what}: no "Session … started" on screen:\n${r.output.slice(-1000)}`);
  return { ms: r.ms, createdMs: r.stageMs, label };
}

function cattyPath(sandbox: Kind, server: CattyServer): StartPath {
  const name = `catty ${sandbox}`;
  return {
    name,
    label: sandbox === "docker" ? "catty new (Docker provider)" : `catty new (sandbox ${sandbox})`,
    async start() {
      const { label, ...start } = await cattyNew(server, PROGRAM, name);
      // So a server that fell back to another sandbox cannot pass for this one.
      if ((await server.api.get(label)).isolated !== (sandbox !== "none")) throw new Error(`${name}: session ${label} is not sandboxed as asked`);
      await withDeadline(server.api.stop(label), 30_000, `stop catty session ${label}`);
      return start;
    },
  };
}

/**
 * tmux with a socket of its own in `tmp`. Warm: its server started once, by a session kept for the
 * run, as catty's server is. Cold: each start also starts the server (a socket of its own each
 * time), as the first `tmux` after boot does.
 */
async function tmuxPath(tmp: string, cold: boolean): Promise<StartPath> {
  const tmux = (socket: string): string[] => ["tmux", "-S", join(tmp, socket), "-f", "/dev/null"];
  const env = clientEnv();
  if (!cold) {
    const up = await run([...tmux("tmux.sock"), "new-session", "-d", "-s", "keep", "sleep", "86400"], { timeoutMs: 10_000 });
    if (up.code !== 0) throw new Error(`could not start a tmux server: ${up.out}`);
    cleanups.push({ what: "tmux server", run: () => run([...tmux("tmux.sock"), "kill-server"], { timeoutMs: 10_000 }) });
  }
  let n = 0;
  return {
    name: cold ? "tmux cold" : "tmux",
    label: cold ? "tmux new-session (server started)" : "tmux new-session (server up)",
    async start() {
      const session = `s${n++}`;
      const t = tmux(cold ? `tmux-${session}.sock` : "tmux.sock");
      // More than one argument after the options: tmux runs them as they are, with no shell of its own.
      const r = await timeToMarker([...t, "new-session", "-s", session, "sh", "-c", PROGRAM], { env, what: "tmux new-session" });
      await r.stop();
      await run([...t, cold ? "kill-server" : "kill-session", ...(cold ? [] : ["-t", session])], { timeoutMs: 10_000 });
      return { ms: r.ms };
    },
  };
}

/**
 * `docker run -it` of the session image running the same program (host network, as catty's
 * containers here), through the engine's CLI: what the Docker provider is measured against.
 */
function dockerRunPath(engine: TestEngine): StartPath {
  const docker = Bun.which("docker");
  if (!docker) throw new Error("the docker CLI is not installed (apt-get install docker.io)");
  let n = 0;
  return {
    name: "docker run",
    label: "docker run -it (same image)",
    async start() {
      const name = `catty-bench-run-${process.pid}-${n++}`;
      const r = await timeToMarker(
        [docker, "-H", engine.host, "run", "--rm", "-it", "--name", name, "--network", "host", "--entrypoint", "sh", engine.image, "-c", PROGRAM],
        { env: clientEnv(), what: "docker run" },
      );
      await r.stop();
      await engine.client.remove(name);
      return { ms: r.ms };
    },
  };
}

/** The CLI alone: `catty --version` from its spawn until its output (the floor under `catty new`). */
function cattyVersionPath(bins: Binaries): StartPath {
  return {
    name: "catty --version",
    label: "catty --version (no session)",
    async start() {
      const start = performance.now();
      const proc = Bun.spawn([bins.catty, "--version"], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
      const reader = proc.stdout.getReader();
      await withDeadline(reader.read(), START_TIMEOUT_MS, "catty --version");
      const ms = performance.now() - start;
      reader.releaseLock();
      await proc.exited;
      return { ms };
    },
  };
}

function stats(xs: number[]): { p50: number; max: number } {
  const sorted = [...xs].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), max: sorted[sorted.length - 1] as number };
}

const ms = (v: number): string => `${v.toFixed(1)} ms`.padStart(11);

async function measureRounds(paths: StartPath[], rounds: number, warmup: number): Promise<void> {
  for (let i = 0; i < warmup; i++) for (const p of paths) await p.start();
  const all = new Map<string, Start[]>(paths.map((p) => [p.name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const p of r % 2 === 0 ? paths : [...paths].reverse()) (all.get(p.name) as Start[]).push(await p.start());
  }
  const samples = (name: string): number[] => (all.get(name) as Start[]).map((s) => s.ms);
  const tmux = stats(samples("tmux"));
  const cold = stats(samples("tmux cold"));
  const width = 42;
  console.log(`${`start → first output on screen (n=${rounds})`.padEnd(width)}${"p50".padStart(11)}${"max".padStart(11)}`);
  for (const p of paths) {
    const s = stats(samples(p.name));
    console.log(`${p.label.padEnd(width)}${ms(s.p50)}${ms(s.max)}`);
    const created = (all.get(p.name) as Start[]).flatMap((x) => (x.createdMs === undefined ? [] : [x]));
    if (created.length === 0) continue;
    const c = stats(created.map((x) => x.createdMs as number));
    const a = stats(created.map((x) => x.ms - (x.createdMs as number)));
    console.log(`${"  of which until \"Session … started\"".padEnd(width)}${ms(c.p50)}${ms(c.max)}`);
    console.log(`${"  and from there until the output".padEnd(width)}${ms(a.p50)}${ms(a.max)}`);
  }
  if (all.has("docker run")) {
    const run = stats(samples("docker run"));
    const s = stats(samples("catty docker"));
    const met = s.p50 / run.p50 <= TARGET_DOCKER_RATIO ? "met" : "missed";
    console.log(`${"ratio catty docker/docker run".padEnd(width)}${(s.p50 / run.p50).toFixed(2).padStart(11)}${(s.max / run.max).toFixed(2).padStart(11)}   (target: p50 ≤ ${TARGET_DOCKER_RATIO}: ${met})`);
  }
  for (const p of paths.filter((p) => /^catty (bwrap|none)$/.test(p.name))) {
    const s = stats(samples(p.name));
    const target = p.name === "catty bwrap" ? `   (target: p50 ≤ ${TARGET_SANDBOXED_P50_MS} ms absolute: ${s.p50 <= TARGET_SANDBOXED_P50_MS ? "met" : "missed"})` : "";
    console.log(`${`ratio ${p.name}/tmux`.padEnd(width)}${(s.p50 / tmux.p50).toFixed(2).padStart(11)}${(s.max / tmux.max).toFixed(2).padStart(11)}${target}`);
    console.log(`${`ratio ${p.name}/tmux cold`.padEnd(width)}${(s.p50 / cold.p50).toFixed(2).padStart(11)}${(s.max / cold.max).toFixed(2).padStart(11)}`);
  }
  for (const p of paths) console.log(`  ${p.name}: ${samples(p.name).map((v) => v.toFixed(0)).join(" ")}`);
  console.log(`(measured at the PTY masters from the spawn of the client; program: sh -c "${PROGRAM}")`);
}

/** The pid of a session's agent on this host: from its pid file (local), or the child of the container's tini. */
async function agentPid(server: CattyServer, label: string, engine?: TestEngine): Promise<number> {
  if (!engine) return Number(readFileSync(join(server.dataDir, "sessions", label, "agent.pid"), "utf8").trim());
  const id = await engine.containerOf(label);
  const tini = id ? (await engine.client.inspect(id))?.State.Pid : undefined;
  if (!tini) throw new Error(`session ${label} has no running container`);
  return Number(readFileSync(`/proc/${tini}/task/${tini}/children`, "utf8").trim().split(/\s+/)[0]);
}

/** N idle sessions started one after another on `server`, left running; then their memory. */
async function measureSessions(server: CattyServer, n: number, kind: Kind, engine?: TestEngine): Promise<void> {
  const times: number[] = [];
  const labels: string[] = [];
  const serverBefore = memory(server.pid)?.rssKb ?? NaN;
  for (let i = 0; i < n; i++) {
    const { ms: t, label } = await cattyNew(server, IDLE_PROGRAM, `catty new (session ${i + 1} of ${n})`);
    times.push(t);
    labels.push(label);
  }
  const agents: number[] = [];
  for (const label of labels) {
    const pid = await agentPid(server, label, engine);
    const m = memory(pid);
    if (!m) throw new Error(`the agent of session ${label} (pid ${pid}) is not running`);
    agents.push(m.rssKb);
  }
  const serverRss = memory(server.pid)?.rssKb ?? NaN;
  const last = times.slice(-Math.min(10, n));
  const mb = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`;
  console.log(`\n${n} idle sessions started one after another (${kind === "docker" ? "Docker provider" : `sandbox ${kind}`}):`);
  console.log(`  start of session 1: ${times[0]?.toFixed(1)} ms; of the last ${last.length}: median ${median(last).toFixed(1)} ms, max ${Math.max(...last).toFixed(1)} ms`);
  console.log(`  all: ${times.map((v) => v.toFixed(0)).join(" ")}`);
  console.log(`  catty-agent RSS: mean ${mb(agents.reduce((a, b) => a + b, 0) / agents.length)} (min ${mb(Math.min(...agents))}, max ${mb(Math.max(...agents))})`);
  console.log(`  catty-server RSS with ${n} sessions: ${mb(serverRss)} (before them: ${mb(serverBefore)})`);
  const t0 = performance.now();
  await stopLiveSessions(server.api);
  console.log(`  (stopping them all took ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: "string", default: "10" },
      warmup: { type: "string", default: "1" },
      sessions: { type: "string", default: "0" },
      "bin-dir": { type: "string" },
      docker: { type: "boolean", default: false },
    },
  });
  const { rounds, warmup, sessions } = wholeNumbers(values, { rounds: 0, warmup: 0, sessions: 0 });
  if (rounds === 0 && sessions === 0) throw new Error("nothing to do: --rounds 0 and no --sessions");
  if (!Bun.which("tmux")) throw new Error("tmux not found: install it (apt-get install tmux)");

  const tmp = benchTempDir("catty-bench-start-");
  const bins = await compiledBinaries(values["bin-dir"]);
  const bwrap = await startCattyServer(tmp, bins, "bwrap");
  let dockerUp: Promise<{ engine: TestEngine; server: CattyServer }> | null = null;
  const docker = (): Promise<{ engine: TestEngine; server: CattyServer }> =>
    (dockerUp ??= (async () => {
      console.error("starting a Docker engine of the bench's own and building the session image…");
      const engine = await testEngine(bins.agent);
      return { engine, server: await startCattyServer(tmp, bins, "docker", engine) };
    })());
  if (rounds > 0) {
    const none = await startCattyServer(tmp, bins, "none");
    const paths = [cattyPath("bwrap", bwrap), cattyPath("none", none), await tmuxPath(tmp, false), await tmuxPath(tmp, true), cattyVersionPath(bins)];
    if (values.docker) {
      const { engine, server } = await docker();
      paths.push(cattyPath("docker", server), dockerRunPath(engine));
    }
    await measureRounds(paths, rounds, warmup);
  }
  if (sessions > 0) {
    if (values.docker) {
      const { engine, server } = await docker();
      await measureSessions(server, sessions, "docker", engine);
    } else {
      await measureSessions(bwrap, sessions, "bwrap");
    }
  }
}

await runBench("start", OVERALL_TIMEOUT_MS, main);
