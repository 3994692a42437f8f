/**
 * Session lifecycle across a server restart, with the test playing the agent (a rogue provider
 * starts no machine and hands over each session's agent token): an ending the server started is
 * finished the same way by the next server process, and a machine handle that cannot be read
 * counts as a machine that is gone.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Provider } from "../../server/providers/types.ts";
import { keptLog } from "../helpers/log.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { RogueAgent, rogueProvider } from "../helpers/sync-back.ts";
import { waitFor } from "../helpers/wait.ts";
import { removeAfterRun } from "../helpers/fs.ts";

const running: TestServer[] = [];
const agents: RogueAgent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) a.close();
  for (const s of running.splice(0)) await s.stop();
});

/** One data dir, one rogue provider (its token map survives restarts), servers started on it in turn. */
function restartable(env: Record<string, string> = {}) {
  const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-lifecycle-")));
  let rogue: ReturnType<typeof rogueProvider> | undefined;
  const wrapProvider = (real: Provider): Provider => (rogue ??= rogueProvider(real));
  return {
    dataDir,
    tokenOf: (label: string): string => rogue?.tokens.get(label) ?? "",
    async start(): Promise<TestServer> {
      const server = await startTestServer({ dataDir, wrapProvider, env: { CATTY_LIFECYCLE_TICK_MS: "100", ...env } });
      running.push(server);
      return server;
    },
  };
}

async function agentFor(server: TestServer, token: string): Promise<RogueAgent> {
  const agent = new RogueAgent(server.url, token);
  agents.push(agent);
  await agent.hello();
  return agent;
}

/** Starts a session that times out (idle 1 s) while its agent ignores the stop; stops that server. */
async function sessionTimingOutAcrossRestart(h: ReturnType<typeof restartable>): Promise<string> {
  const first = await h.start();
  const { label } = await first.owner.create({ command: ["sleep", "300"], idleTimeoutMs: 1000 });
  const agent = await agentFor(first, h.tokenOf(label));
  const stop = await agent.next("stop", 10_000);
  expect(stop.reason).toBe("idle for 1s (no input or output)");
  expect((await first.owner.get(label)).status).toBe("stopping");
  await first.stop();
  running.splice(running.indexOf(first), 1);
  agent.close();
  return label;
}

describe("an ending survives a server restart", () => {
  test("catty stop after a restart reports a timed-out session as timed out, not stopped", async () => {
    const h = restartable();
    const label = await sessionTimingOutAcrossRestart(h);
    const second = await h.start();
    const agent = await agentFor(second, h.tokenOf(label));
    const stopped = second.owner.stop(label);
    await agent.next("stop");
    agent.send({ type: "exit", code: 0, reason: null, screen: "", finalSave: "stored" });
    const session = await stopped;
    expect(session.status).toBe("timed_out");
    expect(session.endReason).toBe("idle for 1s (no input or output)");
    expect(session.finalSave).toBe("stored");
  });

  test("a restarted server asks the re-dialling agent to stop, and records the ending first asked for", async () => {
    const h = restartable();
    const label = await sessionTimingOutAcrossRestart(h);
    const second = await h.start();
    const agent = await agentFor(second, h.tokenOf(label));
    expect((await agent.next("stop")).reason).toBe("idle for 1s (no input or output)");
    agent.send({ type: "exit", code: 0, reason: "the program was asked to stop", screen: "", finalSave: "unchanged" });
    await agent.next("exit_ack");
    expect(await second.owner.get(label)).toMatchObject({ status: "timed_out", endReason: "idle for 1s (no input or output)" });
  });

  test("an agent that never comes back: the machine is destroyed after the stop timeout", async () => {
    const h = restartable({ CATTY_STOP_TIMEOUT_MS: "1500" });
    const label = await sessionTimingOutAcrossRestart(h);
    const second = await h.start();
    const session = await waitFor(async () => {
      const s = await second.owner.get(label);
      return s.status !== "stopping" && s;
    });
    expect(session).toMatchObject({ status: "timed_out", endReason: "idle for 1s (no input or output) (machine destroyed)" });
  });
});

describe("machine handles", () => {
  test("a handle that does not parse counts as a machine that is gone, with one log line", async () => {
    const h = restartable();
    const first = await h.start();
    const { label } = await first.owner.create({ command: ["sleep", "300"] });
    await first.stop();
    running.splice(0);
    const db = new Database(join(h.dataDir, "catty.db"));
    db.query("UPDATE sessions SET machine = ? WHERE label = ?").run(JSON.stringify({ provider: "docker", id: 7 }), label);
    db.close();
    const log = keptLog();
    const second = await startTestServer({ dataDir: h.dataDir, log });
    running.push(second);
    expect(await second.owner.get(label)).toMatchObject({
      status: "failed",
      endReason: "the session machine was gone when the server started",
    });
    expect(log.lines.filter((l) => l.includes("unreadable machine handle"))).toHaveLength(1);
  });
});
