/**
 * Lossless resume, end to end with the real binaries: a TCP proxy between client and server that
 * cuts the link mid-output, `kill -9` of the server, a ring the session's output has overrun
 * (screens compared with a local terminal running the same program, for a shell and for vim),
 * takeover by a second interactive client, and read-only viewers.
 *
 * Where every byte matters the client is a programmatic `SessionLink` (the CLI's own link) that
 * records what it received; where the screen matters it is `catty` in tmux.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApiClient, type ApiClient } from "../../src/client/api.ts";
import { buildBinaries, type Binaries } from "../helpers/binaries.ts";
import { TcpProxy } from "../helpers/proxy.ts";
import { checkSeq, lastSeqLine, pacedSeq, Recorder } from "../helpers/recorder.ts";
import { ServerProcess } from "../helpers/server-process.ts";
import { Tmux } from "../helpers/tmux.ts";
import { waitForSameScreen } from "../helpers/tmux-screen.ts";
import { waitFor } from "../helpers/wait.ts";

const LABEL_RE = /Session ([a-z]+-[a-z]+-\d{4}) started/;
/** The prompt of `bash --norc --noprofile` without PS1 in its environment (`\s-\v\$ `). */
const BASH_PROMPT = /^bash-\d+\.\d+[$#] ?$/m;
/**
 * bash's default prompt with a literal `$`: the same whoever runs it (a sandboxed session runs as
 * an unprivileged user, the local reference as the test's), for shells whose screens are compared.
 */
const SAME_PROMPT = "'PS1=\\s-\\v$ '";
const COLS = 100;
const ROWS = 30;

let bins: Binaries;
let scratch: string;
/** Ring buffers of the default size. */
let server: ServerProcess;
let api: ApiClient;
/** Every tmux and recorder a test started, cleaned up even when it fails. */
const cleanups: Array<() => void | Promise<unknown>> = [];

function later(fn: () => void | Promise<unknown>): void {
  cleanups.push(fn);
}

async function cleanUp(): Promise<void> {
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      await fn();
    } catch {
      // best effort
    }
  }
}

/** A session running `bash -c script`, stopped (or left to its server's end) after the test. */
async function startSession(client: ApiClient, script: string): Promise<string> {
  const session = await client.create({ command: ["bash", "-c", script], cols: 80, rows: 24 });
  later(() => client.stop(session.label));
  return session.label;
}

function record(opts: ConstructorParameters<typeof Recorder>[0]): Recorder {
  const rec = new Recorder(opts);
  later(() => rec.close());
  return rec;
}

/**
 * A recorder of a `pacedSeq` session that runs `fault` from inside its output callback, once it
 * has line `from` and is in the middle of a batch of `batch` lines — so the rest of that batch is
 * in flight when the fault hits (or, should batches arrive whole, at line `from + 10 * batch`).
 * `faulted` resolves with the offset the client had at that moment.
 */
function recordUntilFault(
  opts: ConstructorParameters<typeof Recorder>[0],
  at: { from: number; batch: number },
  fault: () => void,
): { rec: Recorder; faulted: Promise<number> } {
  let done = false;
  let resolve: (offset: number) => void = () => {};
  const faulted = new Promise<number>((r) => (resolve = r));
  const rec: Recorder = record({
    ...opts,
    onOutput: () => {
      if (done) return;
      const last = lastSeqLine(rec.text);
      if (last < at.from || (last % at.batch === 0 && last < at.from + 10 * at.batch)) return;
      done = true;
      fault();
      resolve(rec.offset ?? 0);
    },
  });
  return { rec, faulted };
}

/** tmux with catty on PATH, talking to `apiUrl` with the owner token, in its own home. */
function cattyTerminal(apiUrl: string, token: string): Tmux {
  const home = mkdtempSync(join(scratch, "home-"));
  const tmux = new Tmux({ HOME: home, CATTY_HOME: home, CATTY_API_ADDR: apiUrl, CATTY_TOKEN: token, PATH: `${bins.dir}:${process.env.PATH}`, PS1: "$ " });
  tmux.start({ cols: COLS, rows: ROWS, cwd: scratch });
  later(() => tmux.kill());
  return tmux;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: Timer | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function exitCode(tmux: { waitFor(p: RegExp, ms?: number): Promise<string> }, marker: string, timeoutMs = 15_000): Promise<number> {
  const re = new RegExp(`${marker}=(\\d+)`);
  return Number(re.exec(await tmux.waitFor(re, timeoutMs))?.[1]);
}

beforeAll(async () => {
  bins = await buildBinaries();
  scratch = mkdtempSync(join(tmpdir(), "catty-resume-"));
  server = new ServerProcess(bins.server);
  await server.start();
  api = createApiClient(server.url, server.ownerToken);
}, 120_000);

afterAll(async () => {
  await cleanUp();
  await server?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe("lossless resume", () => {
  test("a 20 s network cut mid-output: after resume every line arrived exactly once, in order", async () => {
    try {
      const N = 200_000;
      // 200 batches of 1000 lines, 0.11 s apart: about 23 s of output, still going on restore.
      const label = await startSession(api, pacedSeq(N, 200, 0.11));
      await using proxy = TcpProxy.start({ port: server.port });
      const { rec: client, faulted } = recordUntilFault(
        { url: createApiClient(proxy.url, server.ownerToken).attachUrl(label), token: server.ownerToken, offset: 0 },
        { from: 10_000, batch: 1000 },
        () => proxy.cut(),
      );
      // A witness straight to the server, never cut: the session did print while the client was away.
      const witness = record({ url: api.attachUrl(label), token: server.ownerToken, mode: "view", offset: 0, keepText: false });

      const cutAt = await withTimeout(faulted, 20_000, "the cut");
      // The fault: a long time without a link. Frames the client had already read still come out
      // of its socket just after the cut; after that, nothing gets through, while the program
      // prints about 20 s worth (70 KB/s), which the witness sees.
      await waitFor(() => (witness.offset ?? 0) > cutAt + 64 * 1024, { timeoutMs: 10_000, what: "output past the cut" });
      const heldAt = client.offset ?? 0;
      await waitFor(() => (witness.offset ?? 0) > heldAt + 1_300_000, { timeoutMs: 40_000, what: "20 s of output while cut off" });
      expect(client.offset).toBe(heldAt);
      const witnessAtRestore = witness.offset ?? 0;
      expect(witnessAtRestore).toBeGreaterThan(heldAt); // the program went on printing meanwhile
      proxy.restore();

      const restoredAt = performance.now();
      await client.waitForText((t) => t.endsWith(`\n${N}\r\n`), 30_000, `line ${N}`);
      const resumedMs = performance.now() - restoredAt;

      expect(checkSeq(client.text, N)).toBeNull();
      expect(client.screens).toHaveLength(0); // resumed from the ring, never a repaint
      expect(client.gaps).toEqual([]);
      expect(proxy.accepted).toBeGreaterThanOrEqual(2); // it did reconnect through the proxy
      expect(client.outcomeNow).toBeNull(); // and is still attached
      console.log(`cut at byte ${cutAt} (line ${lastSeqLine(client.text.slice(0, cutAt))}, mid-batch); the session was at ${witnessAtRestore} on restore; all ${N} lines ${Math.round(resumedMs)} ms after restore`);
    } finally {
      await cleanUp();
    }
  }, 90_000);

  test("kill -9 of the server mid-output, restart: the client resumes with nothing lost", async () => {
    const killed = new ServerProcess(bins.server);
    try {
      await killed.start();
      const client0 = createApiClient(killed.url, killed.ownerToken);
      const N = 100_000;
      const label = await startSession(client0, pacedSeq(N, 60, 0.1)); // about 6 s of output
      let gone: Promise<void> = Promise.resolve();
      const { rec: client, faulted } = recordUntilFault(
        { url: client0.attachUrl(label), token: killed.ownerToken, offset: 0 },
        { from: 10_000, batch: Math.ceil(N / 60) },
        () => (gone = killed.kill9()),
      );

      const killedAt = await withTimeout(faulted, 20_000, "the kill");
      await gone;
      await killed.start();

      await client.waitForText((t) => t.endsWith(`\n${N}\r\n`), 45_000, `line ${N}`);
      expect(checkSeq(client.text, N)).toBeNull();
      expect(client.screens).toHaveLength(0);
      expect(client.gaps).toEqual([]);
      expect(client.attachedCount).toBeGreaterThanOrEqual(2);
      expect(killedAt).toBeLessThan(client.text.length);
      expect((await client0.get(label)).status).toBe("running");
    } finally {
      await cleanUp();
      await killed.stop();
    }
  }, 90_000);
});

describe("a graceful server stop", () => {
  test("SIGTERM mid-output: the server exits within 10 s telling links to dial again; restarted, the client resumes with nothing lost", async () => {
    const stopped = new ServerProcess(bins.server, { CATTY_LOG_FORMAT: "json" });
    try {
      await stopped.start();
      const client0 = createApiClient(stopped.url, stopped.ownerToken);
      const N = 60_000;
      const label = await startSession(client0, pacedSeq(N, 40, 0.1)); // about 4 s of output
      let exit: Promise<{ code: number | null; ms: number }> = Promise.resolve({ code: null, ms: 0 });
      const { rec: client, faulted } = recordUntilFault(
        { url: client0.attachUrl(label), token: stopped.ownerToken, offset: 0 },
        { from: 10_000, batch: Math.ceil(N / 40) },
        () => (exit = stopped.terminate()),
      );
      await withTimeout(faulted, 20_000, "the stop");
      const { code, ms } = await exit;
      expect(code).toBe(0);
      expect(ms).toBeLessThan(10_000);
      const lines = stopped.output.trim().split("\n").map((l) => JSON.parse(l) as { msg: string; level: string });
      expect(lines.map((l) => l.msg)).toContain("shutting down: links are told to dial again");
      await stopped.start();
      await client.waitForText((t) => t.endsWith(`\n${N}\r\n`), 45_000, `line ${N}`);
      expect(checkSeq(client.text, N)).toBeNull();
      expect(client.gaps).toEqual([]);
      expect(client.attachedCount).toBeGreaterThanOrEqual(2);
      expect((await client0.get(label)).status).toBe("running");
    } finally {
      await cleanUp();
      await stopped.stop();
    }
  }, 90_000);
});

describe("reconnecting", () => {
  test("a session that ended while the client was away: catty stops trying and says why", async () => {
    try {
      await using proxy = TcpProxy.start({ port: server.port });
      const tmux = cattyTerminal(proxy.url, server.ownerToken);
      tmux.type("catty new --no-upload --no-sync-back -- bash --norc --noprofile; echo NEW_EXIT=$?");
      const label = LABEL_RE.exec(await tmux.waitFor(LABEL_RE, 30_000))?.[1] as string;
      later(() => api.stop(label));
      tmux.type("echo before-the-cut-$((6+6))");
      await tmux.waitFor("before-the-cut-12");
      proxy.cut();
      await tmux.waitFor("Connection lost; reconnecting"); // the status line while it tries
      expect((await api.stop(label)).status).toBe("stopped");
      proxy.restore();
      const screen = await tmux.waitFor(/NEW_EXIT=\d+/, 20_000);
      expect(screen).toContain(`Session ${label} has ended (stopped: stopped by user)`);
      expect(screen).toContain(`catty new --from ${label}`);
      expect(screen).toContain("before-the-cut-12"); // its last screen
      expect(await exitCode(tmux, "NEW_EXIT")).toBe(1);
    } finally {
      await cleanUp();
    }
  }, 60_000);

  test("--no-auto-reconnect: a dropped link ends catty with a clear message, and the session runs on", async () => {
    try {
      await using proxy = TcpProxy.start({ port: server.port });
      const label = await startSession(api, "echo attached-$((2+2)); cat");
      const tmux = cattyTerminal(proxy.url, server.ownerToken);
      tmux.type(`catty connect ${label} --no-auto-reconnect --no-sync-back; echo CONNECT_EXIT=$?`);
      await tmux.waitFor("attached-4"); // the session's screen: catty is attached
      proxy.cut();
      const screen = await tmux.waitFor(/CONNECT_EXIT=\d+/, 15_000);
      expect(screen).toContain("The connection to the server was lost.");
      expect(screen).toContain("catty connect");
      expect(await exitCode(tmux, "CONNECT_EXIT")).toBe(1);
      expect((await api.get(label)).status).toBe("running");
    } finally {
      await cleanUp();
    }
  }, 60_000);

  // PRODUCT BUG (fails today): a client whose link was down while another client took the session
  // over takes it back when it reconnects on its own — the newer client is "taken over" by a stale
  // one, and keystrokes typed into the stale one during the outage land in the session. See the
  // report: the resuming hello should say which attachment it resumes, and the relay should answer
  // a superseded one with "takeover".
  test("a client taken over while it was away is told so when it comes back, and does not take the session back", async () => {
    try {
      await using proxy = TcpProxy.start({ port: server.port });
      const label = await startSession(api, "cat");
      const away = record({ url: createApiClient(proxy.url, server.ownerToken).attachUrl(label), token: server.ownerToken, offset: 0 });
      await waitFor(() => away.attachedCount === 1, { what: "the first client to attach" });
      proxy.cut();
      await waitFor(() => away.statuses.some((m) => m.startsWith("Connection lost")), { what: "the first client to notice" });
      away.send("typed-while-away\r");
      const newer = record({ url: api.attachUrl(label), token: server.ownerToken, offset: null });
      await waitFor(() => newer.attachedCount === 1, { what: "the second client to attach" });
      newer.send("from-the-newer-one\r");
      await newer.waitForText("from-the-newer-one\r\n");
      proxy.restore();
      await waitFor(() => away.outcomeNow !== null || away.attachedCount > 1, { timeoutMs: 15_000, what: "the first client to come back" });
      expect(away.outcomeNow).toEqual({ kind: "takeover" });
      newer.send("still-in-charge\r");
      await newer.waitForText("still-in-charge\r\n");
      expect(newer.outcomeNow).toBeNull();
      expect(newer.text).not.toContain("typed-while-away");
    } finally {
      await cleanUp();
    }
  }, 60_000);

  // PRODUCT BUG (fails today): when a path dies without a reset (Wi-Fi gone, laptop asleep), the
  // client notices after 30-40 s and then waits ~30 s more for a WebSocket closing handshake that
  // cannot complete; the agent does the same. Reattach took ~72 s here. See the report.
  test("a link that goes silent (no reset) is noticed and replaced within 30 s, on the client's and the agent's side", async () => {
    // The agent dials the server through a proxy too (CATTY_PUBLIC_URL is what agents dial).
    const agentPath = TcpProxy.start({ port: 0 });
    // No save in flight when the path dies: a save request lost with the link holds up the stop
    // at the end for a minute (the agent waits 60 s for its answer; see the report).
    const srv = new ServerProcess(bins.server, { CATTY_PUBLIC_URL: agentPath.url, CATTY_SAVE_FIRST_MS: "600000" });
    agentPath.target.port = srv.port;
    try {
      await srv.start();
      const direct = createApiClient(srv.url, srv.ownerToken);
      await using clientPath = TcpProxy.start({ port: srv.port });
      const label = await startSession(direct, "while :; do echo tick-$SECONDS; sleep 0.5; done");
      const client = record({ url: createApiClient(clientPath.url, srv.ownerToken).attachUrl(label), token: srv.ownerToken, offset: 0 });
      await client.waitForText("tick-", 20_000);
      expect(agentPath.accepted).toBe(1);

      clientPath.silence();
      agentPath.silence();
      const silencedAt = performance.now();
      let clientBack: number | null = null;
      let agentBack: number | null = null;
      await waitFor(
        () => {
          if (clientBack === null && client.attachedCount >= 2) clientBack = performance.now() - silencedAt;
          if (agentBack === null && agentPath.accepted >= 2) agentBack = performance.now() - silencedAt;
          return clientBack !== null && agentBack !== null;
        },
        { timeoutMs: 35_000, intervalMs: 100, what: "the client and the agent to come back" },
      ).catch(() => null);
      console.log(`silent path: client back after ${clientBack ?? "> 35000"} ms, agent after ${agentBack ?? "> 35000"} ms`);
      expect(clientBack ?? Infinity).toBeLessThan(31_000);
      expect(agentBack ?? Infinity).toBeLessThan(31_000);

      // And nothing was lost meanwhile.
      const before = client.text.length;
      await client.waitForText((t) => t.length > before && t.endsWith("\r\n"), 10_000, "more ticks");
      expect(client.gaps).toEqual([]);
      expect(client.screens).toHaveLength(0);
    } finally {
      await cleanUp();
      await srv.stop();
      agentPath.stop();
    }
  }, 90_000);
});

describe("screen restore after the ring has been overrun", () => {
  /** A server whose agents keep only 32 KiB of output. */
  let small: ServerProcess;
  let proxy: TcpProxy;
  /** catty, attached through the proxy. */
  let remote: Tmux;
  /** The same programs run directly, no catty. */
  let local: Tmux;
  let witness: Recorder;
  let label: string;
  let file: string;

  beforeAll(async () => {
    small = new ServerProcess(bins.server, { CATTY_RING_BYTES: "32768" });
    await small.start();
    proxy = TcpProxy.start({ port: small.port });
    file = join(scratch, "notes.txt");
    writeFileSync(
      file,
      Array.from({ length: 300 }, (_, i) => `line ${i + 1}: ${"the quick brown fox jumps over the lazy dog ".repeat(1 + (i % 4))}`.trimEnd()).join("\n") + "\n",
    );
    const home = mkdtempSync(join(scratch, "home-"));
    const path = `${bins.dir}:${process.env.PATH}`;
    remote = new Tmux({ HOME: home, CATTY_HOME: home, CATTY_API_ADDR: proxy.url, CATTY_TOKEN: small.ownerToken, PATH: path, PS1: "$ " });
    remote.start({ cols: COLS, rows: ROWS, cwd: scratch });
    local = new Tmux({ HOME: home, PATH: path, PS1: "$ " });
    local.start({ cols: COLS, rows: ROWS, cwd: scratch });
    // The session's shell: no PS1 from the environment, TERM=xterm-256color. The same here.
    local.type(`exec env ${SAME_PROMPT} TERM=xterm-256color bash --norc --noprofile`);
    await local.waitFor(BASH_PROMPT);

    remote.type(`catty new --no-upload --no-sync-back -- env ${SAME_PROMPT} bash --norc --noprofile; echo NEW_EXIT=$?`);
    label = LABEL_RE.exec(await remote.waitFor(LABEL_RE, 30_000))?.[1] as string;
    await remote.waitFor(BASH_PROMPT, 30_000);
    // Watches the session directly, so the test knows when the output it missed is all there.
    witness = new Recorder({ url: createApiClient(small.url, small.ownerToken).attachUrl(label), token: small.ownerToken, mode: "view", offset: null });
  }, 90_000);

  afterAll(async () => {
    witness?.close();
    remote?.kill();
    local?.kill();
    proxy?.stop();
    await small?.stop();
  });

  /**
   * Types `command` in the session, waits for its echo, cuts the link before the program prints
   * (`sleep 2` first), waits until the session has printed `done` (seen by the witness), restores
   * the link and lets catty reconnect by itself.
   */
  async function printWhileCut(command: string, done: (text: string) => boolean): Promise<void> {
    const from = witness.text.length;
    remote.type(`sleep 2; ${command}`);
    await remote.waitFor(`sleep 2; ${command}`);
    proxy.cut();
    await witness.waitForText((t) => done(t.slice(from)), 30_000, `the session to print ${command}`);
    proxy.restore();
  }

  test("a shell that printed 100000 lines while the link was down", async () => {
    remote.type("clear");
    local.type("clear");
    await waitForSameScreen(remote, local);
    await printWhileCut("seq 1 100000", (t) => /\n100000\r\n[^]*[$#] $/.test(t));
    local.type("sleep 2; seq 1 100000");
    await local.waitFor(/^100000\n/m);
    // Same screen (text, cursor, normal screen) once catty has reconnected and repainted.
    await waitForSameScreen(remote, local, 20_000, "the resumed shell and the local one");
    // The ring was overrun: a client asking for everything from the start gets a screen instead.
    const late = new Recorder({ url: createApiClient(small.url, small.ownerToken).attachUrl(label), token: small.ownerToken, mode: "view", offset: 0 });
    try {
      await waitFor(() => late.screens.length > 0, { what: "a screen for offset 0" });
      expect(late.screens[0]?.offset).toBeGreaterThan(32768);
    } finally {
      late.close();
    }
  }, 60_000);

  test("vim started while the link was down", async () => {
    remote.type("clear");
    local.type("clear");
    await waitForSameScreen(remote, local);
    const vim = `seq 1 100000; vim -u NONE -N -n +150 ${file}`;
    await printWhileCut(vim, (t) => t.includes("line 150:") && t.includes(`"${file}" 300L`));
    local.type(`sleep 2; ${vim}`);
    await local.waitFor(`"${file}" 300L`);
    await waitForSameScreen(remote, local, 20_000, "vim resumed and vim run locally");

    // The same after detaching and `catty connect` in a fresh terminal (the first Ctrl+C reaches vim).
    remote.keys("C-c");
    local.keys("C-c");
    remote.keys("C-c");
    await remote.waitFor(/NEW_EXIT=0/);
    remote.type("clear");
    remote.type(`catty connect ${label}; echo CONNECT_EXIT=$?`);
    await waitForSameScreen(remote, local, 20_000, "vim after catty connect and vim run locally");

    // Both edit on from there alike.
    for (const t of [remote, local]) {
      t.keys("G", "o");
      t.type("typed after the resume", false);
      t.keys("Escape");
    }
    await waitForSameScreen(remote, local, 10_000, "vim after more editing");
    remote.type(":q!");
    await remote.waitFor(BASH_PROMPT);
    remote.type("exit 0");
    expect(await exitCode(remote, "CONNECT_EXIT")).toBe(0);
  }, 90_000);
});

describe("screen restore within the ring", () => {
  // PRODUCT BUG (fails today): catty's "Connection lost; reconnecting…" status line stays drawn
  // after a resume that replays from the ring (nothing clears it: src/terminal/attach.ts passes no
  // `attached` handler to SessionLink), so the replayed output scrolls it into the program's
  // screen. Fix: clear the status (and repaint) on every (re)attach. See the report.
  test("a short cut while the shell prints: the resumed screen equals a local terminal's", async () => {
    try {
      await using proxy = TcpProxy.start({ port: server.port });
      const home = mkdtempSync(join(scratch, "home-"));
      const path = `${bins.dir}:${process.env.PATH}`;
      const remote = new Tmux({ HOME: home, CATTY_HOME: home, CATTY_API_ADDR: proxy.url, CATTY_TOKEN: server.ownerToken, PATH: path, PS1: "$ " });
      remote.start({ cols: COLS, rows: ROWS, cwd: scratch });
      later(() => remote.kill());
      const local = new Tmux({ HOME: home, PATH: path, PS1: "$ " });
      local.start({ cols: COLS, rows: ROWS, cwd: scratch });
      later(() => local.kill());
      local.type(`exec env ${SAME_PROMPT} TERM=xterm-256color bash --norc --noprofile`);

      remote.type(`catty new --no-upload --no-sync-back -- env ${SAME_PROMPT} bash --norc --noprofile`);
      const label = LABEL_RE.exec(await remote.waitFor(LABEL_RE, 30_000))?.[1] as string;
      later(() => api.stop(label));
      await remote.waitFor(BASH_PROMPT, 30_000);
      remote.type("clear");
      local.type("clear");
      await waitForSameScreen(remote, local);

      const witness = record({ url: api.attachUrl(label), token: server.ownerToken, mode: "view", offset: null });
      await waitFor(() => witness.screens.length > 0, { what: "the witness's screen" });
      remote.type("sleep 2; seq 1 50");
      await remote.waitFor("sleep 2; seq 1 50");
      proxy.cut();
      await witness.waitForText(/\n50\r\n[^]*[$#] $/, 15_000);
      await remote.waitFor("catty: Connection lost; reconnecting"); // the status line, meanwhile
      proxy.restore();
      local.type("sleep 2; seq 1 50");
      await local.waitFor(/^50\n/m);
      await waitForSameScreen(remote, local, 10_000, "the resumed shell and the local one");
    } finally {
      await cleanUp();
    }
  }, 60_000);
});

describe("clients", () => {
  test("takeover: a second interactive catty connect takes over; the first says so and exits 0", async () => {
    try {
      const first = cattyTerminal(server.url, server.ownerToken);
      first.type("catty new --no-upload --no-sync-back -- bash --norc --noprofile; echo NEW_EXIT=$?");
      const label = LABEL_RE.exec(await first.waitFor(LABEL_RE, 30_000))?.[1] as string;
      later(() => api.stop(label));
      first.type("echo first-$((20+1))");
      await first.waitFor("first-21");

      const second = cattyTerminal(server.url, server.ownerToken);
      second.type(`catty connect ${label}; echo CONNECT_EXIT=$?`);
      await first.waitFor("Taken over by another client");
      expect(await exitCode(first, "NEW_EXIT")).toBe(0);
      // The second one has the session's screen and drives it.
      await second.waitFor("first-21");
      second.type("echo second-$((20+2))");
      await second.waitFor("second-22");
      expect((await api.get(label)).status).toBe("running");

      // And a third takes it over from the second.
      first.type("clear");
      first.type(`catty connect ${label}; echo RECONNECT_EXIT=$?`);
      await second.waitFor("Taken over by another client");
      expect(await exitCode(second, "CONNECT_EXIT")).toBe(0);
      first.type("echo third-$((20+3))");
      await first.waitFor("third-23");
      first.type("exit 0");
      expect(await exitCode(first, "RECONNECT_EXIT")).toBe(0);
    } finally {
      await cleanUp();
    }
  }, 90_000);

  test("viewers: catty connect --view shows the output; its input never reaches the program, and it is told once", async () => {
    try {
      const driver = cattyTerminal(server.url, server.ownerToken);
      driver.type("catty new --no-upload --no-sync-back -- bash --norc --noprofile; echo NEW_EXIT=$?");
      const label = LABEL_RE.exec(await driver.waitFor(LABEL_RE, 30_000))?.[1] as string;
      later(() => api.stop(label));
      driver.type("echo before-view-$((3+4))");
      await driver.waitFor("before-view-7");

      const viewer = cattyTerminal(server.url, server.ownerToken);
      viewer.type(`catty connect ${label} --view; echo VIEW_EXIT=$?`);
      await viewer.waitFor("before-view-7"); // the screen as it was
      driver.type("echo live-$((5*5))");
      await viewer.waitFor("live-25"); // and live output

      // A programmatic viewer alongside counts the notices.
      const probe = record({ url: api.attachUrl(label), token: server.ownerToken, mode: "view", offset: null });
      await waitFor(() => probe.screens.length > 0, { what: "the probe's screen" });

      viewer.type("echo viewer-typed-$((6*7))");
      await viewer.waitFor("view only: your input is not sent");
      probe.send("echo probe-typed-$((7*7))\r");
      probe.send("echo probe-typed-again\r");
      // Messages on one link are handled in order: once the repaint is back, both inputs were seen.
      probe.link.repaint();
      await waitFor(() => probe.screens.length > 1, { what: "the probe's repaint" });
      expect(probe.viewOnlyCount).toBe(1);

      // None of it reached the program: the driver's next command runs on a clean line.
      driver.type("echo after-view-$((8*8))");
      await driver.waitFor("after-view-64");
      await viewer.waitFor("after-view-64");
      for (const screen of [driver.capture(), viewer.capture()]) {
        expect(screen).not.toContain("viewer-typed");
        expect(screen).not.toContain("probe-typed");
      }
      expect(probe.text).not.toContain("typed");

      // The viewer is told once: more typing, no second notice.
      await waitFor(() => !viewer.capture().includes("view only"), { timeoutMs: 10_000, what: "the notice to go" });
      viewer.type("echo viewer-typed-again");
      driver.type("echo after-again-$((9*9))");
      await viewer.waitFor("after-again-81");
      expect(viewer.capture()).not.toContain("view only");
      expect(driver.capture()).not.toContain("viewer-typed");

      // The session ends: the viewer is told and exits with the program's code, like the driver.
      driver.type("exit 5");
      expect(await exitCode(driver, "NEW_EXIT")).toBe(5);
      expect(await exitCode(viewer, "VIEW_EXIT")).toBe(5);
    } finally {
      await cleanUp();
    }
  }, 90_000);
});
