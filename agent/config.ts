/**
 * `catty-agent` configuration, read once from the environment the provider starts it with.
 */
import { dirname, join } from "node:path";

export interface AgentConfig {
  /** `CATTY_SERVER_URL`: the server to dial. */
  serverUrl: string;
  /** `CATTY_AGENT_TOKEN`: this session's agent token. */
  token: string;
  /** `CATTY_WORKSPACE`: the program's working directory. */
  workspace: string;
  /** `CATTY_COMMAND`: JSON array; empty for the default program. */
  command: string[];
  /** `CATTY_COLS` / `CATTY_ROWS`: the initial terminal size. */
  cols: number;
  rows: number;
  /** `CATTY_RING_BYTES`: output kept for exact replay (default 8 MiB). */
  ringBytes: number;
  /** `CATTY_AGENT_STATE`: a private directory for temp archives (default: beside the workspace). */
  stateDir: string;
  /** `CATTY_SAVE_FIRST_MS`: first save after the program starts (default 10 s). */
  saveFirstMs: number;
  /** `CATTY_SAVE_INTERVAL_MS`: later saves, when something changed (default 30 s). */
  saveIntervalMs: number;
  /** `CATTY_SYNC_MAX_BYTES`: files larger than this are not synced back (default 50 MB). */
  syncMaxBytes: number;
  /** `CATTY_SYNC_SCAN_MS`: how often the safety-net scan looks for changes the watcher missed (default 5 s). */
  syncScanMs: number;
}

function positive(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

export function readAgentConfig(env: NodeJS.ProcessEnv = process.env): Readonly<AgentConfig> {
  const need = (name: string): string => {
    const v = env[name];
    if (!v) throw new Error(`${name} is not set: catty-agent is started by catty-server, not by hand`);
    return v;
  };
  let command: unknown = [];
  try {
    command = JSON.parse(env.CATTY_COMMAND || "[]");
  } catch {
    throw new Error("CATTY_COMMAND is not a JSON array");
  }
  if (!Array.isArray(command) || !command.every((c) => typeof c === "string")) {
    throw new Error("CATTY_COMMAND is not a JSON array of strings");
  }
  return Object.freeze({
    serverUrl: need("CATTY_SERVER_URL"),
    token: need("CATTY_AGENT_TOKEN"),
    workspace: need("CATTY_WORKSPACE"),
    command,
    cols: positive(env.CATTY_COLS, 80),
    rows: positive(env.CATTY_ROWS, 24),
    ringBytes: positive(env.CATTY_RING_BYTES, 8 * 1024 * 1024),
    stateDir: env.CATTY_AGENT_STATE || join(dirname(need("CATTY_WORKSPACE")), "agent-state"),
    saveFirstMs: positive(env.CATTY_SAVE_FIRST_MS, 10_000),
    saveIntervalMs: positive(env.CATTY_SAVE_INTERVAL_MS, 30_000),
    syncMaxBytes: positive(env.CATTY_SYNC_MAX_BYTES, 50 * 1024 * 1024),
    syncScanMs: positive(env.CATTY_SYNC_SCAN_MS, 5_000),
  });
}
