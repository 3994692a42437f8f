/**
 * Local provider: each session's agent is a detached process on the server's host, so it outlives
 * a server restart. Its workspace is `<data-dir>/sessions/<label>/workspace`, its log `agent.log`
 * beside it.
 */
import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import type { Log } from "../../src/lib/log.ts";
import { encodeAgentEnv, type AgentTuning } from "../../src/protocol/agent-env.ts";
import type { LocalMachine, MachineHandle } from "../../src/protocol/index.ts";
import type { SessionDisks } from "./disk.ts";
import type { SessionNetworks } from "./network.ts";
import type { Sandbox } from "./sandbox.ts";
import { singleRegion, type Region } from "../regions.ts";
import type { MachineSpec, Provider } from "./types.ts";

export interface LocalProviderOptions {
  dataDir: string;
  /** Command line of `catty-agent`. */
  agentCommand: string[];
  /** Agent settings from the server's configuration, the same for every session. */
  tuning: AgentTuning;
  /** How each session's program is isolated (`resolveSandbox`). */
  sandbox: Sandbox;
  /** A network of its own for each sandboxed session (null: the host's). */
  network?: SessionNetworks | null;
  /** A disk of its own for each session (null: the data dir's, not limited). */
  disks?: SessionDisks | null;
  /**
   * Whether this server may run a session without a sandbox: only one user, on a loopback
   * address (checked at each start, since users can be added while it runs).
   */
  mayRunUnsandboxed(): Promise<boolean>;
  /** The regions sessions may name, all on this host (default: one, `local`). */
  regions?: readonly Region[];
  log: Log;
}

export function sessionDir(dataDir: string, label: string): string {
  return join(dataDir, "sessions", label);
}

/**
 * The uids the sessions under `dataDir` whose agents still run were given: their workspaces'
 * owners (the sandbox gives each workspace and home to its session's user), read again at each
 * start, so a server restarted while sessions run never hands one of theirs to a new session.
 */
export function sessionUids(dataDir: string): Set<number> {
  const out = new Set<number>();
  const sessions = join(dataDir, "sessions");
  let labels: string[] = [];
  try {
    labels = readdirSync(sessions);
  } catch {
    return out;
  }
  for (const label of labels) {
    const dir = join(sessions, label);
    let pid: number;
    try {
      pid = Number(readFileSync(join(dir, "agent.pid"), "utf8").trim());
    } catch {
      continue; // never started, or starting now (this server holds its uid)
    }
    if (!Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) continue;
    for (const owned of ["workspace", "home"]) {
      const st = statSync(join(dir, owned), { throwIfNoEntry: false });
      if (st && st.uid !== 0) out.add(st.uid);
    }
  }
  return out;
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
 * The host environment a session starts with: the basics of the host user, never the server's
 * own settings or storage credentials (a session runs code an AI wrote).
 */
const HOST_ENV = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];
function hostEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of HOST_ENV) if (env[key]) out[key] = env[key] as string;
  return out;
}

const local = (machine: MachineHandle): LocalMachine | null => (machine.provider === "local" ? machine : null);

export function createLocalProvider(opts: LocalProviderOptions): Provider {
  return {
    name: "local",
    regions: opts.regions ?? singleRegion("local"),
    isolated: opts.sandbox.kind !== "none",
    async start(spec: MachineSpec) {
      if (opts.sandbox.kind === "none" && !(await opts.mayRunUnsandboxed())) {
        throw new Error(
          "local sessions on this server would not be isolated (bubblewrap is not installed), and it has more than one user " +
            "or listens beyond loopback. Install bubblewrap (apt-get install bubblewrap) and restart catty-server",
        );
      }
      const dir = sessionDir(opts.dataDir, spec.label);
      // Before anything is made in the session's directory: it is the disk's mount point.
      opts.disks?.create(spec.label, dir);
      const workspace = join(dir, "workspace");
      mkdirSync(workspace, { recursive: true, mode: 0o700 });
      let sandbox: ReturnType<Sandbox["prepare"]>;
      let network: Awaited<ReturnType<SessionNetworks["create"]>> | null = null;
      try {
        network = opts.network ? await opts.network.create(spec.label, dir) : null;
        sandbox = opts.sandbox.prepare({ label: spec.label, workspace, home: join(dir, "home"), inUse: () => sessionUids(opts.dataDir), network });
      } catch (err) {
        opts.network?.remove(spec.label);
        opts.disks?.remove(spec.label, dir);
        throw err;
      }
      const logFd = openSync(join(dir, "agent.log"), "a", 0o600);
      const [bin, ...binArgs] = opts.agentCommand;
      if (!bin) throw new Error("no agent command configured");
      // The server runs with umask 077 (its files are private); the program gets the usual 022,
      // so the files it writes have the modes they would have anywhere else.
      const serverUmask = process.umask(0o022);
      try {
        const child = spawn(bin, binArgs, {
          detached: true,
          stdio: ["ignore", logFd, logFd],
          cwd: workspace,
          env: {
            ...hostEnv(process.env),
            ...encodeAgentEnv({
              ...opts.tuning,
              serverUrl: spec.serverUrl,
              token: spec.agentToken,
              workspace,
              stateDir: join(dir, "agent-state"),
              command: spec.command,
              cols: spec.cols,
              rows: spec.rows,
              idleTimeoutMs: spec.idleTimeoutMs,
              wrap: sandbox.wrap,
              owner: sandbox.owner ?? undefined,
              netns: network?.netns,
              // Its network is set up outside, by the server (server/providers/network.ts).
              egress: undefined,
            }),
          },
        });
        child.unref();
        const pid = child.pid;
        if (pid === undefined) throw new Error(`could not start ${bin}`);
        writeFileSync(join(dir, "agent.pid"), `${pid}\n`, { mode: 0o600 });
        opts.log.info("agent started", { label: spec.label, pid });
        return { provider: "local", pid, dir } satisfies LocalMachine;
      } finally {
        process.umask(serverUmask);
        closeSync(logFd);
      }
    },
    async isAlive(machine) {
      const m = local(machine);
      return m !== null && pidAlive(m.pid);
    },
    async destroy(machine) {
      const m = local(machine);
      if (!m) return;
      if (pidAlive(m.pid)) {
        try {
          process.kill(m.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      opts.sandbox.release(basename(m.dir));
      opts.network?.remove(basename(m.dir));
      opts.disks?.remove(basename(m.dir), m.dir);
    },
    async release(machine) {
      const m = local(machine);
      if (!m) return;
      opts.sandbox.release(basename(m.dir));
      opts.network?.remove(basename(m.dir));
      opts.disks?.remove(basename(m.dir), m.dir);
    },
  };
}
