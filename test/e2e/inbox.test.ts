/**
 * The approval inbox with the real Claude Code in a session, against the Anthropic stand-in, which
 * answers a prompt with a Bash tool use. The project's own settings put Claude Code in its manual
 * permission mode, so it asks. Each request shows in `catty inbox --json` with its command while
 * the terminal shows Claude Code's dialog; `catty approve` runs it, the dashboard's Deny (real
 * Chromium) stops it, an answer in the terminal turns the dashboard's card "Answered in the
 * terminal" and makes a late `catty approve` say so, `--always` lets the same command run without
 * asking, and `catty deny --message` tells Claude why. The session's own
 * credential cannot answer; another user finds nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { readlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PendingRequest } from "../../src/protocol/index.ts";
import { startAnthropicStandIn, type AnthropicStandIn } from "../helpers/anthropic.ts";
import { launchBrowser, SCREENSHOTS } from "../helpers/browser.ts";
import { claudeCodeBinDir, typePrompt } from "../helpers/claude-code.ts";
import { Tmux } from "../helpers/tmux.ts";
import { startPushServiceStandIn, type PushServiceStandIn } from "../helpers/push-service.ts";
import { ntfyActions, startNtfyStandIn, type NtfyStandIn } from "../helpers/ntfy.ts";
import { waitFor } from "../helpers/wait.ts";
import { startWorkspaceServer, writeTree, type WorkspaceFixture } from "../helpers/workspace.ts";

let api: AnthropicStandIn;
let ntfy: NtfyStandIn;
let pushService: PushServiceStandIn;
let fx: WorkspaceFixture;

beforeAll(async () => {
  const bin = await claudeCodeBinDir();
  api = startAnthropicStandIn();
  ntfy = startNtfyStandIn();
  pushService = startPushServiceStandIn();
  fx = await startWorkspaceServer({
    CATTY_ANTHROPIC_API_KEY: "sk-ant-operator-inbox",
    CATTY_ANTHROPIC_UPSTREAM: api.url,
    CATTY_NOTIFY_URL: `${ntfy.url}/catty-inbox`,
    CATTY_NOTIFY_FORMAT: "ntfy",
    PATH: `${bin}:${process.env.PATH}`,
  });
}, 300_000);

afterAll(async () => {
  await fx?.close();
  api?.stop();
  ntfy?.stop();
  pushService?.stop();
});

async function inbox(): Promise<PendingRequest[]> {
  const r = await fx.user.cli(["inbox", "--json"]);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as PendingRequest[];
}

/** The request of `label` running `command`, once it is in the inbox (else the error shows the terminal). */
const asked = (tmux: Tmux, label: string, command: string): Promise<PendingRequest> =>
  waitFor(async () => (await inbox()).find((r) => r.label === label && r.command === command) ?? null, { timeoutMs: 60_000, what: `"${command}" in catty inbox` }).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n--- screen ---\n${tmux.capture()}`);
  });

describe("the approval inbox", () => {
  test("Claude Code's requests: approved from the CLI, denied from the dashboard, answered in the terminal first, always allowed, denied with a message", async () => {
    const project = mkdtempSync(join(tmpdir(), "catty-inbox-proj-"));
    writeTree(project, { "README.md": "# a project\n", ".claude/settings.json": JSON.stringify({ permissions: { defaultMode: "default" } }) });
    const tmux = fx.user.freshTerminal();
    tmux.type(`cd ${project} && catty new`);
    const label = /Session (\S+) started/.exec(await tmux.waitFor(/Session \S+ started/, 60_000))?.[1] as string;
    await tmux.waitFor(/for shortcuts|manual mode|\/effort/, 60_000);
    const workspace = fx.user.workspace(label);
    const watch = Bun.spawn([fx.bins.catty, "list", "--watch"], { env: fx.user.env as Record<string, string>, stdout: "pipe", stderr: "pipe" });
    let watched = "";
    void (async () => {
      for await (const chunk of watch.stdout as ReadableStream<Uint8Array>) watched += new TextDecoder().decode(chunk);
    })();
    const run = (command: string, trigger: string): Promise<void> => {
      api.toolUse = { trigger, name: "Bash", input: { command, description: "A command from the stand-in" } };
      return typePrompt(tmux, trigger);
    };

    // 1. Asked: in the inbox with its command, Claude Code's dialog on the terminal; approved from the CLI.
    await run("echo approved > proof.txt", "Write the proof");
    const first = await asked(tmux, label, "echo approved > proof.txt");
    expect(first).toMatchObject({ tool: "Bash", description: "A command from the stand-in" });
    await tmux.waitFor("Do you want to proceed?", 30_000);
    expect((await fx.user.cli(["inbox"])).stdout).toMatch(new RegExp(`${label}\\s+${first.id}\\s+Bash\\s+.*echo approved > proof.txt`));
    await waitFor(() => watched.includes(`${label} asks to run: echo approved > proof.txt  (catty approve ${label} ${first.id}`), { timeoutMs: 15_000, what: "catty list --watch to say what is asked" });
    watch.kill();
    const approved = await fx.user.cli(["approve", label]);
    expect(approved.code).toBe(0);
    await waitFor(() => existsSync(join(workspace, "proof.txt")), { timeoutMs: 30_000, what: "proof.txt in the workspace" });
    await tmux.waitFor("Tool result: ", 60_000);
    expect(await inbox()).toEqual([]);
    // Answered once: again is a conflict saying so (exit 1).
    const again = await fx.user.cli(["approve", label, first.id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("Already answered (allowed)");

    // 2. Denied from the dashboard (its inbox, a badge in the header and the tab's title): the command never runs, Claude is told.
    const browser = await launchBrowser();
    try {
      const page = await (await browser.newContext()).newPage();
      await page.goto(fx.server.url);
      await page.getByLabel("API token").fill(fx.server.ownerToken);
      await page.getByRole("button", { name: "Sign in" }).click();
      await run("echo denied > denied.txt", "Try the denied one");
      const denied = await asked(tmux, label, "echo denied > denied.txt");
      const card = page.getByRole("listitem", { name: `Request ${denied.id}` });
      await card.getByText("echo denied > denied.txt").waitFor({ timeout: 15_000 });
      await page.getByLabel("1 waiting for an answer").waitFor({ timeout: 15_000 });
      expect(await page.title()).toBe("(1) asking · Catty");
      await card.getByRole("button", { name: "Deny" }).click();
      await card.getByRole("status").filter({ hasText: "Denied" }).waitFor({ timeout: 15_000 });
      await tmux.waitFor("Tool result (error): The user denied this from outside the terminal.", 60_000);
      expect(existsSync(join(workspace, "denied.txt"))).toBe(false);

      // 3. Answered in the terminal while the dashboard shows it: its card says so; a late answer is told so.
      await run("echo terminal > terminal.txt", "Ask the terminal");
      const third = await asked(tmux, label, "echo terminal > terminal.txt");
      const thirdCard = page.getByRole("listitem", { name: `Request ${third.id}` });
      await thirdCard.getByRole("button", { name: "Allow", exact: true }).waitFor({ timeout: 15_000 });
      await tmux.waitFor("Do you want to proceed?", 30_000);
      // (A key that comes before the dialog reads its terminal is lost: pressed while the dialog shows.)
      await waitFor(
        () => {
          if (tmux.capture().includes("Do you want to proceed?")) tmux.keys("1");
          return existsSync(join(workspace, "terminal.txt"));
        },
        { timeoutMs: 30_000, intervalMs: 500, what: "terminal.txt, allowed in the terminal" },
      ).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}\n--- screen ---\n${tmux.capture()}`);
      });
      await thirdCard.getByRole("status").filter({ hasText: "Answered in the terminal" }).waitFor({ timeout: 15_000 });
      await page.screenshot({ path: join(SCREENSHOTS, "inbox-answered-in-terminal.png") });
      expect(await inbox()).toEqual([]);
      const late = await fx.user.cli(["approve", label, third.id]);
      expect(late.code).toBe(1);
      expect(late.stderr).toContain("Already answered in the terminal");
    } finally {
      await browser.close();
    }

    // 4. Always: the same command again runs without asking; the rule is listed.
    await run("echo again >> always.txt", "Always this one");
    await asked(tmux, label, "echo again >> always.txt");
    const always = await fx.user.cli(["approve", label, "--always"]);
    expect(always.code).toBe(0);
    expect(always.stdout + always.stderr).toContain("echo again >> always.txt");
    await waitFor(() => existsSync(join(workspace, "always.txt")), { timeoutMs: 30_000, what: "always.txt" });
    await typePrompt(tmux, "Always this one");
    await waitFor(async () => (await Bun.file(join(workspace, "always.txt")).text()) === "again\nagain\n", { timeoutMs: 60_000, what: "the command run again without asking" });
    expect(await inbox()).toEqual([]);
    const rules = (await (await fx.user.api("GET", `/v1/sessions/${label}/rules`)).json()) as Array<{ tool: string; prefix: string }>;
    expect(rules).toMatchObject([{ tool: "Bash", prefix: "echo again >> always.txt" }]);

    // catty inbox on a terminal: the list with the command; "a" allows the selected request.
    await run("echo ink > ink.txt", "From the list");
    await asked(tmux, label, "echo ink > ink.txt");
    const list = new Tmux({ HOME: fx.user.home, CATTY_HOME: fx.user.home, PATH: `${fx.bins.dir}:${process.env.PATH}`, PS1: "$ " });
    list.start({ cols: 120, rows: 30, cwd: project });
    try {
      // A user's terminal: CI runs set CI, where catty prints the table instead.
      list.type("env -u CI catty inbox; echo INBOX_EXIT=$?");
      await list.waitFor(new RegExp(`${label} Bash[\\s\\S]*echo ink > ink\\.txt`), 15_000);
      expect(list.capture()).toContain("a allow · d deny · A always allow");
      list.keys("a");
      await list.waitFor(`Allowed ${label}'s Bash.`, 15_000);
      await waitFor(() => existsSync(join(workspace, "ink.txt")), { timeoutMs: 30_000, what: "ink.txt, allowed from catty inbox" });
      list.keys("q");
      await list.waitFor("INBOX_EXIT=0", 15_000);
    } finally {
      list.kill();
    }

    // 5. Web Push to two devices (one the push service says is gone: dropped), the payload
    // encrypted for the device and the VAPID JWT good; and an ntfy message (retried after the
    // stand-in's 503). Both carry the same one-use action links, which need no other credential.
    const phone = pushService.device();
    const old = pushService.device();
    pushService.gone.add(old.id);
    for (const d of [phone, old]) expect((await fx.user.api("POST", "/v1/push/subscriptions", d.subscription)).status).toBe(201);
    expect((await fx.user.api("POST", "/v1/push/subscriptions", { endpoint: "ftp://x/y", keys: phone.subscription.keys })).status).toBe(400);
    ntfy.failNext = 1;
    await run("echo phone > phone.txt", "Answer from the phone");
    const fifth = await asked(tmux, label, "echo phone > phone.txt");
    const pushed = await waitFor(() => pushService.messages.find((m) => m.id === phone.id) ?? null, { timeoutMs: 15_000, what: "the push at the push service" });
    expect(pushed.problem).toBeNull();
    expect(pushed.vapid?.k).toBe(((await (await fx.user.api("GET", "/v1/push/key")).json()) as { publicKey: string }).publicKey);
    const payload = JSON.parse(pushed.payload ?? "") as { title: string; body: string; url: string; actions: { allow: string; deny: string } };
    expect(payload).toMatchObject({ title: `${label} asks to run a command`, body: "echo phone > phone.txt", url: `/s/${label}` });
    await waitFor(async () => ((await (await fx.user.api("GET", "/v1/push/subscriptions")).json()) as unknown[]).length === 1, { timeoutMs: 15_000, what: "the gone subscription dropped" });
    const message = await waitFor(() => ntfy.received.find((m) => m.status === 200 && m.body === "echo phone > phone.txt") ?? null, { timeoutMs: 15_000, what: "the ntfy message" });
    expect(ntfy.received.filter((m) => m.body === "echo phone > phone.txt").map((m) => m.status)).toEqual([503, 200]);
    expect(message).toMatchObject({ topic: "catty-inbox" });
    expect(message.headers.title).toBe(`${label} asks to run a command`);
    expect(message.headers.click).toBe(`${fx.server.url}/s/${label}`);
    const [allow, deny] = ntfyActions(message.headers.actions ?? "");
    expect([allow?.label, deny?.label, allow?.url]).toEqual(["Allow", "Deny", `${fx.server.url}${payload.actions.allow}`]);
    expect((await fetch(allow!.url)).status).toBe(404);
    const acted = await fetch(`${fx.server.url}${payload.actions.allow}`, { method: "POST" });
    expect(acted.status).toBe(200);
    expect(await acted.json()).toMatchObject({ answered: true, id: fifth.id, behavior: "allow" });
    await waitFor(() => existsSync(join(workspace, "phone.txt")), { timeoutMs: 30_000, what: "phone.txt, allowed from the notification" });
    // Replayed, or the other button after the answer: refused.
    expect((await fetch(allow!.url, { method: "POST" })).status).toBe(404);
    expect((await fetch(deny!.url, { method: "POST" })).status).toBe(404);
    await waitFor(() => ntfy.received.find((m) => m.headers.title === `${label}: allowed`) ?? null, { timeoutMs: 15_000, what: "the ntfy message saying it was allowed" });

    // The session's own credential (its Claude API token) asks, and only asks.
    await run("echo never > never.txt", "One more");
    const pending = await asked(tmux, label, "echo never > never.txt");
    const own = await fetch(`${fx.server.url}/v1/sessions/${label}/requests/${pending.id}/answer`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${await programToken(label)}` },
      body: JSON.stringify({ behavior: "allow" }),
    });
    expect(own.status).toBe(401);
    // A wrong label or an unknown id is a 404.
    expect((await fx.user.api("POST", `/v1/sessions/${label}/requests/000000000000/answer`, { behavior: "allow" })).status).toBe(404);
    expect((await fx.user.api("POST", `/v1/sessions/nobody-here-1/requests/${pending.id}/answer`, { behavior: "allow" })).status).toBe(404);
    // catty send is refused while a request waits.
    const early = await fx.user.cli(["send", label, "Hello?"]);
    expect(early.code).toBe(1);
    expect(early.stderr).toContain("waits for an answer to a request first");
    expect((await fx.user.cli(["deny", label, "--message", "Not this one, thanks"])).code).toBe(0);
    await tmux.waitFor("Tool result (error): Not this one, thanks", 60_000);
    expect(existsSync(join(workspace, "never.txt"))).toBe(false);

    // Done with its turn, Claude Code waits: catty send types the next message and submits it.
    await waitFor(async () => (await fx.user.session(label)).attention?.state === "waiting", { timeoutMs: 30_000, what: "Claude Code waiting" });
    api.toolUse = null;
    api.reply = { text: "Replying to the sent message.", deltas: 2 };
    const sent = await fx.user.cli(["send", label, "A message from catty send"]);
    expect(sent.code).toBe(0);
    await tmux.waitFor("Replying to the sent message.", 60_000);
    expect(api.requests.some((r) => r.path === "/v1/messages" && r.body.includes("A message from catty send"))).toBe(true);
    // Control characters are refused, changing nothing.
    const bad = await fx.user.cli(["send", label, "rm -rf x\x1b[A"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("without control characters");
    expect((await fx.user.api("POST", `/v1/sessions/${label}/send`, { text: "one\ntwo" })).status).toBe(400);
    await fx.user.api("POST", `/v1/sessions/${label}/stop`, {});
  }, 420_000);
});

describe("the dashboard as an app", () => {
  test("manifest, icon and service worker; a push delivered to the worker (DevTools protocol) shows the notification with Allow and Deny", async () => {
    const manifest = await fetch(`${fx.server.url}/manifest.webmanifest`);
    expect(manifest.headers.get("content-type")).toBe("application/manifest+json");
    expect(await manifest.json()).toMatchObject({ name: "Catty", start_url: "/", display: "standalone", icons: [{ src: "/icon.svg" }] });
    expect((await fetch(`${fx.server.url}/icon.svg`)).status).toBe(200);
    const browser = await launchBrowser();
    try {
      const context = await browser.newContext();
      await context.grantPermissions(["notifications"], { origin: fx.server.url });
      const page = await context.newPage();
      const cdp = await context.newCDPSession(page);
      const registrations: Array<{ registrationId: string; scopeURL: string }> = [];
      cdp.on("ServiceWorker.workerRegistrationUpdated", (e: { registrations: Array<{ registrationId: string; scopeURL: string }> }) => registrations.push(...e.registrations));
      await cdp.send("ServiceWorker.enable");
      await page.goto(fx.server.url);
      await page.getByLabel("API token").fill(fx.server.ownerToken);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("button", { name: "Notify me" }).waitFor();
      // (Evaluated in the page, written as text: these tests have no DOM types.)
      expect(await page.evaluate("navigator.serviceWorker.ready.then((r) => r.active && r.active.scriptURL)")).toBe(`${fx.server.url}/sw.js`);
      const reg = await waitFor(() => registrations.find((r) => r.scopeURL === `${fx.server.url}/`) ?? null, { what: "the worker's registration" });
      const payload = { title: "brave-tiger-1234 asks to run a command", body: "npm test", url: "/s/brave-tiger-1234", request: { id: "0123456789ab", label: "brave-tiger-1234", tool: "Bash" }, actions: { allow: "/v1/act/act_a", deny: "/v1/act/act_d" } };
      await cdp.send("ServiceWorker.deliverPushMessage", { origin: fx.server.url, registrationId: reg.registrationId, data: JSON.stringify(payload) });
      const shown = await waitFor(
        async () => {
          const list = (await page.evaluate(
            "navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((ns) => ns.map((n) => ({ title: n.title, body: n.body, tag: n.tag, actions: (n.actions || []).map((a) => a.title) })))",
          )) as Array<{ title: string; body: string; tag: string; actions: string[] }>;
          return list[0] ?? null;
        },
        { timeoutMs: 15_000, what: "the notification the worker shows" },
      );
      expect(shown).toEqual({ title: payload.title, body: "npm test", tag: "catty-0123456789ab", actions: ["Allow", "Deny"] });
    } finally {
      await browser.close();
    }
  }, 60_000);
});

describe("catty send", () => {
  test("into a shell waiting at its prompt: the command runs; an unknown session is not found", async () => {
    const res = await fx.user.api("POST", "/v1/sessions", { command: ["bash", "--norc", "--noprofile", "-i"], cols: 80, rows: 24 });
    expect(res.status).toBe(201);
    const label = ((await res.json()) as { label: string }).label;
    await waitFor(async () => (await fx.user.session(label)).status === "running", { timeoutMs: 30_000, what: "the shell running" });
    // Quiet at its prompt, the shell is no longer working (agent/attention.ts: waiting, or idle where the agent cannot see its wait).
    await waitFor(async () => ["waiting", "idle"].includes((await fx.user.session(label)).attention?.state ?? ""), { timeoutMs: 30_000, what: "the shell quiet at its prompt" });
    const sent = await fx.user.cli(["send", label, "echo sent-by-catty > sent.txt"]);
    expect(sent.code).toBe(0);
    await waitFor(async () => existsSync(join(fx.user.workspace(label), "sent.txt")) && (await Bun.file(join(fx.user.workspace(label), "sent.txt")).text()) === "sent-by-catty\n", { timeoutMs: 15_000, what: "sent.txt written by the shell" });
    const gone = await fx.user.cli(["send", "nobody-here-1", "x"]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain("not found");
    await fx.user.api("POST", `/v1/sessions/${label}/stop`, {});
  }, 90_000);
});

/** The Claude API token the session's program holds, read from the environment of its process. */
async function programToken(label: string): Promise<string> {
  const pids = new TextDecoder().decode(Bun.spawnSync(["pgrep", "-f", "claude --settings"]).stdout).split("\n").filter(Boolean);
  for (const pid of pids) {
    const cwd = await readlink(`/proc/${pid.trim()}/cwd`).catch(() => "");
    if (!cwd.includes(label)) continue;
    const env = await Bun.file(`/proc/${pid.trim()}/environ`).text().catch(() => "");
    const token = /(?:^|\0)ANTHROPIC_AUTH_TOKEN=([^\0]+)/.exec(env)?.[1];
    if (token) return token;
  }
  throw new Error(`no process of ${label} holds a Claude API token`);
}
