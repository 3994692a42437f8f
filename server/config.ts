/**
 * `catty-server` configuration, read once into a frozen object.
 * Precedence: flags > environment > defaults.
 */
import { homedir } from "node:os";
import { join } from "node:path";

export interface ServerConfig {
  /** `--port` / `CATTY_PORT`; 0 picks a free port. */
  port: number;
  /** `--host` / `CATTY_HOST`. */
  host: string;
  /** `--data-dir` / `CATTY_DATA_DIR`: database, session workspaces, saves. */
  dataDir: string;
  /** `CATTY_AGENT_BIN`: the `catty-agent` executable the local provider starts (default: beside this binary). */
  agentBin: string | undefined;
  /** `CATTY_PUBLIC_URL`: the URL agents dial (default: http://127.0.0.1:<port>). */
  publicUrl: string | undefined;
  /** `CATTY_AGENT_LOST_MS`: how long a running session may be without its agent before it is marked failed. */
  agentLostMs: number;
}

export interface ServerFlags {
  port?: string;
  host?: string;
  "data-dir"?: string;
}

function int(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a whole number, got "${value}"`);
  return n;
}

export function readServerConfig(flags: ServerFlags, env: NodeJS.ProcessEnv = process.env): Readonly<ServerConfig> {
  const home = env.HOME || homedir();
  return Object.freeze({
    port: int(flags.port, "--port") ?? int(env.CATTY_PORT, "CATTY_PORT") ?? 4815,
    host: flags.host || env.CATTY_HOST || "127.0.0.1",
    dataDir: flags["data-dir"] || env.CATTY_DATA_DIR || join(env.CATTY_HOME || join(home, ".catty"), "server"),
    agentBin: env.CATTY_AGENT_BIN || undefined,
    publicUrl: env.CATTY_PUBLIC_URL || undefined,
    agentLostMs: int(env.CATTY_AGENT_LOST_MS, "CATTY_AGENT_LOST_MS") ?? 120_000,
  });
}
