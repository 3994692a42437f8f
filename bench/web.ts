/**
 * The dashboard as a browser shows it (headless Chromium through playwright-core, as the tests
 * drive it), against a real `catty-server` process and a session running `cat` in raw mode after
 * it printed a marker:
 *
 * - current screen: from the start of the navigation to `/s/<label>` until the terminal holds the
 *   marker (read from xterm.js's buffer in the page, checked every frame; `performance.now()` counts
 *   from the navigation's start) — cold (a fresh browser profile, nothing cached) and warm (a
 *   reload, assets cached); target: warm p50 ≤ 500 ms;
 * - keystroke echo: a key pressed in the page, from its keydown event (the page's clock) until its
 *   echo is parsed into xterm.js's model (the box's `terminal-output` event), against the compiled
 *   `catty connect` under a PTY (a byte written to its master until the echo is back on it), in
 *   the same run, taking turns; neither counts painting. Target: browser p50 ≤ 2× the CLI's.
 *
 *   ./node_modules/.bin/bun bench/web.ts [--rounds 10] [--keys 100] [--bin-dir DIR]
 *
 * Needs Debian's chromium (test/setup/install-deps.ts installs it). Cleans up everything it started.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Page } from "playwright-core";
import { createApiClient } from "../src/client/api.ts";
import { PROTOCOL_VERSION } from "../src/protocol/index.ts";
import { launchBrowser } from "../test/helpers/browser.ts";
import { benchTempDir, cleanups, compiledBinaries, percentile, runBench, spawnInPty, startServerProcess, wholeNumbers, withDeadline } from "./harness.ts";

const TARGET_WARM_MS = 500;
const TARGET_ECHO_RATIO = 2;
/** Prints CURRENT-SCREEN (never as one word in a command line), then echoes keys. */
const PROGRAM = `printf '%s-%s\\n' CURRENT SCREEN; stty raw -echo; exec cat`;
/** The page's globals these benchmarks read (this file is not compiled with the DOM's types). */
type PageGlobals = { document: { querySelector(s: string): { screenText?: () => string } | null }; performance: { now(): number } };
interface EchoProbe {
  t0: number | null;
  end: number | null;
}
type EchoGlobals = {
  __echo?: EchoProbe;
  document: {
    querySelector(s: string): { screenText?: () => string; addEventListener(t: string, f: () => void): void; removeEventListener(t: string, f: () => void): void } | null;
    addEventListener(t: "keydown", f: (e: { timeStamp: number }) => void, o: { capture: boolean; once: boolean }): void;
  };
  performance: { now(): number };
};

const stats = (xs: number[]): { p50: number; p99: number } => {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99) };
};
const ms = (v: number): string => `${v.toFixed(1)} ms`.padStart(11);

/** Navigates (or reloads) and resolves to the ms from the navigation's start until the marker is on screen. */
async function toCurrentScreen(page: Page, url: string, reload: boolean): Promise<number> {
  if (reload) await page.reload({ waitUntil: "commit" });
  else await page.goto(url, { waitUntil: "commit" });
  // Runs in the page (the page's CSP allows no string evaluation): the terminal's buffer, every frame.
  const at = await page.waitForFunction(
    () => {
      const g = globalThis as unknown as PageGlobals;
      return (g.document.querySelector(".term")?.screenText?.() ?? "").includes("CURRENT-SCREEN") ? g.performance.now() : null;
    },
    null,
    { polling: "raf", timeout: 30_000 },
  );
  return (await at.jsonValue()) as number;
}

/**
 * The same attach from a WebSocket client outside any browser (Bun's, with a ticket as the page
 * gets one): the server's and the agent's share of the browser's echo time.
 */
async function plainClientEcho(serverUrl: string, token: string, label: string, keys: number): Promise<number[]> {
  const res = await fetch(`${serverUrl}/v1/sessions/${label}/ticket`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: "{}" });
  const { ticket } = (await res.json()) as { ticket: string };
  const ws = new WebSocket(`${serverUrl.replace(/^http/, "ws")}/v1/sessions/${label}/attach?ticket=${ticket}`);
  ws.binaryType = "arraybuffer";
  let attached = false;
  let echoed: ((at: number) => void) | null = null;
  ws.onmessage = (e) => {
    if (typeof e.data === "string") attached ||= e.data.includes('"attached"');
    else echoed?.(performance.now());
  };
  await withDeadline(new Promise((resolve) => (ws.onopen = resolve)), 10_000, "the plain client's socket");
  ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, mode: "interactive", offset: null, cols: 100, rows: 30, syncBack: null, instance: crypto.randomUUID(), reconnect: false }));
  await withDeadline((async () => { while (!attached) await Bun.sleep(5); })(), 10_000, "the plain client attached");
  // The catch-up (the screen) comes first: let it land before timing keys.
  await Bun.sleep(200);
  const out: number[] = [];
  for (let i = 0; i < keys; i++) {
    const got = new Promise<number>((resolve) => (echoed = resolve));
    const start = performance.now();
    ws.send(new TextEncoder().encode("x"));
    out.push((await withDeadline(got, 10_000, "the plain client's echo")) - start);
    echoed = null;
  }
  ws.close();
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: "string", default: "10" }, keys: { type: "string", default: "100" }, "bin-dir": { type: "string" } } });
  const { rounds, keys } = wholeNumbers(values, { rounds: 1, keys: 1 });
  const tmp = benchTempDir("catty-bench-web-");
  const bins = await compiledBinaries(values["bin-dir"]);
  const server = await startServerProcess(join(tmp, "server"), { bin: bins.server, env: { CATTY_SANDBOX: "none" } });
  const api = createApiClient(server.url, server.token);
  const session = await api.create({ command: ["sh", "-c", PROGRAM], cols: 100, rows: 30 });
  cleanups.push({ what: "the session", run: () => api.stop(session.label) });
  const login = await fetch(`${server.url}/v1/web/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: server.token }) });
  const [name, value] = ((login.headers.get("set-cookie") ?? "").split(";")[0] ?? "").split("=") as [string, string];
  const browser = await launchBrowser();
  cleanups.push({ what: "the browser", run: () => browser.close() });
  const url = `${server.url}/s/${session.label}`;
  const newContext = async () => {
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    await context.addCookies([{ name, value, url: server.url }]);
    return context;
  };

  // Current screen: cold (a fresh profile each round) and warm (a reload of the same page).
  const cold: number[] = [];
  const warm: number[] = [];
  for (let i = 0; i <= rounds; i++) {
    const context = await newContext();
    const page = await context.newPage();
    const c = await toCurrentScreen(page, url, false);
    const w = await toCurrentScreen(page, url, true);
    if (i > 0) {
      cold.push(c);
      warm.push(w);
    }
    await context.close();
  }
  console.log(`navigation → the session's current screen (n=${rounds})     p50        p99`);
  console.log(`cold (nothing cached)                         ${ms(stats(cold).p50)}${ms(stats(cold).p99)}`);
  console.log(`warm (reload)                                 ${ms(stats(warm).p50)}${ms(stats(warm).p99)}   (target: p50 ≤ ${TARGET_WARM_MS} ms: ${stats(warm).p50 <= TARGET_WARM_MS ? "met" : "missed"})`);

  // Keystroke echo: the page and catty connect take the session in turns (each takes it over).
  const context = await newContext();
  const page = await context.newPage();
  const env = { ...process.env, CATTY_API_ADDR: server.url, CATTY_TOKEN: server.token, CATTY_HOME: join(tmp, "home") };
  const browserEcho: number[] = [];
  const cliEcho: number[] = [];
  const letters = "abcdefghijklmnopqrstuvwxyz";
  let k = 0;
  const nextKey = (): string => letters[k++ % letters.length] as string;
  while (browserEcho.length < keys || cliEcho.length < keys) {
    await page.goto(url);
    await page.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
    await page.locator(".xterm").click();
    for (let i = 0; i < 20 && browserEcho.length < keys; i++) {
      const key = nextKey();
      // In the page: the key's own event time, and the moment its echo is in the terminal's model.
      await page.evaluate((ch) => {
        const g = globalThis as unknown as EchoGlobals;
        const box = g.document.querySelector(".term");
        const before = (box?.screenText?.() ?? "").trimEnd().length;
        const probe: EchoProbe = { t0: null, end: null };
        g.__echo = probe;
        g.document.addEventListener("keydown", (e) => (probe.t0 ??= e.timeStamp), { capture: true, once: true });
        const seen = (): void => {
          const t = (box?.screenText?.() ?? "").trimEnd();
          if (probe.t0 === null || t.length <= before || !t.endsWith(ch)) return;
          probe.end = g.performance.now();
          box?.removeEventListener("terminal-output", seen);
        };
        box?.addEventListener("terminal-output", seen);
      }, key);
      await page.keyboard.press(key);
      const took = await page.waitForFunction(
        () => {
          const p = (globalThis as unknown as EchoGlobals).__echo;
          return p?.end != null && p.t0 != null ? p.end - p.t0 : null;
        },
        null,
        { polling: "raf", timeout: 10_000 },
      );
      browserEcho.push((await took.jsonValue()) as number);
    }
    await page.goto("about:blank");

    let out = "";
    let waitFrom = 0;
    let want = "";
    let seen: ((at: number) => void) | null = null;
    const cli = spawnInPty([bins.catty, "connect", session.label], {
      env,
      cols: 100,
      rows: 30,
      onOutput: (data, at) => {
        out += new TextDecoder().decode(data);
        if (out.includes("\x1b[6n") && !out.includes("answered")) {
          cli.write("\x1b[1;1R");
          out += "answered";
        }
        // The echo may come with escape sequences around it: look in what arrived since the key.
        if (seen && out.slice(waitFrom).includes(want)) {
          seen(at);
          seen = null;
        }
      },
    });
    await withDeadline((async () => { while (!out.includes("CURRENT-SCREEN")) await Bun.sleep(10); })(), 30_000, "catty connect attached");
    for (let i = 0; i < 20 && cliEcho.length < keys; i++) {
      want = nextKey();
      waitFrom = out.length;
      const got = new Promise<number>((resolve) => (seen = resolve));
      const start = performance.now();
      cli.write(want);
      cliEcho.push((await withDeadline(got, 10_000, "the CLI's echo")) - start);
    }
    await cli.stop();
  }
  await context.close();
  const plain = stats(await plainClientEcho(server.url, server.token, session.label, keys));
  const b = stats(browserEcho);
  const c = stats(cliEcho);
  console.log(`\nkeystroke echo (n=${keys} each)                  p50        p99`);
  console.log(`browser (the dashboard's terminal)            ${ms(b.p50)}${ms(b.p99)}`);
  console.log(`catty connect (under a PTY)                   ${ms(c.p50)}${ms(c.p99)}`);
  console.log(`a WebSocket client outside a browser (Bun)     ${ms(plain.p50)}${ms(plain.p99)}   (the same attach, with a ticket)`);
  console.log(`ratio browser/CLI                             ${(b.p50 / c.p50).toFixed(2).padStart(11)}${(b.p99 / c.p99).toFixed(2).padStart(11)}   (target: p50 ≤ ${TARGET_ECHO_RATIO}×: ${b.p50 / c.p50 <= TARGET_ECHO_RATIO ? "met" : "missed"})`);
  console.log("(browser: from the key's event in the page until its echo is in xterm.js's model; CLI: from the byte written to the PTY until the echo is read back;");
  console.log(" plain client: from the frame sent until the echo's frame arrives — what the browser adds beyond it is its own WebSocket stack)");
}

await runBench("web", 10 * 60_000, main);
