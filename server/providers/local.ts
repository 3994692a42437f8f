/**
 * Local provider: each session's agent is a detached process on the server's host, so it outlives
 * a server restart. Its workspace is `<data-dir>/sessions/<label>/workspace`, its log `agent.log`
 * beside it.
 */
import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Log } from "../../src/lib/log.ts";
import type { MachineSpec, Provider } from "./types.ts";

export interface LocalProviderOptions {
  dataDir: string;
  /** Command line of `catty-agent`. */
  agentCommand: string[];
  log: Log;
}

export function sessionDir(dataDir: string, label: string): string {
  return join(dataDir, "sessions", label);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * The environment a session starts with: the basics of the host user, never the server's own
 * settings or storage credentials (a session runs code an AI wrote).
 */
const PASSED_ENV = [
  "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
  // Agent tuning a server operator (or a test) may set for every session.
  "CATTY_LOG_LEVEL", "CATTY_RING_BYTES", "CATTY_SAVE_FIRST_MS", "CATTY_SAVE_INTERVAL_MS",
  "CATTY_SYNC_MAX_BYTES", "CATTY_SYNC_SCAN_MS",
];
function agentEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of PASSED_ENV) if (env[key]) out[key] = env[key] as string;
  return out;
}

export function createLocalProvider(opts: LocalProviderOptions): Provider {
  return {
    name: "local",
    region: "local",
    async start(spec: MachineSpec) {
      const dir = sessionDir(opts.dataDir, spec.label);
      const workspace = join(dir, "workspace");
      mkdirSync(workspace, { recursive: true, mode: 0o700 });
      const logFd = openSync(join(dir, "agent.log"), "a", 0o600);
      const [bin, ...binArgs] = opts.agentCommand;
      if (!bin) throw new Error("no agent command configured");
      try {
        const child = spawn(bin, binArgs, {
          detached: true,
          stdio: ["ignore", logFd, logFd],
          cwd: workspace,
          env: {
            ...agentEnv(process.env),
            CATTY_SERVER_URL: spec.serverUrl,
            CATTY_AGENT_TOKEN: spec.agentToken,
            CATTY_WORKSPACE: workspace,
            CATTY_AGENT_STATE: join(dir, "agent-state"),
            CATTY_COMMAND: JSON.stringify(spec.command),
            CATTY_COLS: String(spec.cols),
            CATTY_ROWS: String(spec.rows),
          },
        });
        child.unref();
        const pid = child.pid;
        if (pid === undefined) throw new Error(`could not start ${bin}`);
        writeFileSync(join(dir, "agent.pid"), `${pid}\n`, { mode: 0o600 });
        opts.log.info("agent started", { label: spec.label, pid });
        return { pid, dir };
      } finally {
        closeSync(logFd);
      }
    },
    async isAlive(machine) {
      return typeof machine.pid === "number" && pidAlive(machine.pid);
    },
    async destroy(machine) {
      if (typeof machine.pid !== "number" || !pidAlive(machine.pid)) return;
      try {
        process.kill(machine.pid, "SIGKILL");
      } catch {
        // already gone
      }
    },
  };
}
