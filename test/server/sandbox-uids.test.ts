/**
 * Each sandboxed session's program gets a host uid of its own (server/providers/sandbox.ts): the
 * pool's order, and what a server finds in use — the uids of the sessions still running under its
 * data dir (their workspaces' owners) and of any process running as one — so a server restarted
 * while sessions run never gives a running session's uid to another. The local provider runs as
 * root with bubblewrap here, with a stand-in agent (test/e2e/sandbox.test.ts runs real programs).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readServerConfig } from "../../server/config.ts";
import { createLocalProvider, sessionDir, sessionUids } from "../../server/providers/local.ts";
import { processUids, resolveSandbox, SANDBOX_UIDS, UidPool } from "../../server/providers/sandbox.ts";
import type { Provider } from "../../server/providers/types.ts";
import { silentLog } from "../../src/lib/log.ts";
import { readAgentEnv } from "../../src/protocol/agent-env.ts";
import type { MachineHandle } from "../../src/protocol/index.ts";
import { removeAfterRun } from "../helpers/fs.ts";
import { waitFor } from "../helpers/wait.ts";

/** Every stand-in agent started, ended after the file's tests through the provider that started it. */
const started: Array<{ provider: Provider; machine: MachineHandle }> = [];
afterAll(async () => {
  for (const { provider, machine } of started) await provider.destroy(machine);
});

describe("UidPool", () => {
  test("the lowest free uid first; a session keeps its own; a released one is free again; a full range says so", () => {
    const pool = new UidPool({ first: 500, count: 3 });
    expect(pool.take("a")).toBe(500);
    expect(pool.take("b", [501])).toBe(502);
    expect(pool.take("a", [500, 501, 502])).toBe(500); // its own, whatever else is in use
    expect(() => pool.take("c", [501])).toThrow("every sandbox uid (500–502) is held by a running session");
    pool.release("a");
    expect(pool.take("c", [501])).toBe(500);
  });

  test("the range is apart from Docker sessions' (200000–999999) and from every account's", () => {
    expect(SANDBOX_UIDS.first).toBeGreaterThanOrEqual(1_000_000);
    expect(SANDBOX_UIDS.first + SANDBOX_UIDS.count).toBeLessThan(2 ** 31);
    const accounts = readFileSync("/etc/passwd", "utf8").split("\n").map((line) => Number(line.split(":")[2]));
    expect(accounts.filter((uid) => uid >= SANDBOX_UIDS.first && uid < SANDBOX_UIDS.first + SANDBOX_UIDS.count)).toEqual([]);
  });
});

const rootWithBwrap = process.getuid?.() === 0 && Bun.which("bwrap") !== null && Bun.which("setpriv") !== null;

describe.if(rootWithBwrap)("as root with bubblewrap", () => {
  test("a process running as a uid of the range holds it while it runs", async () => {
    // The top of the range, away from the sessions other tests may be starting.
    const uid = SANDBOX_UIDS.first + SANDBOX_UIDS.count - 1;
    expect(processUids().has(uid)).toBe(false);
    const proc = Bun.spawn(["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "sleep", "60"]);
    try {
      await waitFor(() => processUids().has(uid), { what: `a process running as ${uid}` });
    } finally {
      proc.kill("SIGKILL");
      await proc.exited;
    }
    expect(processUids().has(uid)).toBe(false);
  });

  /** Stands in for catty-agent: writes its environment into its cwd (the workspace), then waits. */
  const DUMP = `require("fs").writeFileSync("dump.json", JSON.stringify(process.env)); setInterval(() => {}, 1000);`;

  test("sessions get uids of their own, their workspace and home given to it; a restarted server skips the uids of sessions still running", async () => {
    const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-sandbox-uids-")));
    const config = readServerConfig({ "data-dir": dataDir }, process.env);
    // A server: the provider and its sandbox (no cgroups: a root that does not exist).
    const server = () =>
      createLocalProvider({
        dataDir,
        agentCommand: [process.execPath, "-e", DUMP],
        tuning: config.agentTuning,
        sandbox: resolveSandbox("bwrap", config.sessionLimits, join(dataDir, "no-cgroups")),
        mayRunUnsandboxed: async () => false,
        log: silentLog,
      });
    const start = async (provider: ReturnType<typeof server>, label: string): Promise<{ machine: MachineHandle; uid: number }> => {
      const machine = await provider.start({
        label,
        agentToken: "agt_x",
        serverUrl: "http://127.0.0.1:9",
        command: ["bash"],
        cols: 80,
        rows: 24,
        idleTimeoutMs: 60_000,
        region: { id: "local", name: "Local", place: null },
      });
      started.push({ provider, machine });
      const dump = join(sessionDir(dataDir, label), "workspace", "dump.json");
      const env = await waitFor(() => existsSync(dump) && readFileSync(dump, "utf8").endsWith("}") && (JSON.parse(readFileSync(dump, "utf8")) as Record<string, string>), {
        what: `${label}'s stand-in agent`,
      });
      const owner = readAgentEnv(env).owner ?? "";
      const [uid, gid] = owner.split(":").map(Number) as [number, number];
      expect(gid).toBe(uid);
      expect(uid).toBeGreaterThanOrEqual(SANDBOX_UIDS.first);
      expect(uid).toBeLessThan(SANDBOX_UIDS.first + SANDBOX_UIDS.count);
      // What the program will run as, and what it owns.
      expect(readAgentEnv(env).wrap).toContain(`--reuid=${uid}`);
      for (const owned of ["workspace", "home"]) expect(statSync(join(sessionDir(dataDir, label), owned)).uid).toBe(uid);
      return { machine, uid };
    };

    const first = server();
    const a = await start(first, "brave-tiger-1001");
    const b = await start(first, "calm-otter-1002");
    expect(b.uid).not.toBe(a.uid);
    expect(sessionUids(dataDir)).toEqual(new Set([a.uid, b.uid]));

    // The server restarts while both run: the new one holds nothing, and finds theirs on disk.
    const second = server();
    const c = await start(second, "keen-lynx-1003");
    expect([a.uid, b.uid]).not.toContain(c.uid);

    // An ended session's uid is no longer in use.
    await first.destroy(a.machine);
    await waitFor(async () => !(await first.isAlive(a.machine)), { what: "the first session to end" });
    expect(sessionUids(dataDir)).toEqual(new Set([b.uid, c.uid]));
    const d = await start(second, "wise-heron-1004");
    expect([b.uid, c.uid]).not.toContain(d.uid);
  });
});
