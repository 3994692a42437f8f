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
  /** `CATTY_MAX_UPLOAD_BYTES`: cap on a compressed `catty new` upload (default 100 MB). */
  maxUploadBytes: number;
  /** `CATTY_MAX_SAVE_BYTES`: cap on one compressed workspace save (default 4 GiB). */
  maxSaveBytes: number;
  /** `CATTY_KEEP_SAVES`: saves kept per session (default 5). */
  keepSaves: number;
  /** `CATTY_IDLE_TIMEOUT_MS`, `CATTY_MIN_DURATION_MS`, `CATTY_MAX_DURATION_MS`, `CATTY_LIFECYCLE_TICK_MS`: see SessionTimeouts. */
  timeouts: { idleTimeoutMs: number; minDurationMs: number; maxDurationMs: number; tickMs: number };
  /** `--s3-bucket` / `CATTY_S3_BUCKET` and friends: store saves in S3 instead of the data dir. */
  s3Flags: { "s3-bucket"?: string; "s3-endpoint"?: string };
}

export interface ServerFlags {
  port?: string;
  host?: string;
  "data-dir"?: string;
  "s3-bucket"?: string;
  "s3-endpoint"?: string;
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
    maxUploadBytes: int(env.CATTY_MAX_UPLOAD_BYTES, "CATTY_MAX_UPLOAD_BYTES") ?? 100_000_000,
    maxSaveBytes: int(env.CATTY_MAX_SAVE_BYTES, "CATTY_MAX_SAVE_BYTES") ?? 4 * 1024 ** 3,
    keepSaves: Math.max(1, int(env.CATTY_KEEP_SAVES, "CATTY_KEEP_SAVES") ?? 5),
    s3Flags: { "s3-bucket": flags["s3-bucket"], "s3-endpoint": flags["s3-endpoint"] },
    timeouts: {
      idleTimeoutMs: int(env.CATTY_IDLE_TIMEOUT_MS, "CATTY_IDLE_TIMEOUT_MS") ?? 2 * 3_600_000,
      minDurationMs: int(env.CATTY_MIN_DURATION_MS, "CATTY_MIN_DURATION_MS") ?? 3_600_000,
      maxDurationMs: int(env.CATTY_MAX_DURATION_MS, "CATTY_MAX_DURATION_MS") ?? 8 * 3_600_000,
      tickMs: Math.max(100, int(env.CATTY_LIFECYCLE_TICK_MS, "CATTY_LIFECYCLE_TICK_MS") ?? 5_000),
    },
  });
}
