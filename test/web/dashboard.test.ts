/**
 * The dashboard's attach link (server/web/app/link.ts on src/lib/socket.ts) in headless Chromium
 * against a real server on port 0 and real agents, with a TCP proxy between page and server to
 * cut the network or make it go silent: a fresh ticket for every dial, the heartbeat giving up on
 * a silent link, and the catch-up after a drop — exactly the bytes missed when the agent still
 * has them, the screen when it does not. And the session list on a phone.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { launchBrowser, SCREENSHOTS } from "../helpers/browser.ts";
import { removeAfterRun } from "../helpers/fs.ts";
import { TcpProxy } from "../helpers/proxy.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";

let server: TestServer;
let proxy: TcpProxy;
let browser: Browser;

beforeAll(async () => {
  // A small ring: a client away for more than 4 KB of output gets the screen.
  server = await startTestServer({ env: { CATTY_RING_BYTES: "4096" } });
  proxy = TcpProxy.start({ port: server.port });
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  proxy?.stop();
  await server?.stop();
});

async function newSession(command: string[]): Promise<string> {
  const res = await fetch(`${server.url}/v1/sessions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${server.ownerToken}`, "Content-Type": "application/json" },
    body: JSON.stringify({ command, cols: 100, rows: 30 }),
  });
  if (!res.ok) throw new Error(`POST /v1/sessions: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { label: string }).label;
}

const stop = (label: string): Promise<unknown> =>
  fetch(`${server.url}/v1/sessions/${label}/stop`, { method: "POST", headers: { Authorization: `Bearer ${server.ownerToken}`, "Content-Type": "application/json" }, body: "{}" });

async function signedIn(context: BrowserContext): Promise<Page> {
  const page = await context.newPage();
  await page.goto(proxy.url);
  await page.getByLabel("API token").fill(server.ownerToken);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Refresh" }).waitFor();
  return page;
}

/** What the page's attach sockets carry: each socket's URL, the text frames each way, and its binary frames in. */
interface Wire {
  url: string;
  sent: string[];
  received: string[];
  binaryIn: number;
}

function recordSockets(page: Page): Wire[] {
  const wires: Wire[] = [];
  page.on("websocket", (ws) => {
    const wire: Wire = { url: ws.url(), sent: [], received: [], binaryIn: 0 };
    wires.push(wire);
    ws.on("framesent", (f) => void (typeof f.payload === "string" && wire.sent.push(f.payload)));
    ws.on("framereceived", (f) => (typeof f.payload === "string" ? wire.received.push(f.payload) : wire.binaryIn++));
  });
  return wires;
}

const typed = (frames: string[], type: string): Array<Record<string, unknown>> =>
  frames.map((f) => JSON.parse(f) as Record<string, unknown>).filter((m) => m.type === type);

/** Everything the page's terminal holds (scrollback and screen), from its model. */
const terminalText = (page: Page): Promise<string> =>
  page.locator(".term").evaluate((el) => (el as HTMLElement & { screenText(): string }).screenText());

const status = (page: Page): Promise<string> => page.locator(".statusbar [role=status]").innerText();

/** A gated program's session: it prints `before-1..5`, waits for `go()`, runs `then`, prints END and says it is `done()`. */
async function gatedSession(then: string): Promise<{ label: string; go(): void; done(): boolean }> {
  const dir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-web-link-")));
  const script = `for i in $(seq 1 5); do echo before-$i; done; while [ ! -e ${dir}/go ]; do sleep 0.05; done; ${then}; echo END; touch ${dir}/done; sleep 300`;
  const label = await newSession(["bash", "-c", script]);
  return { label, go: () => writeFileSync(join(dir, "go"), ""), done: () => existsSync(join(dir, "done")) };
}

/** A signed-in page on the session's terminal (through the proxy), attached and showing the first lines; its sockets and ticket requests recorded. */
async function attachedPage(label: string): Promise<{ context: BrowserContext; page: Page; wires: Wire[]; tickets: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  const page = await signedIn(context);
  const wires = recordSockets(page);
  const tickets: string[] = [];
  page.on("request", (r) => void (r.url().endsWith("/ticket") && tickets.push(r.url())));
  await page.goto(`${proxy.url}/s/${label}`);
  await page.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
  await waitFor(async () => (await terminalText(page)).includes("before-5"), { timeoutMs: 15_000, what: "the first lines" });
  return { context, page, wires, tickets };
}

/** Cuts the network, lets the program print while the page is away, and waits until it has. */
async function printWhileCut(page: Page, s: { go(): void; done(): boolean }): Promise<void> {
  proxy.cut();
  await waitFor(async () => /Disconnected|Connecting/.test(await status(page)), { timeoutMs: 15_000, what: "the page to see the link gone" });
  s.go();
  await waitFor(() => s.done(), { timeoutMs: 30_000, what: "the program to print while the page is away" });
}

/** Connected again, with the program's END on the terminal. */
async function caughtUp(page: Page): Promise<void> {
  await page.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
  await waitFor(async () => (await terminalText(page)).includes("END"), { timeoutMs: 15_000, what: "the output since the drop" });
}

describe("the attach link in the browser", () => {
  test("a cut network: Disconnected, a new ticket for each dial, then Connected with exactly the output missed meanwhile", async () => {
    const s = await gatedSession("for i in $(seq 1 30); do echo after-$i; done");
    const { context, page, wires, tickets } = await attachedPage(s.label);
    try {
      await printWhileCut(page, s);
      // A dial or two fail while the network is down; each asks for its own ticket.
      await waitFor(() => tickets.length >= 2, { timeoutMs: 15_000, what: "a dial while cut" });
      proxy.restore();
      await caughtUp(page);

      const lines = (await terminalText(page)).split("\n").map((l) => l.trim()).filter((l) => /^(before|after)-\d+$/.test(l));
      expect(lines).toEqual([...Array.from({ length: 5 }, (_, i) => `before-${i + 1}`), ...Array.from({ length: 30 }, (_, i) => `after-${i + 1}`)]);
      // Caught up with bytes, not the screen: the last socket said where it stood and got no screen.
      const first = wires[0] as Wire;
      const last = wires.at(-1) as Wire;
      expect(last).not.toBe(first);
      expect(typed(first.received, "screen")).toHaveLength(1);
      const hello = typed(last.sent, "hello")[0] as { offset: number | null; reconnect: boolean };
      expect(hello.reconnect).toBe(true);
      expect(hello.offset).toBeGreaterThan(0);
      expect(typed(last.received, "screen")).toEqual([]);
      expect(last.binaryIn).toBeGreaterThan(0);
      // Every dial had a ticket of its own (they are one-use).
      const used = wires.map((w) => new URL(w.url).searchParams.get("ticket"));
      expect(new Set(used).size).toBe(used.length);
      expect(tickets.length).toBeGreaterThan(wires.length);
    } finally {
      proxy.restore();
      await context.close();
      await stop(s.label);
    }
  }, 90_000);

  test("away for more output than the agent keeps: the page gets the screen, each line on it once", async () => {
    // About 1 MB: far more than the 4 KB ring, and more than a PTY buffers, so the agent has read
    // nearly all of it once the program is done.
    const s = await gatedSession("for i in $(seq 1 16000); do printf 'far-%05d %s\\n' $i ................................................; done");
    const { context, page, wires } = await attachedPage(s.label);
    try {
      await printWhileCut(page, s);
      proxy.restore();
      await caughtUp(page);

      const last = wires.at(-1) as Wire;
      expect(typed(last.sent, "hello")[0]?.offset).toBeGreaterThan(0);
      expect(typed(last.received, "screen")).toHaveLength(1);
      // The screen replaced what the page had: the last lines, in order, none twice.
      const far = (await terminalText(page)).split("\n").flatMap((l) => /^far-(\d{5}) /.exec(l.trim())?.[1] ?? []).map(Number);
      expect(far.at(-1)).toBe(16000);
      expect(far).toEqual(Array.from({ length: far.length }, (_, i) => 16000 - far.length + 1 + i));
    } finally {
      proxy.restore();
      await context.close();
      await stop(s.label);
    }
  }, 120_000);

  test("a network gone silent (no reset): the heartbeat gives the link up, dials again and catches up", async () => {
    const s = await gatedSession("echo said-while-silent");
    const { context, page, wires } = await attachedPage(s.label);
    try {
      // The page pings the server while the link is up.
      await waitFor(() => typed(wires[0]?.sent ?? [], "ping").length > 0, { timeoutMs: 15_000, what: "a ping from the page" });
      proxy.silence();
      s.go();
      await waitFor(() => s.done(), { what: "the program to print into the silence" });
      // Nothing arrives and no close either: only the page's own heartbeat can notice (after 20 s).
      await waitFor(async () => !(await status(page)).includes("Connected"), { timeoutMs: 40_000, what: "the silent link given up" });
      // The network comes back, resetting what went silent with it (the page's pooled HTTP
      // connections too, which would hold the next ticket request until its 10 s timeout).
      proxy.cut();
      proxy.restore();
      await caughtUp(page);
      expect((await terminalText(page)).match(/^said-while-silent/gm)).toHaveLength(1);
      expect(wires.length).toBeGreaterThanOrEqual(2);
    } finally {
      await context.close();
      await stop(s.label);
    }
  }, 120_000);
});

describe("the session list on a phone", () => {
  test("390×844: each row shows its region and its age", async () => {
    const label = await newSession(["sleep", "300"]);
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
    try {
      const page = await signedIn(context);
      const row = page.getByRole("listitem", { name: `Session ${label}` });
      await row.waitFor();
      const region = row.locator(".region");
      const age = row.locator(".created");
      expect(await region.isVisible()).toBe(true);
      expect(await age.isVisible()).toBe(true);
      expect(await region.innerText()).toBe("Local");
      expect(await age.innerText()).toMatch(/^\d+[smhd] ago$/);
      // Within the screen's width: nothing to scroll sideways for.
      const box = await age.boundingBox();
      expect((box?.x ?? 0) + (box?.width ?? 0)).toBeLessThanOrEqual(390);
      await page.screenshot({ path: join(SCREENSHOTS, "mobile-list-rows.png") });
    } finally {
      await context.close();
      await stop(label);
    }
  }, 60_000);
});
