/**
 * Predictive local echo end to end: `catty` in tmux attached through a proxy that delays each
 * direction by half of a 150 ms round trip. Typed at a bash prompt, every character shows on the
 * client's screen long before its echo could, underlined until the echo comes; then the line is
 * exactly what the program drew (no underline left, the same as a viewer without prediction),
 * and the program got every byte once. A program that echoes uppercase has the guess replaced by
 * its own character when its echo arrives.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApiClient, type ApiClient } from "../../src/client/api.ts";
import { buildBinaries, type Binaries } from "../helpers/binaries.ts";
import { DelayProxy } from "../helpers/delay-proxy.ts";
import { TcpProxy } from "../helpers/proxy.ts";
import { ServerProcess } from "../helpers/server-process.ts";
import { Tmux } from "../helpers/tmux.ts";
import { waitFor } from "../helpers/wait.ts";

const LABEL_RE = /Session ([a-z]+-[a-z]+-\d{4}) started/;
const RTT_MS = 150;

let bins: Binaries;
let scratch: string;
let server: ServerProcess;
let api: ApiClient;
const cleanups: Array<() => void | Promise<unknown>> = [];

function terminal(apiUrl: string, extra: Record<string, string> = {}): Tmux {
  const home = mkdtempSync(join(scratch, "home-"));
  const tmux = new Tmux({ HOME: home, CATTY_HOME: home, CATTY_API_ADDR: apiUrl, CATTY_TOKEN: server.ownerToken, PATH: `${bins.dir}:${process.env.PATH}`, PS1: "$ ", ...extra });
  tmux.start({ cols: 100, rows: 20, cwd: scratch });
  cleanups.push(() => tmux.kill());
  return tmux;
}

/** The row of the screen that starts with `prefix` (the last such row). */
function rowOf(screen: string, prefix: string): string | undefined {
  return screen.split("\n").filter((l) => l.startsWith(prefix)).at(-1);
}

beforeAll(async () => {
  bins = await buildBinaries();
  scratch = mkdtempSync(join(tmpdir(), "catty-predict-"));
  server = new ServerProcess(bins.server);
  await server.start();
  api = createApiClient(server.url, server.ownerToken);
}, 120_000);

afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await server?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe("predictive local echo at 150 ms round trip", () => {
  test("a 40-character line typed into bash: each character shows at once, the line ends as the program drew it", async () => {
    using proxy = DelayProxy.start({ port: server.port, rttMs: RTT_MS });
    const tmux = terminal(proxy.url, { CATTY_PREDICT: "auto" });
    tmux.type("catty new --no-upload --no-sync-back -- bash --norc --noprofile; echo NEW_EXIT=$?");
    const label = LABEL_RE.exec(await tmux.waitFor(LABEL_RE, 30_000))?.[1] as string;
    cleanups.push(() => api.stop(label).catch(() => {}));
    tmux.type("PS1='%% '");
    await tmux.waitFor(/^%%\s*$/m);
    // The prompt earns its trust: its echo confirmed once (a new prompt is tentative).
    tmux.type("echo warm-up", false);
    await tmux.waitFor(/^%% echo warm-up/m);
    tmux.keys("Enter");
    await tmux.waitFor(/^warm-up$/m);
    await tmux.waitFor(/^%%\s*$/m);

    const line = "echo the-quick-brown-fox-jumps-over-it-1";
    expect(line).toHaveLength(40);
    const shownMs: number[] = [];
    for (let i = 0; i < line.length; i++) {
      // From the moment the terminal has the key (send-keys returns once tmux took it).
      tmux.type(line[i] as string, false);
      const started = performance.now();
      const want = `%% ${line.slice(0, i + 1)}`.trimEnd();
      await waitFor(() => rowOf(tmux.capture(), "%%")?.trimEnd() === want, { intervalMs: 1, timeoutMs: 5_000, what: want });
      shownMs.push(performance.now() - started);
    }
    const sorted = [...shownMs].sort((a, b) => a - b);
    console.log(`shown after (ms): p50 ${sorted[20]?.toFixed(1)}, max ${sorted.at(-1)?.toFixed(1)}`);
    // Every character before its echo could have come (half the round trip). How soon (the 20 ms
    // goal) is the benchmark's to measure (bench/predict.ts): a test is not a timing.
    expect(shownMs.filter((ms) => ms >= RTT_MS / 2)).toEqual([]);

    // Once the echo is in: nothing underlined, the same row a viewer without prediction shows.
    await waitFor(() => {
      const row = rowOf(tmux.captureAttributes(), "%%");
      return row !== undefined && !row.includes("\x1b[4m") && row.includes(line);
    }, { what: "the echo of the whole line" });
    const viewer = terminal(server.url);
    viewer.type(`catty connect --view --predict never ${label}`);
    await waitFor(() => rowOf(viewer.capture(), "%%")?.trimEnd() === `%% ${line}`, { what: "the viewer's row" });
    expect(rowOf(tmux.capture(), "%%")?.trimEnd()).toBe(`%% ${line}`);
    // The program got every byte once.
    tmux.keys("Enter");
    await tmux.waitFor(/^the-quick-brown-fox-jumps-over-it-1$/m);

    // A program that echoes uppercase, with prediction always on (a client that takes over): the
    // lowercase guess shows at once, and the program's own character replaces it when its echo arrives.
    tmux.type("printf 'UP> '; stty -echo -icanon; while IFS= read -r -n1 c; do printf '%s' \"${c^^}\"; done");
    await tmux.waitFor(/^UP>/m);
    const always = terminal(proxy.url, { CATTY_PREDICT: "always" });
    always.type(`catty connect ${label}`);
    await always.waitFor(/^UP>/m);
    always.type("q", false);
    const typed = performance.now();
    await waitFor(() => rowOf(always.captureAttributes(), "UP>")?.includes("\x1b[4mq"), { intervalMs: 1, what: "the underlined guess" });
    const guessMs = performance.now() - typed;
    await waitFor(() => {
      const row = rowOf(always.captureAttributes(), "UP>");
      return row !== undefined && row.includes("Q") && !row.includes("q");
    }, { intervalMs: 1, what: "the program's Q" });
    const correctedMs = performance.now() - typed;
    console.log(`uppercase: guess shown after ${guessMs.toFixed(1)} ms, corrected after ${correctedMs.toFixed(1)} ms`);
    // Guessed before the echo could come; corrected when it came (how soon is printed above, and
    // the benchmark's to measure), and never left there.
    expect(guessMs).toBeLessThan(RTT_MS / 2);
    expect(correctedMs).toBeGreaterThan(guessMs);
    expect(rowOf(always.captureAttributes(), "UP>")).not.toContain("\x1b[4m");
  }, 120_000);

  test("typing while the link is down shows at once, is held, and reaches the program once when it is back", async () => {
    await using proxy = TcpProxy.start({ port: server.port });
    const tmux = terminal(proxy.url, { CATTY_PREDICT: "auto" });
    tmux.type("catty new --no-upload --no-sync-back -- bash --norc --noprofile; echo NEW_EXIT=$?");
    const label = LABEL_RE.exec(await tmux.waitFor(LABEL_RE, 30_000))?.[1] as string;
    cleanups.push(() => api.stop(label).catch(() => {}));
    tmux.type("PS1='%% '");
    await tmux.waitFor(/^%%\s*$/m);
    proxy.cut();
    await tmux.waitFor("Connection lost");
    tmux.type("echo held-while-down", false);
    // Shown as typed though nothing can reach the session, and the status line says it is held.
    await tmux.waitFor(/^%% echo held-while-down/m);
    await tmux.waitFor("what you type is held");
    tmux.keys("Enter");
    proxy.restore();
    const screen = await tmux.waitFor(/^held-while-down$/m, 30_000);
    // Sent once, in order: one command line, one output line.
    expect(screen.split("\n").filter((l) => l.startsWith("%% echo held-while-down"))).toHaveLength(1);
    expect(screen.split("\n").filter((l) => l === "held-while-down")).toHaveLength(1);
  }, 120_000);
});
