/**
 * Predictive echo in the dashboard's terminal (xterm.js in headless Chromium), through a proxy
 * that delays each direction by half of a 150 ms round trip: keys show at once, underlined,
 * until the echo confirms them; a program that echoes uppercase has the guess replaced when its
 * echo arrives; the status bar's hover gives the round trip.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Browser, Page } from "playwright-core";
import { launchBrowser } from "../helpers/browser.ts";
import { DelayProxy } from "../helpers/delay-proxy.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";

const RTT_MS = 150;

let server: TestServer;
let proxy: DelayProxy;
let browser: Browser;

beforeAll(async () => {
  server = await startTestServer();
  proxy = DelayProxy.start({ port: server.port, rttMs: RTT_MS });
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

const screenText = (page: Page): Promise<string> =>
  page.locator(".term").evaluate((el) => (el as HTMLElement & { screenText(): string }).screenText());
const underlined = (page: Page): Promise<string> =>
  page.locator(".term").evaluate((el) => (el as HTMLElement & { underlinedText(): string }).underlinedText());

/** A signed-in page (through the delaying proxy) on the session's terminal, with the prediction setting `mode`. */
async function terminalPage(label: string, mode: string, ready: RegExp): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  const page = await context.newPage();
  await page.goto(proxy.url);
  await page.getByLabel("API token").fill(server.ownerToken);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Refresh" }).waitFor();
  await page.goto(`${proxy.url}/s/${label}`);
  await page.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
  await page.getByLabel("Predictive echo").selectOption(mode);
  let seen = "";
  await waitFor(async () => ready.test((seen = await screenText(page))), { timeoutMs: 15_000, what: `${ready} on the terminal` }).catch((err: Error) => {
    throw new Error(`${err.message}; the terminal shows:\n${seen}`);
  });
  await page.locator(".term").click();
  return page;
}

describe("predictive echo in the dashboard at 150 ms round trip", () => {
  test("keys typed into bash show at once, underlined, and the echo leaves the line as the program drew it", async () => {
    const label = await newSession(["bash", "--norc", "--noprofile"]);
    const page = await terminalPage(label, "always", /bash-[\d.]+[$#] ?$/m);
    // The round trip on hover, measured through the delay.
    await waitFor(async () => /round trip \d+ ms/.test((await page.locator(".statusbar [role=status]").getAttribute("title")) ?? ""), { what: "a round trip" });
    const title = (await page.locator(".statusbar [role=status]").getAttribute("title")) ?? "";
    expect(Number(/round trip (\d+) ms/.exec(title)?.[1])).toBeGreaterThanOrEqual(RTT_MS - 10);
    expect(title).toContain("predictive echo on");

    const line = "echo typed-in-the-browser";
    for (const c of line) await page.keyboard.type(c);
    await waitFor(async () => (await screenText(page)).split("\n").some((l) => /^bash-[\d.]+[$#] echo typed-in-the-browser/.test(l)), { what: "the line" });
    // Measured in the page: from each key to its drawing in the terminal's model (drawn on the next frame).
    const judged = await page.locator(".term").evaluate((el) => (el as HTMLElement & { predictions(): { confirmed: number; contradicted: number; keyToModelMs: number[] } }).predictions());
    const sorted = [...judged.keyToModelMs].sort((a, b) => a - b);
    console.log(`dashboard: key to model (ms) p50 ${sorted[Math.floor(sorted.length / 2)]?.toFixed(1)}, max ${sorted.at(-1)?.toFixed(1)}`);
    expect(judged.keyToModelMs).toHaveLength(line.length);
    // Every key before its echo could have come; how soon is the benchmark's to measure.
    expect(judged.keyToModelMs.filter((ms) => ms >= RTT_MS / 2)).toEqual([]);
    await waitFor(async () => (await underlined(page)) === "", { what: "every prediction confirmed" });
    expect((await screenText(page)).split("\n").filter((l) => l.includes("typed-in-the-browser"))).toHaveLength(1);
    const after = await page.locator(".term").evaluate((el) => (el as HTMLElement & { predictions(): { confirmed: number; contradicted: number } }).predictions());
    expect(after.contradicted).toBe(0);
    await page.keyboard.press("Enter");
    await waitFor(async () => /^typed-in-the-browser$/m.test(await screenText(page)), { what: "the command's output" });
    await page.context().close();
  }, 90_000);

  test("a program that echoes uppercase: the guess goes when the echo arrives", async () => {
    const label = await newSession(["bash", "-c", `printf 'UP> '; stty -echo -icanon; while IFS= read -r -n1 c; do printf '%s' "\${c^^}"; done`]);
    const page = await terminalPage(label, "always", /^UP> /m);
    await waitFor(async () => /round trip \d+ ms/.test((await page.locator(".statusbar [role=status]").getAttribute("title")) ?? ""), { what: "a round trip" });
    await page.keyboard.type("q");
    await waitFor(async () => (await underlined(page)) === "q", { intervalMs: 1, what: "the underlined guess" });
    await waitFor(async () => /^UP> Q/m.test(await screenText(page)), { what: "the program's Q" });
    expect(await underlined(page)).toBe("");
    expect(await screenText(page)).not.toMatch(/^UP> .*q/m);
    await page.context().close();
  }, 90_000);
});
