/**
 * `catty-agent` as a process (`bun agent/main.ts`): its configuration from the environment
 * contract, and its end when its server is gone for good.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { PROTOCOL_VERSION } from "../../src/protocol/index.ts";
import { tempDirs } from "../helpers/fs.ts";
import { freePort } from "../helpers/ports.ts";
import { waitFor } from "../helpers/wait.ts";
import { pidAlive } from "../helpers/agents.ts";

const MAIN = resolve(import.meta.dir, "../../agent/main.ts");
const temp = tempDirs("catty-agent-main-");

function spawnAgent(env: Record<string, string>): Subprocess<"ignore", "pipe", "pipe"> {
  const agent = Bun.spawn([process.execPath, MAIN], { env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env }, stdout: "pipe", stderr: "pipe" });
  return agent;
}

/** Waits for the agent to exit (with a deadline); its exit code and what it logged. */
async function ended(agent: Subprocess<"ignore", "pipe", "pipe">, timeoutMs: number): Promise<{ code: number; log: string }> {
  const timer = setTimeout(() => agent.kill("SIGKILL"), timeoutMs);
  const code = await agent.exited;
  clearTimeout(timer);
  const log = await new Response(agent.stderr).text();
  if (agent.signalCode === "SIGKILL") throw new Error(`the agent did not exit within ${timeoutMs} ms; it logged:\n${log}`);
  return { code, log };
}

function workspaceEnv(): Record<string, string> {
  const workspace = join(temp(), "workspace");
  mkdirSync(workspace);
  return { CATTY_AGENT_TOKEN: "t0ken", CATTY_WORKSPACE: workspace, CATTY_SAVE_FIRST_MS: "3600000" };
}

describe("catty-agent's configuration", () => {
  test("a malformed variable: one line naming it, and exit 1", async () => {
    const { code, log } = await ended(spawnAgent({ ...workspaceEnv(), CATTY_SERVER_URL: "http://127.0.0.1:9", CATTY_COLS: "wide" }), 10_000);
    expect(code).toBe(1);
    const lines = log.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('CATTY_COLS must be a whole number of at least 1, got "wide"');
  });

  test("a missing variable: one line naming it, and exit 1", async () => {
    const { code, log } = await ended(spawnAgent({ CATTY_AGENT_TOKEN: "t0ken", CATTY_WORKSPACE: "/nonexistent" }), 10_000);
    expect(code).toBe(1);
    expect(log.trim().split("\n")).toHaveLength(1);
    expect(log).toContain("CATTY_SERVER_URL is not set");
  });
});

describe("an agent whose server is gone for good", () => {
  test("one that never reaches its server exits non-zero after the idle timeout and a last try", async () => {
    const port = freePort(); // nothing listens here
    const started = Date.now();
    const agent = spawnAgent({ ...workspaceEnv(), CATTY_SERVER_URL: `http://127.0.0.1:${port}`, CATTY_SESSION_IDLE_MS: "1500" });
    const { code, log } = await ended(agent, 20_000);
    expect(code).toBe(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_000); // the idle timeout, then the last try
    expect(log).toContain("one last try");
    expect(log).toMatch(/the server has been unreachable for \d+s; exiting/);
  }, 30_000);

  test("one whose server went away stops its program and exits non-zero", async () => {
    // A stand-in server: welcomes the agent, which then starts its program.
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch(req, srv) {
        if (new URL(req.url).pathname === "/v1/agent/connect" && srv.upgrade(req)) return undefined;
        return new Response("not found", { status: 404 });
      },
      websocket: {
        message(ws, data) {
          if (typeof data === "string" && JSON.parse(data).type === "hello") {
            ws.send(JSON.stringify({ type: "welcome", protocol: PROTOCOL_VERSION, label: "lone-wolf-0001", restore: null }));
          }
        },
      },
    });
    const env = workspaceEnv();
    const pidFile = join(temp(), "program.pid");
    const agent = spawnAgent({
      ...env,
      CATTY_SERVER_URL: `http://127.0.0.1:${server.port}`,
      CATTY_SESSION_IDLE_MS: "1500",
      CATTY_COMMAND: JSON.stringify(["sh", "-c", `echo $$ > ${pidFile}; exec sleep 600`]),
    });
    try {
      await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, "utf8").endsWith("\n"), { timeoutMs: 15_000, what: "the program to start" });
      const pid = Number(readFileSync(pidFile, "utf8"));
      expect(pidAlive(pid)).toBe(true);
      server.stop(true); // the server is gone, and nothing listens on its port any more
      const { code, log } = await ended(agent, 20_000);
      expect(code).toBe(1);
      expect(log).toContain("stopping the program and exiting");
      expect(pidAlive(pid)).toBe(false);
    } finally {
      server.stop(true);
      agent.kill("SIGKILL");
    }
  }, 40_000);
});
