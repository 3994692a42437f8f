/**
 * Claude Code itself in a session: the real CLI from npm (test/helpers/claude-code.ts) is the
 * default program, talking to the Anthropic API stand-in through the server's proxy. Driven in
 * tmux: it opens at its prompt (onboarding and folder trust pre-answered), a prompt gets the
 * stand-in's reply on screen. The
 * stand-in saw the operator's key and the session's environment and files never hold it; usage is
 * recorded and `catty usage` shows it; Claude Code's hooks make the session `waiting` once it has
 * answered; over quota the next prompt gets the 402 and `catty new` is refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAnthropicStandIn, type AnthropicStandIn } from "../helpers/anthropic.ts";
import { claudeCodeBinDir, typePrompt } from "../helpers/claude-code.ts";
import { launchBrowser, SCREENSHOTS } from "../helpers/browser.ts";
import { Tmux } from "../helpers/tmux.ts";
import { filesContaining } from "../helpers/fs.ts";
import { waitFor } from "../helpers/wait.ts";
import { startWorkspaceServer, writeTree, type WorkspaceFixture } from "../helpers/workspace.ts";

const OPERATOR_KEY = "sk-ant-operator-e2e-5f4d3c2b1a";
let api: AnthropicStandIn;
let fx: WorkspaceFixture;

beforeAll(async () => {
  const bin = await claudeCodeBinDir();
  api = startAnthropicStandIn();
  api.reply = { text: "Hello from the stand-in, through Catty.", deltas: 4 };
  fx = await startWorkspaceServer({ CATTY_ANTHROPIC_API_KEY: OPERATOR_KEY, CATTY_ANTHROPIC_UPSTREAM: api.url, PATH: `${bin}:${process.env.PATH}` });
}, 300_000);

afterAll(async () => {
  await fx?.close();
  api?.stop();
});

describe("Claude Code in a session", () => {
  test("a prompt gets the stand-in's reply through the proxy; waiting after; usage recorded", async () => {
    const project = mkdtempSync(join(tmpdir(), "catty-cc-proj-"));
    writeTree(project, { "README.md": "# a project\n" });
    const tmux = fx.user.freshTerminal();
    tmux.type(`cd ${project} && catty new; echo NEW_EXIT=$?`);
    const label = /Session (\S+) started/.exec(await tmux.waitFor(/Session \S+ started/, 60_000))?.[1] as string;
    // Straight to its prompt: onboarding done and the folder trusted, in a config dir of the session's own.
    await tmux.waitFor(/auto mode|for shortcuts|\/effort/, 60_000);
    expect(tmux.capture()).not.toContain("trust this folder");
    await typePrompt(tmux, "Say hello");
    await tmux.waitFor("Hello from the stand-in, through Catty.", 60_000);

    // Through the proxy, with the operator's key added there and nowhere else.
    const messages = api.requests.filter((r) => r.path === "/v1/messages");
    expect(messages.length).toBeGreaterThan(0);
    for (const r of api.requests) {
      expect(r.headers["x-api-key"]).toBe(OPERATOR_KEY);
      expect(r.headers.authorization).toBeUndefined();
    }
    expect(messages.some((r) => r.body.includes("Say hello"))).toBe(true);
    expect(filesContaining(fx.user.sessionDir(label), OPERATOR_KEY)).toEqual([]);
    expect(filesContaining(process.env.HOME as string, OPERATOR_KEY)).toEqual([]);

    // Claude Code's Stop hook: the session waits for its user.
    await waitFor(async () => (await fx.user.session(label)).attention?.state === "waiting", { timeoutMs: 30_000, what: "the session to be waiting" });
    expect((await fx.user.cli(["list"])).stdout).toMatch(new RegExp(`${label}\\s+running · waiting`));

    // Metered: catty usage shows the session.
    const usage = await waitFor(async () => {
      const r = await fx.user.cli(["usage", "--json"]);
      const report = JSON.parse(r.stdout) as { sessions: Array<{ label: string; requests: number; output: number }> };
      return report.sessions.find((s) => s.label === label && s.requests >= messages.length) ?? null;
    }, { what: "the usage recorded" });
    expect(usage.output).toBeGreaterThan(0);
    expect((await fx.user.cli(["usage"])).stdout).toContain(label);

    // Over quota: the next prompt gets the 402, and catty new is refused.
    const quota = Bun.spawnSync([fx.bins.server, "users", "set-quota", "owner", "--tokens", "1", "--data-dir", fx.server.dataDir]);
    expect(quota.exitCode).toBe(0);
    await typePrompt(tmux, "Say hello again");
    await tmux.waitFor(/quota/i, 60_000);
    const other = new Tmux({ HOME: fx.user.home, CATTY_HOME: fx.user.home, PATH: `${fx.bins.dir}:${process.env.PATH}`, PS1: "$ " });
    other.start({ cols: 100, rows: 30, cwd: project });
    try {
      other.type("catty new --no-upload; echo REFUSED=$?");
      const box = await other.waitFor(/REFUSED=\d+/, 30_000);
      expect(box).toContain("REFUSED=1");
      expect(box).toContain("Claude API quota reached");
      expect(box).toContain("of 1 tokens");
    } finally {
      other.kill();
    }
    Bun.spawnSync([fx.bins.server, "users", "set-quota", "owner", "--unlimited", "--data-dir", fx.server.dataDir]);
  }, 300_000);

  test("the dashboard's chat mode on a phone: a message sent to Claude Code, its reply as one bubble", async () => {
    const browser = await launchBrowser();
    try {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
      const page = await context.newPage();
      await page.goto(fx.server.url);
      await page.getByLabel("API token").fill(fx.server.ownerToken);
      await page.getByRole("button", { name: "Sign in" }).tap();
      await page.getByRole("button", { name: "New session" }).tap();
      await page.waitForURL(/\/s\//);
      const label = page.url().split("/s/")[1] as string;
      await page.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
      const screen = (): Promise<string> => page.locator(".term").evaluate((el) => (el as unknown as { screenText(): string }).screenText());
      // Claude Code at its prompt (the terminal is behind the chat, still there).
      await waitFor(async () => /for shortcuts|auto mode|\/effort/.test(await screen()), { timeoutMs: 60_000, what: "Claude Code's prompt" });
      api.reply = { text: "Chat hello from the stand-in.", deltas: 6 };
      await page.getByRole("textbox", { name: "Message" }).fill("Say hello in chat");
      await page.getByRole("button", { name: "Send" }).tap();
      await page.locator(".bubble.you").filter({ hasText: "Say hello in chat" }).waitFor({ timeout: 15_000 });
      const reply = page.locator(".bubble.program").filter({ hasText: "Chat hello from the stand-in." });
      await reply.first().waitFor({ timeout: 60_000 });
      // Claude Code redraws its screen as it streams and when it is done: still one bubble, once it waits.
      await waitFor(async () => (await fx.user.session(label)).attention?.state === "waiting", { timeoutMs: 30_000, what: "Claude Code done" });
      expect(await reply.count()).toBe(1);
      // In order: the message, then the reply (without the echo), and none of Claude Code's input box or hints.
      const bubbles = await page.locator(".bubble").evaluateAll((els) => els.map((e) => `${(e as unknown as { className: string }).className}: ${(e as unknown as { textContent: string }).textContent}`));
      const mine = bubbles.findIndex((b) => b.startsWith("bubble you") && b.includes("Say hello in chat"));
      const theirs = bubbles.findIndex((b) => b.startsWith("bubble program") && b.includes("Chat hello from the stand-in."));
      expect(mine).toBeGreaterThanOrEqual(0);
      expect(theirs).toBe(mine + 1);
      expect(bubbles[theirs]).not.toContain("Say hello in chat");
      expect(bubbles.join("\n")).not.toMatch(/for shortcuts|shift\+tab to cycle/);
      expect(api.requests.some((r) => r.path === "/v1/messages" && r.body.includes("Say hello in chat"))).toBe(true);
      await page.screenshot({ path: join(SCREENSHOTS, "mobile-chat-claude-code.png") });
      await fx.user.api("POST", `/v1/sessions/${label}/stop`, {});
    } finally {
      await browser.close();
    }
  }, 180_000);
});
