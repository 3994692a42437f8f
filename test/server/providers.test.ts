/**
 * The local provider starts a detached process with exactly the agent's environment contract
 * (src/protocol/agent-env.ts) plus the host basics, never the server's own settings or storage
 * credentials, and with the usual umask whatever the server's own.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveSandbox } from "../../server/providers/sandbox.ts";
import { createLocalProvider, sessionDir } from "../../server/providers/local.ts";
import { readServerConfig } from "../../server/config.ts";
import { silentLog } from "../../src/lib/log.ts";
import { readAgentEnv } from "../../src/protocol/agent-env.ts";
import type { MachineHandle } from "../../src/protocol/index.ts";
import { waitFor } from "../helpers/wait.ts";

const started: MachineHandle[] = [];
afterAll(() => {
  for (const m of started) {
    try {
      if (m.provider === "local") process.kill(m.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

/** Stands in for catty-agent: writes its environment and umask into its cwd, then waits. */
const DUMP = `require("fs").writeFileSync("dump.json", JSON.stringify({ env: process.env, umask: process.umask() })); setInterval(() => {}, 1000);`;

describe("local provider", () => {
  test("writes the agent's environment with the contract, the session's idle timeout and the tuning", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "catty-provider-"));
    const serverEnv = { ...process.env, CATTY_SAVE_INTERVAL_MS: "700", CATTY_RING_BYTES: "4096", CATTY_LOG_LEVEL: "debug" };
    const config = readServerConfig({ "data-dir": dataDir }, serverEnv);
    const provider = createLocalProvider({
      dataDir,
      agentCommand: [process.execPath, "-e", DUMP],
      tuning: config.agentTuning,
      sandbox: resolveSandbox("none", config.sessionLimits),
      mayRunUnsandboxed: async () => true,
      log: silentLog,
    });
    // Secrets in the server's own environment must not reach a session.
    const secrets = { CATTY_S3_SECRET_ACCESS_KEY: "s3-secret", AWS_SECRET_ACCESS_KEY: "aws-secret", CATTY_DATA_DIR: dataDir };
    Object.assign(process.env, secrets);
    const serverUmask = process.umask(0o077);
    let machine: MachineHandle;
    try {
      machine = await provider.start({
        label: "brave-tiger-1234",
        agentToken: "agt_token",
        serverUrl: "http://127.0.0.1:9",
        command: ["vim", "a b"],
        cols: 100,
        rows: 30,
        idleTimeoutMs: 90_000,
      });
    } finally {
      process.umask(serverUmask);
      for (const k of Object.keys(secrets)) delete process.env[k];
    }
    started.push(machine);
    const dir = sessionDir(dataDir, "brave-tiger-1234");
    expect(machine).toMatchObject({ provider: "local", dir });
    const dumpFile = join(dir, "workspace", "dump.json");
    await waitFor(() => existsSync(dumpFile) && readFileSync(dumpFile, "utf8").endsWith("}"), { what: "the stand-in agent's dump" });
    const { env, umask } = JSON.parse(readFileSync(dumpFile, "utf8")) as { env: Record<string, string>; umask: number };
    expect(readAgentEnv(env)).toEqual({
      serverUrl: "http://127.0.0.1:9",
      token: "agt_token",
      workspace: join(dir, "workspace"),
      stateDir: join(dir, "agent-state"),
      command: ["vim", "a b"],
      cols: 100,
      rows: 30,
      idleTimeoutMs: 90_000,
      wrap: [],
      owner: undefined,
      ringBytes: 4096,
      saveFirstMs: 10_000,
      saveIntervalMs: 700,
      syncMaxBytes: 50 * 1024 * 1024,
      syncScanMs: 5_000,
      logLevel: "debug",
    });
    expect(env.CATTY_SESSION_IDLE_MS).toBe("90000");
    expect(env.PATH).toBe(process.env.PATH as string);
    expect(env.HOME).toBe(process.env.HOME as string);
    for (const [name, value] of Object.entries(secrets)) {
      expect(env[name]).toBeUndefined();
      expect(Object.values(env)).not.toContain(value);
    }
    expect(umask).toBe(0o022);
    expect(process.umask()).toBe(serverUmask);

    expect(await provider.isAlive(machine)).toBe(true);
    await provider.destroy(machine);
    await waitFor(async () => !(await provider.isAlive(machine)), { what: "the machine to be gone" });
  });

  test("without a sandbox, a server with more than one user (or beyond loopback) refuses to start a session, saying what to do", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "catty-provider-"));
    const config = readServerConfig({ "data-dir": dataDir }, process.env);
    const provider = createLocalProvider({
      dataDir,
      agentCommand: [process.execPath, "-e", DUMP],
      tuning: config.agentTuning,
      sandbox: resolveSandbox("none", config.sessionLimits),
      mayRunUnsandboxed: async () => false,
      log: silentLog,
    });
    expect(provider.isolated).toBe(false);
    const spec = { label: "brave-tiger-1234", agentToken: "agt_x", serverUrl: "http://127.0.0.1:9", command: [], cols: 80, rows: 24, idleTimeoutMs: 60_000 };
    const err = await provider.start(spec).then(() => null, (e: Error) => e);
    expect(err?.message).toContain("would not be isolated");
    expect(err?.message).toContain("install bubblewrap");
    expect(existsSync(sessionDir(dataDir, "brave-tiger-1234"))).toBe(false);
  });
});
