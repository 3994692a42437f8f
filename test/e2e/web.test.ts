/**
 * The dashboard in a real browser (headless Chromium through playwright-core) against a real
 * catty-server and real agents: sign in with a token; the list shows running (green) and stopped
 * (gray) sessions; New session opens a terminal where typed keys reach the program; the status
 * bar says Connected; the PTY follows the viewport; Stop (with its confirmation) from the list.
 * Then with other clients: `catty login` approved on /device; a second tab taking over; a server
 * killed with -9 mid-output and restarted, the status bar following and no line lost.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { launchBrowser, SCREENSHOTS } from "../helpers/browser.ts";
import { pathWithout } from "../helpers/env-path.ts";
import { shellExitCode } from "../helpers/session-flow.ts";
import { Tmux } from "../helpers/tmux.ts";
import { waitFor } from "../helpers/wait.ts";
import { workspaceServerForFile } from "../helpers/workspace.ts";
import { removeAfterRun } from "../helpers/fs.ts";

// New session runs the default program: the login shell these tests type into, not a `claude`
// the machine may have on its PATH.
const fixture = workspaceServerForFile({ PATH: pathWithout("claude") });
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
      // The server's regions, by their human names, and the duration (1–8 h).
      const region = page.getByLabel("Region");
      await region.locator("option", { hasText: "Local" }).waitFor({ state: "attached" });
      expect(await region.inputValue()).toBe("local");
      await page.getByLabel("Duration").selectOption("3");
      await page.getByRole("button", { name: "New session" }).click();
      await page.waitForURL(/\/s\/[a-z]+-[a-z]+-\d{4}$/);
      const label = page.url().split("/s/")[1] as string;
      const created = await fixture().user.session(label);
      expect(Date.parse(created.expiresAt as string) - Date.parse(created.createdAt)).toBe(3 * 3_600_000);
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

describe("files handed to a session from the page", () => {
  test("Upload puts the files in .catty-uploads byte for byte and types their paths; a wrong type is refused in the page", async () => {
    const label = ((await (await fixture().user.api("POST", "/v1/sessions", { command: ["bash", "--norc", "-i"], cols: 100, rows: 30 })).json()) as { label: string }).label;
    const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
    try {
      await signedIn(page);
      await page.goto(`${fixture().server.url}/s/${label}`);
      await page.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
      await waitFor(async () => /[$#] $/m.test(await screenText(page)), { timeoutMs: 30_000, what: "a shell prompt" });
      // What the shell gets typed is what the program would: `ls -l ` then the paths.
      await page.locator(".xterm").click();
      await page.keyboard.type("ls -l ");
      const png = crypto.getRandomValues(new Uint8Array(300_000));
      const notes = new TextEncoder().encode("# notes\n");
      await page.getByLabel("Files to upload").setInputFiles([
        { name: "Screen Shot.png", mimeType: "image/png", buffer: Buffer.from(png) },
        { name: "notes.md", mimeType: "text/markdown", buffer: Buffer.from(notes) },
        { name: "tool.exe", mimeType: "application/octet-stream", buffer: Buffer.from("MZ") },
      ]);
      await page.getByRole("alert").filter({ hasText: "tool.exe" }).waitFor();
      const uploaded = await page.getByRole("status", { name: "Uploads" }).filter({ hasText: "Uploaded to" }).innerText();
      const paths = uploaded.replace(/^Uploaded to /, "").split(", ");
      expect(paths).toHaveLength(2);
      const dir = join(fixture().user.workspace(label), ".catty-uploads");
      expect(paths[0]).toMatch(new RegExp(`^${dir}/Screen-Shot-\\d{8}-\\d{6}\\.png$`));
      expect(paths[1]).toMatch(new RegExp(`^${dir}/notes-\\d{8}-\\d{6}\\.md$`));
      expect(new Uint8Array(readFileSync(paths[0] as string))).toEqual(png);
      expect(new Uint8Array(readFileSync(paths[1] as string))).toEqual(notes);
      expect(readdirSync(dir)).toHaveLength(2);
      // Dropped on the terminal, as from a file manager.
      await page.evaluate(`{
        const dt = new DataTransfer();
        dt.items.add(new File(["dropped text\\n"], "dropped.txt", { type: "text/plain" }));
        const target = document.querySelector(".term");
        for (const type of ["dragover", "drop"]) target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
      }`);
      const dropped = await waitFor(async () => {
        const text = await page.getByRole("status", { name: "Uploads" }).innerText();
        return text.includes("dropped-") ? text.replace(/^Uploaded to /, "") : null;
      }, { what: "the dropped file uploaded" });
      expect(readFileSync(dropped, "utf8")).toBe("dropped text\n");
      // The paths were typed at the prompt: Enter runs `ls -l <paths>`.
      await page.keyboard.press("Enter");
      // Rows joined: a long listing line wraps, at a column that depends on the session's label.
      const listing = async (): Promise<number> => {
        const flat = (await screenText(page)).replaceAll("\n", "");
        return (flat.slice(flat.lastIndexOf("ls -l")).match(/-rw\S* +\d+ +\S+ +\S+ +\d+ [^/]*\/\S*?\.catty-uploads\//g) ?? []).length;
      };
      await waitFor(async () => (await listing()) === 3, { timeoutMs: 15_000, what: "ls -l listing the three files" });
    } finally {
      await page.close();
      await fixture().user.api("POST", `/v1/sessions/${label}/stop`, {});
    }
  }, 60_000);
});

describe("the dashboard and other clients", () => {
  test("catty login waits in tmux while the code is typed and approved in the page, which shows who asked", async () => {
    const home = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-web-login-")));
    const tmux = new Tmux({ HOME: home, CATTY_HOME: home, PATH: `${fixture().bins.dir}:${process.env.PATH}`, PS1: "$ " });
    tmux.start({ cols: 100, rows: 30 });
    const page = await browser.newPage();
    try {
      tmux.type(`catty login --api ${fixture().server.url}; echo LOGIN_EXIT=$?`);
      const code = /([B-Z]{4}-[B-Z]{4})/.exec(await tmux.waitFor(/[B-Z]{4}-[B-Z]{4}/, 15_000))?.[1] as string;
      await signedIn(page);
      // A link that carries a code fills nothing in: the person types the code their terminal shows.
      await page.goto(`${fixture().server.url}/device?code=${code}`);
      const input = page.getByLabel("Code");
      expect(await input.inputValue()).toBe("");
      expect(await page.getByRole("button", { name: "Approve" }).count()).toBe(0);
      await input.fill(code.toLowerCase());
      await page.getByRole("button", { name: "Continue" }).click();
      const request = page.getByRole("region", { name: "Login request" });
      await request.waitFor();
      const shown = await request.innerText();
      expect(shown).toContain(code);
      expect(shown).toContain("127.0.0.1");
      expect(shown).toMatch(/catty\/\S+ \(linux/);
      await request.getByRole("button", { name: "Approve" }).click();
      await page.getByRole("status").filter({ hasText: "Approved" }).waitFor();
      expect(await shellExitCode(tmux, "LOGIN_EXIT", 30_000)).toBe(0);
      expect(tmux.capture()).toContain("Logged in to");
    } finally {
      tmux.kill();
      await page.close();
    }
  }, 60_000);

  test("a second tab takes over; the first says the connection was replaced", async () => {
    // Two tabs of one browser: one sign-in.
    const context = await browser.newContext();
    const first = await context.newPage();
    const second = await context.newPage();
    try {
      await signedIn(first);
      await first.getByRole("button", { name: "New session" }).click();
      await first.waitForURL(/\/s\//);
      await first.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
      await second.goto(first.url());
      await second.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
      await first.getByRole("status").filter({ hasText: "Disconnected" }).waitFor({ timeout: 15_000 });
      expect(await first.locator(".statusbar").innerText()).toContain("Connection replaced by another client");
    } finally {
      await context.close();
    }
  }, 60_000);

  test("kill -9 of the server mid-output: Disconnected or Connecting, then Connected, and no line lost", async () => {
    const label = ((await (await fixture().user.api("POST", "/v1/sessions", { command: ["bash", "-c", "for i in $(seq 1 24); do echo line-$i; sleep 0.25; done; echo END; sleep 300"], cols: 80, rows: 40 })).json()) as { label: string }).label;
    const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    try {
      await signedIn(page);
      await page.goto(`${fixture().server.url}/s/${label}`);
      await page.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
      await waitFor(async () => (await screenText(page)).includes("line-3"), { timeoutMs: 15_000, what: "the first lines" });
      await fixture().server.kill9();
      await page.getByRole("status").filter({ hasText: /Disconnected|Connecting/ }).waitFor({ timeout: 15_000 });
      await fixture().server.start();
      await page.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
      await waitFor(async () => (await screenText(page)).includes("END"), { timeoutMs: 30_000, what: "the last line" });
      const lines = (await screenText(page)).split("\n").map((l) => l.trim()).filter((l) => /^line-\d+$/.test(l));
      expect(lines).toEqual(Array.from({ length: 24 }, (_, i) => `line-${i + 1}`));
    } finally {
      await page.close();
      await fixture().user.api("POST", `/v1/sessions/${label}/stop`, {});
    }
  }, 90_000);
});

describe("on a phone", () => {
  test("390×844 with touch: the list, a session, and the virtual keys send arrows and ^C", async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
    const page = await context.newPage();
    try {
      await signedIn(page);
      await page.screenshot({ path: join(SCREENSHOTS, "mobile-list.png") });
      await page.getByRole("button", { name: "New session" }).tap();
      await page.waitForURL(/\/s\//);
      await page.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
      // A narrow screen opens in chat mode; the terminal is a tap away, with its key bar shown.
      await page.getByRole("button", { name: "Terminal" }).tap();
      const keys = page.getByRole("toolbar", { name: "Keys" });
      await keys.waitFor();
      await waitFor(async () => /[$#] $/m.test(await screenText(page)), { timeoutMs: 30_000, what: "a shell prompt" });
      await page.locator(".xterm").tap();
      await page.keyboard.type("cat -v");
      await keys.getByRole("button", { name: "Enter" }).tap();
      await keys.getByRole("button", { name: "Up" }).tap();
      await keys.getByRole("button", { name: "Enter" }).tap();
      await waitFor(async () => (await screenText(page)).includes("^[[A"), { timeoutMs: 15_000, what: "the Up key at the program" });
      await keys.getByRole("button", { name: "Control-C" }).tap();
      await page.keyboard.type("echo after-ctrl-c-$((1+1))");
      await keys.getByRole("button", { name: "Enter" }).tap();
      await waitFor(async () => (await screenText(page)).includes("after-ctrl-c-2"), { timeoutMs: 15_000, what: "the shell back after ^C" });
      await page.screenshot({ path: join(SCREENSHOTS, "mobile-terminal.png") });
    } finally {
      await context.close();
    }
  }, 90_000);

  test("chat mode: a message sent with Send, the reply as a bubble, quick actions; switching keeps the session", async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
    const page = await context.newPage();
    try {
      await signedIn(page);
      await page.getByRole("button", { name: "New session" }).tap();
      await page.waitForURL(/\/s\//);
      await page.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
      const log = page.getByRole("log", { name: "Conversation" });
      await log.waitFor();
      await page.getByRole("textbox", { name: "Message" }).fill("echo chat-$((2+3))");
      await page.getByRole("button", { name: "Send" }).tap();
      await page.locator(".bubble.you").filter({ hasText: "echo chat-$((2+3))" }).waitFor({ timeout: 15_000 });
      await page.locator(".bubble.program").filter({ hasText: "chat-5" }).waitFor({ timeout: 15_000 });
      // The reply is the program's answer, not the echo of what was sent.
      expect(await page.locator(".bubble.program").filter({ hasText: "chat-5" }).innerText()).not.toContain("echo");
      // A quick action: ^C reaches the program (a sleep it interrupts).
      await page.getByRole("textbox", { name: "Message" }).fill("sleep 100");
      await page.getByRole("button", { name: "Send" }).tap();
      await page.getByRole("toolbar", { name: "Quick actions" }).getByRole("button", { name: "Control-C" }).tap();
      await page.getByRole("textbox", { name: "Message" }).fill("echo back-$((3+4))");
      await page.getByRole("button", { name: "Send" }).tap();
      await page.locator(".bubble.program").filter({ hasText: "back-7" }).waitFor({ timeout: 15_000 });
      await page.screenshot({ path: join(SCREENSHOTS, "mobile-chat.png") });
      // Terminal and back: the same session, still connected.
      await page.getByRole("button", { name: "Terminal" }).tap();
      await waitFor(async () => (await screenText(page)).includes("back-7"), { timeoutMs: 10_000, what: "the terminal showing the same session" });
      await page.getByRole("button", { name: "Chat" }).tap();
      await log.waitFor();
      expect(await page.getByRole("status").innerText()).toBe("Connected");
    } finally {
      await context.close();
    }
  }, 90_000);
});
