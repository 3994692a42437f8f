/**
 * How sessions end, end to end with the real binaries: the idle timeout and the maximum duration
 * (status `timed_out`, with the final save), `catty connect` on an ended session (last screen, why,
 * what to do next), `catty new --from LABEL`, and an agent killed with `kill -9` (status `failed`,
 * its latest save still downloadable). The server runs with short timeouts and a fast lifecycle tick.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApiClient, type ApiClient } from "../../src/client/api.ts";
import type { Session } from "../../src/protocol/index.ts";
import { buildBinaries, type Binaries } from "../helpers/binaries.ts";
import { ServerProcess } from "../helpers/server-process.ts";
import { Tmux } from "../helpers/tmux.ts";
import { waitFor } from "../helpers/wait.ts";

const LABEL_RE = /Session ([a-z]+-[a-z]+-\d{4}) started/;
const SUGGESTIONS = ["catty download", "catty sync", "catty new --from"];

let bins: Binaries;
let server: ServerProcess;
let api: ApiClient;
let scratch: string;
let home: string;
let tmux: Tmux;
let marks = 0;

function env(): Record<string, string | undefined> {
  return { ...process.env, HOME: home, CATTY_HOME: home, CATTY_API_ADDR: server.url, CATTY_TOKEN: server.ownerToken };
}

async function cli(args: string[], cwd = scratch): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([bins.catty, ...args], { cwd, env: env(), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

function waitForStatus(label: string, statuses: string[], timeoutMs = 20_000): Promise<Session> {
  return waitFor(
    async () => {
      const s = await api.get(label);
      return statuses.includes(s.status) ? s : null;
    },
    { timeoutMs, what: `${label} to be ${statuses.join(" or ")}` },
  );
}

/** Runs `line` through the tmux shell with an exit-code marker; returns the marker to wait on. */
function runInTmux(line: string): string {
  const marker = `EXIT_${++marks}`;
  tmux.type("clear");
  tmux.type(`${line}; echo ${marker}=$?`);
  return marker;
}

async function exitCode(marker: string, timeoutMs = 20_000): Promise<{ code: number; screen: string }> {
  const re = new RegExp(`${marker}=(\\d+)`);
  const screen = await tmux.waitFor(re, timeoutMs);
  return { code: Number(re.exec(screen)?.[1]), screen };
}

/** `catty new FLAGS -- bash` in tmux, from `cwd`; resolves with the label once bash answers. */
async function newSession(flags: string, cwd = scratch): Promise<{ label: string; marker: string }> {
  const marker = runInTmux(`cd ${cwd} && catty new ${flags} -- bash --norc --noprofile`);
  const label = LABEL_RE.exec(await tmux.waitFor(LABEL_RE, 30_000))?.[1] as string;
  tmux.type(`echo ready-$((${++marks}+${marks}))`);
  await tmux.waitFor(`ready-${marks * 2}`, 30_000);
  return { label, marker };
}

async function detach(label: string, marker: string): Promise<void> {
  tmux.keys("C-c");
  tmux.keys("C-c");
  await tmux.waitFor(`Detached from ${label}`);
  expect((await exitCode(marker)).code).toBe(0);
}

function sessionDir(label: string): string {
  return join(server.dataDir, "sessions", label);
}

/** Linux: the direct children of a process. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

beforeAll(async () => {
  bins = await buildBinaries();
  scratch = mkdtempSync(join(tmpdir(), "catty-lifecycle-"));
  home = join(scratch, "home");
  mkdirSync(home);
  server = new ServerProcess(bins.server, {
    CATTY_LIFECYCLE_TICK_MS: "200",
    CATTY_MIN_DURATION_MS: "1000",
    CATTY_AGENT_LOST_MS: "1000",
    CATTY_SAVE_FIRST_MS: "500",
  });
  await server.start();
  api = createApiClient(server.url, server.ownerToken);
  tmux = new Tmux({ HOME: home, CATTY_HOME: home, CATTY_API_ADDR: server.url, CATTY_TOKEN: server.ownerToken, PATH: `${bins.dir}:${process.env.PATH}`, PS1: "$ " });
  tmux.start({ cols: 200, rows: 40, cwd: scratch });
}, 120_000);

afterAll(async () => {
  tmux?.kill();
  if (api) {
    const live = (await api.list().catch(() => [])).filter((s) => ["starting", "running", "stopping"].includes(s.status));
    await Promise.all(live.map((s) => api.stop(s.label).catch(() => null)));
  }
  await server?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe("session ending", () => {
  test("idle timeout: timed_out with the final save; catty connect then shows the last screen, why, and what to do", async () => {
    const { label, marker } = await newSession("--no-upload --no-sync-back --idle-timeout 2s");
    tmux.type("echo last-words-$((40+2))");
    await tmux.waitFor("last-words-42");
    // No input, no output: the client that stays attached is told why the session ended.
    const ended = await exitCode(marker, 20_000);
    expect(ended.screen).toContain(`Session ${label} timed out: idle for 2s (no input or output)`);
    expect(ended.screen).toContain(`catty new --from ${label}`);
    expect(ended.code).toBe(129); // bash, ended with SIGHUP

    const s = await waitForStatus(label, ["timed_out"]);
    expect(s.endReason).toMatch(/idle/);
    expect(s.finalSave).not.toBeNull();
    expect(s.finalSave).toMatch(/^(stored|unchanged)$/);
    expect(s.endedAt).not.toBeNull();

    const connect = runInTmux(`catty connect ${label}`);
    const { code, screen } = await exitCode(connect);
    expect(code).toBe(1);
    expect(screen).toContain("last-words-42"); // the last screen
    expect(screen).toContain(`Session ${label} has ended (timed_out: idle for 2s (no input or output))`);
    for (const hint of SUGGESTIONS) expect(screen).toContain(hint);
  }, 60_000);

  test("idle timeout: output alone keeps a session alive", async () => {
    const busy = await api.create({ command: ["bash", "-c", "while :; do echo tick; sleep 0.3; done"], idleTimeoutMs: 2000, cols: 80, rows: 24 });
    try {
      await waitForStatus(busy.label, ["running"]);
      // Until the server has seen output more than twice the idle timeout after the start (or the
      // session ended, which fails the test): output all along kept it alive.
      const seen = await waitFor(
        async () => {
          const s = await api.get(busy.label);
          const active = s.lastActivityAt ? Date.parse(s.lastActivityAt) - Date.parse(s.createdAt) : 0;
          return s.status !== "running" || active > 4_000 ? s : null;
        },
        { timeoutMs: 20_000, what: "output seen for twice the idle timeout" },
      );
      expect(seen.status).toBe("running");
    } finally {
      await api.stop(busy.label);
    }
  }, 30_000);

  test("maximum duration: timed_out with a reason that names the duration", async () => {
    const started = Date.now();
    const { label, marker } = await newSession("--no-upload --no-sync-back --duration 2s");
    // Input keeps it busy: the duration ends it anyway.
    for (let i = 0; i < 3 && Date.now() - started < 1500; i++) tmux.type(`echo busy-${i}`);
    const ended = await exitCode(marker, 20_000);
    expect(ended.screen).toContain(`Session ${label} timed out: reached its maximum duration of 2s`);

    const s = await waitForStatus(label, ["timed_out"]);
    expect(s.endReason).toMatch(/maximum duration of 2s/);
    expect(s.finalSave).not.toBeNull();
    expect(s.expiresAt).not.toBeNull();

    // A duration outside the server's range is refused with the range.
    const refused = runInTmux("catty new --no-upload --duration 9h -- true");
    const { code, screen } = await exitCode(refused);
    expect(code).toBe(1);
    expect(screen).toMatch(/duration must be between 1s and 8h/);
  }, 60_000);

  test("catty new --from LABEL starts from the latest save of a stopped session", async () => {
    const project = join(scratch, "from-project");
    mkdirSync(project);
    writeFileSync(join(project, "uploaded.txt"), "uploaded with catty new\n");
    const first = await newSession("--no-sync-back", project);
    tmux.type("echo made in the first session > made.txt; echo made-$((1+2))");
    await tmux.waitFor("made-3");
    await detach(first.label, first.marker);
    const stop = await cli(["stop", first.label]);
    expect(stop.code).toBe(0);
    const stopped = await waitForStatus(first.label, ["stopped"]);
    expect(stopped.finalSave).toBe("stored");
    expect(stopped.saves.length).toBeGreaterThanOrEqual(1);

    // catty connect on the stopped session: last screen, why, what to do.
    const connect = runInTmux(`catty connect ${first.label}`);
    const ended = await exitCode(connect);
    expect(ended.code).toBe(1);
    expect(ended.screen).toContain("made-3");
    expect(ended.screen).toContain(`Session ${first.label} has ended (stopped: stopped by user)`);
    for (const hint of SUGGESTIONS) expect(ended.screen).toContain(hint);

    // A new session from it, started in an empty directory, has the first one's files.
    const elsewhere = join(scratch, "from-elsewhere");
    mkdirSync(elsewhere);
    const second = await newSession(`--no-sync-back --from ${first.label}`, elsewhere);
    expect(second.label).not.toBe(first.label);
    tmux.type("cat made.txt uploaded.txt; echo listed-$((2+3))");
    const screen = await tmux.waitFor("listed-5");
    expect(screen).toContain("made in the first session");
    expect(screen).toContain("uploaded with catty new");
    expect(readFileSync(join(sessionDir(second.label), "workspace", "made.txt"), "utf8")).toBe("made in the first session\n");
    expect(existsSync(join(elsewhere, "made.txt"))).toBe(false); // nothing was uploaded from here or synced back
    tmux.type("exit 0");
    expect((await exitCode(second.marker)).code).toBe(0);

    // A label that does not exist is a clear error.
    const missing = runInTmux("catty new --from brave-tiger-0000 -- true");
    const res = await exitCode(missing);
    expect(res.code).toBe(1);
    expect(res.screen).toContain("Session brave-tiger-0000 not found");
  }, 90_000);

  test("an agent killed with kill -9: the session fails with the reason, and its latest save stays downloadable", async () => {
    const project = join(scratch, "failed-project");
    mkdirSync(project);
    writeFileSync(join(project, "precious.txt"), "keep me\n");
    const { label, marker } = await newSession("--no-sync-back", project);
    await waitFor(async () => (await api.get(label)).saves.length >= 1, { timeoutMs: 20_000, what: "the first save" });

    const pid = Number(readFileSync(join(sessionDir(label), "agent.pid"), "utf8").trim());
    const program = childrenOf(pid);
    process.kill(pid, "SIGKILL");
    for (const child of program) {
      try {
        process.kill(child, "SIGKILL");
      } catch {
        // gone with its terminal
      }
    }

    // The attached client is told, and exits 1.
    const ended = await exitCode(marker, 20_000);
    expect(ended.code).toBe(1);
    expect(ended.screen).toContain(`Session ${label} failed: the session machine went away`);
    const s = await waitForStatus(label, ["failed"]);
    expect(s.endReason).toMatch(/went away/);
    expect(s.endedAt).not.toBeNull();

    // catty connect says it failed and why (an agent that died left no last screen).
    const connect = runInTmux(`catty connect ${label}`);
    const told = await exitCode(connect);
    expect(told.code).toBe(1);
    expect(told.screen).toContain(`Session ${label} has ended (failed: the session machine went away`);
    for (const hint of SUGGESTIONS) expect(told.screen).toContain(hint);

    const out = join(scratch, "failed-download");
    const down = await cli(["download", label, out]);
    expect(down.stderr).toContain("Downloaded");
    expect(down.code).toBe(0);
    expect(readFileSync(join(out, "precious.txt"), "utf8")).toBe("keep me\n");

    // And a new session can start from it (recovery after a crash).
    const recovered = await api.create({ command: ["sleep", "600"], from: label, cols: 80, rows: 24 });
    try {
      await waitFor(() => existsSync(join(sessionDir(recovered.label), "workspace", "precious.txt")), {
        timeoutMs: 20_000,
        what: "the recovered workspace",
      });
    } finally {
      await api.stop(recovered.label);
    }
  }, 90_000);
});
