/**
 * Docker provider: one container per session, from the session image (`image/`), created,
 * inspected and removed through the Docker Engine API (docker-api.ts). The agent is the
 * container's entrypoint (under `tini`) and runs as the container's root with a handful of
 * capabilities; it starts the program as the image's unprivileged `catty` user, with a host uid
 * of the session's own, through `setpriv` (no new privileges, no capabilities), so the program
 * cannot read the agent's environment or memory, signal it, or change what the agent owns.
 * Limits: memory and CPUs are the container's cgroup limits; processes are the program's own
 * RLIMIT_NPROC (its uid is the session's alone), with the container's pids limit a little above
 * it, so a fork bomb never leaves the agent unable to start a thread. Containers carry labels naming the session and the server, so a
 * restarted server finds its own (`reconcile`).
 *
 * Containers keep running when the server goes away (`kill -9` included); their agents re-dial
 * the server when it is back.
 */
import { createHash } from "node:crypto";
import type { Log } from "../../src/lib/log.ts";
import { encodeAgentEnv, type AgentEgress, type AgentTuning } from "../../src/protocol/agent-env.ts";
import type { DockerMachine, MachineHandle } from "../../src/protocol/index.ts";
import type { DockerClient } from "./docker-api.ts";
import type { SessionLimits } from "./sandbox.ts";
import type { Region } from "../regions.ts";
import type { MachineSpec, Provider } from "./types.ts";

/**
 * The session image's contract (see image/): the workspace is `/workspace`; its entrypoint gives
 * the `catty` user the uid in `CATTY_PROGRAM_UID`, then runs the agent.
 */
export const IMAGE_WORKSPACE = "/workspace";
/** Where the agent keeps its state in the image. */
export const AGENT_STATE = "/var/lib/catty-agent";

/**
 * Each session's program gets a host uid of its own from this range, so that per-user limits
 * (RLIMIT_NPROC) count one session's processes only, and no two sessions share a user.
 */
const PROGRAM_UIDS = { first: 200_000, count: 800_000 } as const;
/** Processes and threads the container may have beyond the program's limit: the agent's. */
const AGENT_PIDS = 64;

/**
 * The environment of the session image's entrypoint (a container, a Fly Machine, a Pod): the
 * agent's settings and, when the agent runs as root (`ownUser`, with the program's process
 * limit), `CATTY_PROGRAM_UID`, a uid of the session's own that the program is started as; without,
 * the program runs as the agent's own (unprivileged) user.
 */
export function imageAgentEnv(spec: MachineSpec, tuning: AgentTuning, ownUser: { pids: number } | null, egress?: AgentEgress): Record<string, string> {
  const uid = ownUser ? PROGRAM_UIDS.first + Math.floor(Math.random() * PROGRAM_UIDS.count) : null;
  const env = encodeAgentEnv({
    ...tuning,
    serverUrl: spec.serverUrl,
    token: spec.agentToken,
    workspace: IMAGE_WORKSPACE,
    stateDir: AGENT_STATE,
    command: spec.command,
    cols: spec.cols,
    rows: spec.rows,
    idleTimeoutMs: spec.idleTimeoutMs,
    wrap: ownUser && uid !== null ? programWrap(uid, ownUser.pids) : [],
    owner: uid !== null ? `${uid}:${uid}` : undefined,
    netns: undefined,
    egress,
  });
  if (uid !== null) env.CATTY_PROGRAM_UID = String(uid);
  return env;
}

/**
 * How the agent (root in the container or Machine) starts the program: its own process limit (its
 * uid is its own), the kernel's first pick when memory runs out, then the unprivileged user with
 * no capabilities.
 */
function programWrap(uid: number, pids: number): string[] {
  return [
    "prlimit", `--nproc=${pids}`, "--",
    "choom", "-n", "500", "--",
    "setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups",
    "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
  ];
}

/** Labels on every session container. */
export const LABELS = { session: "dev.catty.session", server: "dev.catty.server" } as const;

/**
 * What the agent (container root) keeps; everything else a container's root gets is dropped.
 * NET_ADMIN sets the egress rules in the container's own network namespace (agent/egress.ts).
 */
const AGENT_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETUID", "SETGID", "SETPCAP", "NET_ADMIN"];

export interface DockerProviderOptions {
  docker: DockerClient;
  image: string;
  network: string;
  /** The regions sessions may name, all on this engine. */
  regions: readonly Region[];
  limits: SessionLimits;
  /** The size of each container's writable layer, when the engine's storage can limit it. */
  diskBytes?: number;
  tuning: AgentTuning;
  /** Names this server on its containers' labels (a stable id from its data dir). */
  serverId: string;
  /** What sessions reach on the network (the agent sets it up in the container). */
  egress: AgentEgress;
  log: Log;
}

/** A stable id for a server, from a secret of its data dir (not the secret itself). */
export function serverIdFrom(key: string): string {
  return createHash("sha256").update(`catty-server-id:${key}`).digest("hex").slice(0, 16);
}

const docker = (machine: MachineHandle): DockerMachine | null => (machine.provider === "docker" ? machine : null);

export function createDockerProvider(opts: DockerProviderOptions): Provider {
  const { docker: engine, log } = opts;
  return {
    name: "docker",
    regions: opts.regions,
    isolated: true,
    async start(spec: MachineSpec) {
      // On the host's network the rules would be the host's: only "all" holds there.
      const shared = opts.network === "host";
      if (shared && (opts.egress.policy !== "all" || opts.egress.allow.length > 0)) {
        throw new Error(
          `--docker-network host shares the host's network with sessions, where the egress policy (${opts.egress.policy}) cannot hold: ` +
            "use a bridge network (the default, `bridge`, or one of yours) or set CATTY_SESSION_EGRESS=all",
        );
      }
      const env = imageAgentEnv(spec, opts.tuning, { pids: opts.limits.pids }, shared ? undefined : opts.egress);
      const name = `catty-${spec.label}-${crypto.randomUUID().slice(0, 8)}`;
      const memory = opts.limits.memoryBytes;
      const id = await engine.run(name, {
        Image: opts.image,
        Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        Labels: { [LABELS.session]: spec.label, [LABELS.server]: opts.serverId },
        Hostname: "catty",
        HostConfig: {
          NetworkMode: opts.network,
          Memory: memory,
          MemorySwap: memory,
          NanoCpus: Math.round(opts.limits.cpus * 1e9),
          PidsLimit: opts.limits.pids + AGENT_PIDS,
          CapDrop: ["ALL"],
          CapAdd: AGENT_CAPABILITIES,
          SecurityOpt: ["no-new-privileges"],
          LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "2" } },
          RestartPolicy: { Name: "no" },
          ...(opts.diskBytes ? { StorageOpt: { size: String(opts.diskBytes) } } : {}),
        },
      });
      log.info("container started", { label: spec.label, container: name, id: id.slice(0, 12) });
      return { provider: "docker", id, name } satisfies DockerMachine;
    },
    async isAlive(machine) {
      const m = docker(machine);
      if (!m) return false;
      try {
        const info = await engine.inspect(m.id);
        return info !== null && (info.State.Running || info.State.Status === "created" || info.State.Status === "restarting");
      } catch (err) {
        // The engine cannot say: the container may well be running; ask again later.
        log.warn("could not inspect a session container", { container: m.name, err });
        return true;
      }
    },
    async whyGone(machine) {
      const m = docker(machine);
      if (!m) return null;
      const info = await engine.inspect(m.id).catch(() => undefined);
      if (info === undefined) return null;
      if (info === null) return `its container ${m.name} no longer exists`;
      const { State: s } = info;
      if (s.OOMKilled) return `its container ${m.name} ran out of memory`;
      return `its container ${m.name} ${s.Status} (exit code ${s.ExitCode}${s.Error ? `: ${s.Error}` : ""})`;
    },
    async destroy(machine) {
      const m = docker(machine);
      if (m) await engine.remove(m.id);
    },
    async release(machine) {
      const m = docker(machine);
      if (m) await engine.remove(m.id);
    },
    async reconcile(live, liveLabels) {
      const keep = new Set(live.flatMap((m) => (m.provider === "docker" ? [m.id] : [])));
      for (const c of await engine.list([`${LABELS.server}=${opts.serverId}`])) {
        if (keep.has(c.Id) || liveLabels.has(c.Labels?.[LABELS.session] ?? "")) continue;
        log.warn("removing a session container with no live session", { container: c.Names?.[0] ?? c.Id.slice(0, 12) });
        await engine.remove(c.Id).catch((err: unknown) => log.warn("could not remove a container", { id: c.Id.slice(0, 12), err }));
      }
    },
  };
}
