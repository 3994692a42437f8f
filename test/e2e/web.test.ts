/**
 * The dashboard in a real browser (headless Chromium through playwright-core) against a real
 * catty-server and real agents: sign in with a token; the list shows running (green) and stopped
 * (gray) sessions; New session opens a terminal where typed keys reach the program; the status
 * bar says Connected; the PTY follows the viewport; Stop (with its confirmation) from the list.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { launchBrowser, SCREENSHOTS } from "../helpers/browser.ts";
import { waitFor } from "../helpers/wait.ts";
import { workspaceServerForFile } from "../helpers/workspace.ts";

const fixture = workspaceServerForFile();
let browser: Browser;

beforeAll(async () => {
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
});

async function signedIn(page: Page): Promise<void> {
  await page.goto(fixture().server.url);
  await page.getByLabel("API token").fill(fixture().server.ownerToken);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Refresh" }).waitFor();
}

/** The terminal's text as xterm.js shows it (its accessibility rows). */
const screenText = (page: Page): Promise<string> => page.locator(".xterm-accessibility-tree").innerText();

describe("the dashboard", () => {
  test("sign in, New session, type in the terminal, resize, back to the list, Stop", async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    try {
      await signedIn(page);
      await page.getByRole("button", { name: "New session" }).click();
      await page.waitForURL(/\/s\/[a-z]+-[a-z]+-\d{4}$/);
      const label = page.url().split("/s/")[1] as string;
      await page.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
      await page.locator(".xterm").click();
      await waitFor(async () => /[$#] $/m.test(await screenText(page)), { timeoutMs: 30_000, what: "a shell prompt" });
      await page.keyboard.type("echo hi-$((6*7))");
      await page.keyboard.press("Enter");
      await waitFor(async () => (await screenText(page)).includes("hi-42"), { timeoutMs: 15_000, what: "hi-42 in the terminal" });
      // The PTY follows the viewport: stty size before, and after a resize.
      const lastSize = async (): Promise<string | undefined> => {
        await page.keyboard.type("stty size");
        await page.keyboard.press("Enter");
        return [...(await screenText(page)).matchAll(/^(\d+) (\d+)\s*$/gm)].map((m) => `${m[1]} ${m[2]}`).at(-1);
      };
      const before = await waitFor(() => lastSize(), { timeoutMs: 15_000, what: "stty size" });
      await page.setViewportSize({ width: 700, height: 500 });
      const after = await waitFor(async () => {
        const now = await lastSize();
        return now && now !== before ? now : null;
      }, { timeoutMs: 15_000, what: "stty size to follow the viewport" });
      expect(Number(after.split(" ")[1])).toBeLessThan(Number(before.split(" ")[1]));
      await page.screenshot({ path: join(SCREENSHOTS, "desktop-terminal.png") });

      await page.goto(fixture().server.url);
      const row = page.getByRole("listitem", { name: `Session ${label}` });
      await row.waitFor();
      expect(await row.locator(".dot.green").count()).toBe(1);
      await page.screenshot({ path: join(SCREENSHOTS, "desktop-list.png") });
      page.once("dialog", (d) => void d.accept());
      await row.getByRole("button", { name: "Stop" }).click();
      await waitFor(async () => (await fixture().user.session(label)).status === "stopped", { timeoutMs: 30_000, what: "the session stopped" });
      await page.getByRole("button", { name: "Refresh" }).click();
      await page.getByRole("list", { name: "Stopped sessions" }).getByRole("listitem", { name: `Session ${label}` }).locator(".dot.gray").waitFor();
    } finally {
      await page.close();
    }
  }, 120_000);
});
