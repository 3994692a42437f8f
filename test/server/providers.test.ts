/**
 * The local provider starts a detached process with exactly the agent's environment contract
 * (src/protocol/agent-env.ts) plus the host basics, never the server's own settings or storage
 * credentials, and with the usual umask whatever the server's own. The Docker provider asks the
 * engine for a container with that contract, the session's limits and labels (a recording
 * client here; test/e2e/docker.test.ts runs a real engine).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dockerEndpoint, type ContainerSpec, type DockerClient } from "../../server/providers/docker-api.ts";
import { createDockerProvider, LABELS } from "../../server/providers/docker.ts";
import { resolveSandbox } from "../../server/providers/sandbox.ts";
import { createLocalProvider, sessionDir } from "../../server/providers/local.ts";
import { readServerConfig } from "../../server/config.ts";
import { startServer } from "../../server/startup.ts";
import { silentLog } from "../../src/lib/log.ts";
import { readAgentEnv } from "../../src/protocol/agent-env.ts";
import type { MachineHandle } from "../../src/protocol/index.ts";
import { waitFor } from "../helpers/wait.ts";
import { removeAfterRun } from "../helpers/fs.ts";

const LOCAL = { id: "local", name: "Local", place: null };

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
    const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-provider-")));
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
        region: LOCAL,
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
      netns: undefined,
      egress: undefined,
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
    const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-provider-")));
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
    const spec = { label: "brave-tiger-1234", agentToken: "agt_x", serverUrl: "http://127.0.0.1:9", command: [], cols: 80, rows: 24, idleTimeoutMs: 60_000, region: LOCAL };
    const err = await provider.start(spec).then(() => null, (e: Error) => e);
    expect(err?.message).toContain("would not be isolated");
    expect(err?.message).toContain("install bubblewrap");
    expect(existsSync(sessionDir(dataDir, "brave-tiger-1234"))).toBe(false);
  });
});

describe("Docker provider", () => {
  /** A Docker client that records what the provider asks of it. */
  function recordingDocker(): { client: DockerClient; created: Array<{ name: string; spec: ContainerSpec }>; removed: string[] } {
    const created: Array<{ name: string; spec: ContainerSpec }> = [];
    const removed: string[] = [];
    const client: DockerClient = {
      host: "unix:///nowhere.sock",
      ping: async () => {},
      run: async (name, spec) => {
        created.push({ name, spec });
        return "a".repeat(64);
      },
      inspect: async () => null,
      list: async () => [
        { Id: "a".repeat(64), State: "running", Labels: {} },
        { Id: "b".repeat(64), State: "exited", Labels: {} },
      ],
      remove: async (id) => void removed.push(id),
      hasImage: async () => true,
      importImage: async () => {},
      build: async () => {},
      removeImage: async () => {},
    };
    return { client, created, removed };
  }

  const limits = { memoryBytes: 1024 ** 3, cpus: 1.5, pids: 200 };

  test("a container with the agent's contract, the limits, no capabilities beyond the agent's, and labels", async () => {
    const { client, created } = recordingDocker();
    const config = readServerConfig({}, { ...process.env, CATTY_SAVE_INTERVAL_MS: "700" });
    const provider = createDockerProvider({
      docker: client,
      image: "catty-session:test",
      network: "bridge",
      regions: [{ id: "eu-west", name: "EU West", place: null }],
      limits,
      diskBytes: 10 * 1024 ** 3,
      tuning: config.agentTuning,
      serverId: "0123456789abcdef",
      egress: { policy: "public", allow: [{ host: "10.1.2.3", port: 443 }] },
      log: silentLog,
    });
    expect(provider.regions).toEqual([{ id: "eu-west", name: "EU West", place: null }]);
    expect(provider.isolated).toBe(true);
    const machine = await provider.start({
      label: "brave-tiger-1234",
      agentToken: "agt_token",
      serverUrl: "http://127.0.0.1:9",
      command: ["bash"],
      cols: 100,
      rows: 30,
      region: LOCAL,
      idleTimeoutMs: 90_000,
    });
    expect(machine).toMatchObject({ provider: "docker", id: "a".repeat(64) });
    const [{ name, spec }] = created as [{ name: string; spec: ContainerSpec }];
    expect(name).toMatch(/^catty-brave-tiger-1234-[0-9a-f]{8}$/);
    expect(spec.Image).toBe("catty-session:test");
    expect(spec.Labels).toEqual({ [LABELS.session]: "brave-tiger-1234", [LABELS.server]: "0123456789abcdef" });
    expect(spec.HostConfig).toMatchObject({
      NetworkMode: "bridge",
      Memory: 1024 ** 3,
      MemorySwap: 1024 ** 3,
      NanoCpus: 1.5e9,
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges"],
      StorageOpt: { size: String(10 * 1024 ** 3) },
    });
    // The program's own process limit, and room above it for the agent.
    expect(spec.HostConfig.PidsLimit).toBeGreaterThan(200);
    const env = Object.fromEntries(spec.Env.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));
    const agent = readAgentEnv(env);
    expect(agent).toMatchObject({ token: "agt_token", workspace: "/workspace", command: ["bash"], saveIntervalMs: 700, idleTimeoutMs: 90_000 });
    const uid = Number(env.CATTY_PROGRAM_UID);
    expect(uid).toBeGreaterThanOrEqual(200_000);
    expect(agent.owner).toBe(`${uid}:${uid}`);
    expect(agent.wrap.slice(0, 2)).toEqual(["prlimit", "--nproc=200"]);
    expect(agent.wrap).toContain(`--reuid=${uid}`);
    expect(agent.wrap).toContain("--no-new-privs");
    expect(agent.wrap).toContain("--bounding-set=-all");
    // The agent sets the egress policy up in the container (with the capability for it).
    expect(agent.egress).toEqual({ policy: "public", allow: [{ host: "10.1.2.3", port: 443 }] });
    expect(spec.HostConfig.CapAdd).toContain("NET_ADMIN");
    // Two sessions, two program users.
    await provider.start({ label: "calm-otter-5678", agentToken: "agt_2", serverUrl: "http://127.0.0.1:9", command: [], cols: 80, rows: 24, idleTimeoutMs: 1000, region: LOCAL });
    const env2 = (created[1] as { spec: ContainerSpec }).spec.Env.find((e) => e.startsWith("CATTY_PROGRAM_UID="));
    expect(env2).not.toBe(`CATTY_PROGRAM_UID=${uid}`);
  });

  test("on the host's network only the egress policy `all` holds: any other is refused, saying what to do", async () => {
    const start = (policy: "public" | "all") => {
      const { client, created } = recordingDocker();
      const provider = createDockerProvider({
        docker: client, image: "i", network: "host", regions: [LOCAL], limits, tuning: readServerConfig({}, {}).agentTuning, serverId: "x", log: silentLog,
        egress: { policy, allow: [] },
      });
      const spec = { label: "calm-otter-5678", agentToken: "agt_2", serverUrl: "http://127.0.0.1:9", command: [], cols: 80, rows: 24, idleTimeoutMs: 1000, region: LOCAL };
      return { started: provider.start(spec), created };
    };
    await expect(start("public").started).rejects.toThrow(/CATTY_SESSION_EGRESS=all/);
    const all = start("all");
    await all.started;
    const env = (all.created[0] as { spec: ContainerSpec }).spec.Env;
    expect(env.some((e) => e.startsWith("CATTY_AGENT_EGRESS="))).toBe(false);
  });

  test("a restarted server removes its containers that no live session owns", async () => {
    const { client, removed } = recordingDocker();
    const provider = createDockerProvider({
      docker: client, image: "i", network: "bridge", regions: [LOCAL], limits, tuning: readServerConfig({}, {}).agentTuning, serverId: "x", log: silentLog,
      egress: { policy: "public", allow: [] },
    });
    await provider.reconcile?.([{ provider: "docker", id: "a".repeat(64), name: "catty-a" }], new Set());
    expect(removed).toEqual(["b".repeat(64)]);
  });

  test("DOCKER_HOST forms", () => {
    expect(dockerEndpoint("unix:///var/run/docker.sock")).toEqual({ base: "http://docker", unix: "/var/run/docker.sock" });
    expect(dockerEndpoint("tcp://10.0.0.2:2375")).toEqual({ base: "http://10.0.0.2:2375" });
    expect(() => dockerEndpoint("ssh://host")).toThrow(/unix:\/\/ socket or a tcp:\/\/ address/);
  });
});

describe("a local server asked for an egress policy it cannot hold", () => {
  test("refuses to start, saying what to do (sessions would otherwise run open)", async () => {
    const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-provider-local-")));
    const config = readServerConfig({ port: "0", "data-dir": dataDir }, { ...process.env, CATTY_SANDBOX: "none", CATTY_SESSION_EGRESS: "public" });
    await expect(startServer(config, silentLog)).rejects.toThrow(/CATTY_SESSION_EGRESS is set, but this server cannot give local sessions a network of their own .*or unset it/);
  });
});

describe("a server with --provider docker", () => {
  const start = (env: Record<string, string>) => {
    const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-provider-docker-")));
    return startServer(readServerConfig({ port: "0", "data-dir": dataDir }, { ...process.env, CATTY_PROVIDER: "docker", ...env }), silentLog);
  };

  test("refuses to start when its containers could not reach it, saying what to do", async () => {
    await expect(start({ DOCKER_HOST: "unix:///nonexistent/docker.sock" })).rejects.toThrow(
      /cannot reach this server on 127\.0\.0\.1: set CATTY_PUBLIC_URL .* or use --docker-network host/,
    );
  });

  test("refuses the host's network unless sessions may reach everything (CATTY_SESSION_EGRESS=all)", async () => {
    await expect(start({ DOCKER_HOST: "unix:///nonexistent/docker.sock", CATTY_DOCKER_NETWORK: "host" })).rejects.toThrow(
      /--docker-network host .* cannot hold: use a bridge network .* or set CATTY_SESSION_EGRESS=all/,
    );
  });

  test("refuses to start without an engine, saying where it looked", async () => {
    await expect(start({ DOCKER_HOST: "unix:///nonexistent/docker.sock", CATTY_DOCKER_NETWORK: "host", CATTY_SESSION_EGRESS: "all" })).rejects.toThrow(
      /cannot reach the Docker engine at unix:\/\/\/nonexistent\/docker\.sock.*Is dockerd running/,
    );
  });
});
