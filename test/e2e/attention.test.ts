/**
 * "Waiting for you", through the real binaries: a program that rings the terminal bell is
 * `waiting`; `catty list` shows it in its STATUS (`running · waiting 0s`), `--json` carries it, and
 * `catty list --watch` prints a line with a bell when a session starts waiting. Output again
 * makes it `working`.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import type { Session } from "../../src/protocol/index.ts";
import { waitFor } from "../helpers/wait.ts";
import { workspaceServerForFile } from "../helpers/workspace.ts";

const fixture = workspaceServerForFile();

/** Trigger files the sessions wait for, removed after the file's tests. */
const triggers: string[] = [];
afterAll(() => {
  for (const file of triggers) rmSync(file, { force: true });
});

/** Lets the sessions' programs that wait for `/tmp/<marker>-<their pid>` go on. */
function release(marker: string): void {
  const pids = new TextDecoder().decode(Bun.spawnSync(["pgrep", "-f", marker]).stdout).split("\n").filter(Boolean);
  for (const pid of pids) {
    const file = `/tmp/${marker}-${pid.trim()}`;
    writeFileSync(file, "");
    triggers.push(file);
  }
}

async function create(script: string): Promise<string> {
  const res = await fixture().user.api("POST", "/v1/sessions", { command: ["bash", "-c", script], cols: 80, rows: 24 });
  expect(res.status).toBe(201);
  return ((await res.json()) as Session).label;
}

describe("attention", () => {
  test("a bell makes a session waiting: catty list shows it, --json carries it, --watch rings; output makes it working", async () => {
    const watch = Bun.spawn([fixture().bins.catty, "list", "--watch"], { env: fixture().user.env as Record<string, string>, stdout: "pipe", stderr: "pipe" });
    let watched = "";
    void (async () => {
      for await (const chunk of watch.stdout as ReadableStream<Uint8Array>) watched += new TextDecoder().decode(chunk);
    })();
    try {
      // The trigger file lets the test say when to print again.
      const label = await create("echo started; sleep 1; printf 'question? \\a'; while [ ! -e /tmp/catty-attn-$$ ]; do sleep 0.1; done; echo answered; sleep 300");
      const waiting = await waitFor(async () => {
        const s = await fixture().user.session(label);
        return s.attention?.state === "waiting" ? s : null;
      }, { timeoutMs: 20_000, what: "the session to wait" });
      expect(Date.parse(waiting.attention?.since ?? "")).toBeGreaterThan(Date.parse(waiting.createdAt));
      const table = await fixture().user.cli(["list"]);
      expect(table.stdout).toMatch(new RegExp(`${label}\\s+running · waiting \\d+s`));
      const json = JSON.parse((await fixture().user.cli(["list", "--json"])).stdout) as Session[];
      expect(json.find((s) => s.label === label)?.attention?.state).toBe("waiting");
      await waitFor(() => watched.includes(`${label} is waiting for you`), { timeoutMs: 15_000, what: "catty list --watch to say so" });
      expect(watched).toContain("\x07");

      // The program prints again (the test's sessions run unsandboxed, so /tmp is shared): working.
      release("catty-attn");
      await waitFor(async () => (await fixture().user.session(label)).attention?.state === "working", { timeoutMs: 15_000, what: "working again" });
      await fixture().user.api("POST", `/v1/sessions/${label}/stop`, {});
      // An ended session has no attention state.
      expect((await fixture().user.session(label)).attention).toBeNull();
    } finally {
      watch.kill();
    }
  }, 60_000);
});

describe("viewers", () => {
  test("a viewer is told when the session starts waiting for input", async () => {
    const label = await create("echo viewer-ready; while [ ! -e /tmp/catty-bell-$$ ]; do sleep 0.1; done; printf 'ready? \\a'; sleep 300");
    const tmux = fixture().user.freshTerminal();
    tmux.type(`catty connect --view ${label}`);
    await tmux.waitFor("viewer-ready", 20_000);
    release("catty-bell");
    await tmux.waitFor(`${label} is waiting for input`, 20_000);
    tmux.keys("C-c");
    tmux.keys("C-c");
    await fixture().user.api("POST", `/v1/sessions/${label}/stop`, {});
  }, 60_000);
});
