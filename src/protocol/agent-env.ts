/**
 * The agent's environment contract: what a provider (local, Docker, Kubernetes, Fly) writes into
 * the environment of the `catty-agent` it starts, and what the agent reads. One declaration for
 * both sides, so every provider writes exactly what the agent reads.
 *
 * `encodeAgentEnv` (server side) turns typed values into variables; `readAgentEnv` (agent side)
 * parses them once. The tuning settings an operator may set for every session are read from the
 * server's own environment with the same schemas (`AGENT_TUNING`).
 */
import { z } from "zod";
import { enumSetting, intSetting, LOG_LEVELS, optionalString, readSettings, setting, type SettingsOf } from "./settings.ts";

const required = (what: string): z.ZodType<string, string | undefined> =>
  z
    .string({ error: `is not set: catty-agent is started by catty-server, not by hand (${what})` })
    .min(1);

const commandSetting: z.ZodType<string[], string | undefined> = z
  .string()
  .optional()
  .transform((v, ctx) => {
    if (v === undefined || v === "") return [];
    try {
      const parsed = z.array(z.string().max(4096)).max(256).safeParse(JSON.parse(v));
      if (parsed.success) return parsed.data;
    } catch {
      // reported below
    }
    ctx.addIssue({ code: "custom", message: "is not a JSON array of strings" });
    return z.NEVER;
  });

/** The egress policy an agent sets up for the program it shares a network with (a container). */
export const AgentEgress = z.object({
  policy: z.enum(["public", "all", "none"]),
  allow: z.array(z.object({ host: z.string().min(1).max(255), port: z.number().int().min(1).max(65535).nullable() })).max(256),
});
export type AgentEgress = z.infer<typeof AgentEgress>;

const egressSetting: z.ZodType<AgentEgress | undefined, string | undefined> = z
  .string()
  .optional()
  .transform((v, ctx) => {
    if (v === undefined || v === "") return undefined;
    try {
      const parsed = AgentEgress.safeParse(JSON.parse(v));
      if (parsed.success) return parsed.data;
    } catch {
      // reported below
    }
    ctx.addIssue({ code: "custom", message: "is not an egress policy ({policy, allow})" });
    return z.NEVER;
  });

/** The largest file sync-back carries, on the agent's side and (by default) on the CLI's. */
export const DEFAULT_SYNC_MAX_BYTES = 50 * 1024 * 1024;

/** Settings an operator may set in the server's environment for every session's agent. */
export const AGENT_TUNING = {
  ringBytes: setting(intSetting(8 * 1024 * 1024, 1024), { env: ["CATTY_RING_BYTES"], unit: "bytes", doc: "output kept per session for exact replay on reconnect" }),
  saveFirstMs: setting(intSetting(10_000, 1), { env: ["CATTY_SAVE_FIRST_MS"], doc: "first save after the program starts", shown: "10 s" }),
  saveIntervalMs: setting(intSetting(30_000, 1), { env: ["CATTY_SAVE_INTERVAL_MS"], unit: "ms", doc: "later saves, when something changed" }),
  syncMaxBytes: setting(intSetting(DEFAULT_SYNC_MAX_BYTES, 1), { env: ["CATTY_SYNC_MAX_BYTES"], unit: "bytes", doc: "largest file synced back to the client" }),
  syncScanMs: setting(intSetting(5_000, 1), { env: ["CATTY_SYNC_SCAN_MS"], unit: "ms", doc: "how often a scan catches workspace changes the file watcher missed" }),
  logLevel: setting(enumSetting(LOG_LEVELS, "info"), { env: ["CATTY_LOG_LEVEL"], doc: "agent log level (debug, info, warn, error)" }),
} as const;

/** Everything a provider writes for one session's agent. */
export const AGENT_ENV = {
  serverUrl: setting(required("the server URL"), { env: ["CATTY_SERVER_URL"], doc: "the server the agent dials" }),
  token: setting(required("the session's agent token"), { env: ["CATTY_AGENT_TOKEN"], doc: "the session's agent token" }),
  workspace: setting(required("the workspace directory"), { env: ["CATTY_WORKSPACE"], doc: "the program's working directory" }),
  stateDir: setting(optionalString(), {
    env: ["CATTY_AGENT_STATE"],
    doc: "a private directory for the agent's temp files (default: beside the workspace)",
  }),
  command: setting(commandSetting, { env: ["CATTY_COMMAND"], doc: "the program, a JSON array (empty: the default)" }),
  wrap: setting(commandSetting, {
    env: ["CATTY_AGENT_WRAP"],
    doc: "the sandbox: a command line (JSON array) the program's is appended to (empty: none)",
  }),
  owner: setting(optionalString(), {
    env: ["CATTY_AGENT_OWNER"],
    doc: "uid:gid the workspace is handed to before the program starts (the sandbox's user)",
  }),
  netns: setting(optionalString(), {
    env: ["CATTY_AGENT_NETNS"],
    doc: "the session's network namespace (a path nsenter takes), when it has one of its own: the agent bridges Catty's API and the session's ports through it",
  }),
  egress: setting(egressSetting, {
    env: ["CATTY_AGENT_EGRESS"],
    doc: "the egress policy the agent sets up (nftables, its own uid exempt) before the program starts, when they share a network (a container); JSON",
  }),
  cols: setting(intSetting(80, 1), { env: ["CATTY_COLS"], doc: "initial terminal width" }),
  rows: setting(intSetting(24, 1), { env: ["CATTY_ROWS"], doc: "initial terminal height" }),
  idleTimeoutMs: setting(intSetting(2 * 3_600_000, 1), {
    env: ["CATTY_SESSION_IDLE_MS"],
    doc: "the session's idle timeout: an agent that cannot reach its server for longer gives up",
  }),
  ...AGENT_TUNING,
} as const;

export type AgentEnv = SettingsOf<typeof AGENT_ENV>;
export type AgentTuning = SettingsOf<typeof AGENT_TUNING>;

/** Agent side: parses the environment it was started with. */
export function readAgentEnv(env: NodeJS.ProcessEnv): AgentEnv {
  return readSettings(AGENT_ENV, { env });
}

/** Server side: the tuning settings from the server's own environment. */
export function readAgentTuning(env: NodeJS.ProcessEnv): AgentTuning {
  return readSettings(AGENT_TUNING, { env });
}

/** Server side: the variables a provider sets for an agent. */
export function encodeAgentEnv(values: AgentEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, { info }] of Object.entries(AGENT_ENV)) {
    const value = values[key as keyof AgentEnv];
    const name = info.env?.[0];
    if (value === undefined || !name) continue;
    out[name] = Array.isArray(value) || typeof value === "object" ? JSON.stringify(value) : String(value);
  }
  return out;
}
