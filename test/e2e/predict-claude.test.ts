/**
 * Predictive echo in Claude Code's input box (the real CLI, test/helpers/claude-code.ts, against
 * the Anthropic API stand-in): `catty` in tmux attached through a proxy that delays each
 * direction by half of a 150 ms round trip; a 40-character prompt typed key by key shows at once
 * (at least 90 % of the keys before their echo could have come), and ends as Claude Code drew it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAnthropicStandIn, type AnthropicStandIn } from "../helpers/anthropic.ts";
import { claudeCodeBinDir } from "../helpers/claude-code.ts";
import { DelayProxy } from "../helpers/delay-proxy.ts";
import { Tmux } from "../helpers/tmux.ts";
import { waitFor } from "../helpers/wait.ts";
import { startWorkspaceServer, writeTree, type WorkspaceFixture } from "../helpers/workspace.ts";

const RTT_MS = 150;
let api: AnthropicStandIn;
let fx: WorkspaceFixture;
let bin: string;

beforeAll(async () => {
  bin = await claudeCodeBinDir();
  api = startAnthropicStandIn();
  api.reply = { text: "Hello from the stand-in.", deltas: 2 };
  fx = await startWorkspaceServer({ CATTY_ANTHROPIC_API_KEY: "sk-ant-predict-e2e", CATTY_ANTHROPIC_UPSTREAM: api.url, PATH: `${bin}:${process.env.PATH}` });
}, 300_000);

afterAll(async () => {
  await fx?.close();
  api?.stop();
});

describe("predictive echo in Claude Code's input box at 150 ms round trip", () => {
  test("a 40-character prompt: each character shows long before its echo", async () => {
    using proxy = DelayProxy.start({ port: fx.server.port, rttMs: RTT_MS });
    const project = mkdtempSync(join(tmpdir(), "catty-cc-predict-"));
    writeTree(project, { "README.md": "# a project\n" });
    const tmux = new Tmux({
      HOME: fx.user.home, CATTY_HOME: fx.user.home, CATTY_API_ADDR: proxy.url, CATTY_TOKEN: fx.server.ownerToken,
      CATTY_PREDICT: "auto", PATH: `${fx.bins.dir}:${bin}:${process.env.PATH}`, PS1: "$ ",
    });
    tmux.start({ cols: 120, rows: 40 });
    try {
      tmux.type(`cd ${project} && catty new; echo NEW_EXIT=$?`);
      await tmux.waitFor(/Session \S+ started/, 60_000);
      await tmux.waitFor(/auto mode|for shortcuts|\/effort/, 60_000);
      const line = "write a haiku about slow links and cats!";
      expect(line).toHaveLength(40);
      const shownMs: number[] = [];
      for (let i = 0; i < line.length; i++) {
        tmux.type(line[i] as string, false);
        const started = performance.now();
        const want = line.slice(0, i + 1).trimEnd();
        await waitFor(() => tmux.capture().split("\n").some((l) => l.replace(/\u00a0/g, " ").includes(`❯ ${want}`)), { intervalMs: 1, timeoutMs: 5_000, what: want }).catch((e: Error) => {
          throw new Error(`${e.message}\n${tmux.capture()}`);
        });
        shownMs.push(performance.now() - started);
      }
      const sorted = [...shownMs].sort((a, b) => a - b);
      console.log(`claude code: shown after (ms) p50 ${sorted[20]?.toFixed(1)}, max ${sorted.at(-1)?.toFixed(1)}; ${shownMs.filter((ms) => ms < 20).length} of 40 under 20 ms`);
      // At least 90 % shown before their echo could have come (the first key of a new prompt waits
      // for its echo); how soon is the benchmark's to measure.
      expect(shownMs.filter((ms) => ms < RTT_MS / 2).length).toBeGreaterThanOrEqual(36);
      // Once the echo is in: the prompt as Claude Code drew it, nothing underlined.
      await waitFor(() => {
        const row = tmux.captureAttributes().split("\n").find((l) => l.includes("❯"));
        return row !== undefined && !row.includes("\x1b[4m") && row.replace(/\u00a0/g, " ").includes(line);
      }, { what: "the prompt as Claude Code drew it" });
    } finally {
      tmux.kill();
    }
  }, 300_000);
});
