/**
 * CLI configuration, read once per command: where Catty keeps its files, which server to talk to
 * and with which token.
 * Precedence: `--api` flag > `CATTY_API_ADDR` > `$CATTY_HOME/credentials.json` > a local server
 * started on demand (zero setup).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { DEFAULT_SYNC_MAX_BYTES } from "../protocol/agent-env.ts";
import { CattyError } from "../protocol/errors.ts";
import { parseDetachKeys } from "./escape-keys.ts";
import type { Level } from "../lib/log.ts";
import { cattyHome } from "../lib/paths.ts";
import { boolSetting, enumSetting, intSetting, LOG_LEVELS, optionalString, readSettings, setting, stringSetting } from "../protocol/settings.ts";

export const Credentials = z.object({
  api: z.string().url(),
  token: z.string().min(1),
  /** True when this is the zero-setup server on this machine (restarted on demand). */
  local: z.boolean().optional(),
  /** `catty login --insecure`: the user allowed this http:// server off this machine (warned each time). */
  insecure: z.boolean().optional(),
});
export type Credentials = z.infer<typeof Credentials>;

/** Every CLI setting: flags > environment > defaults. The README's CLI table is generated from this. */
export const CLI_SETTINGS = {
  api: setting(optionalString(), { flag: "api", env: ["CATTY_API_ADDR"], doc: "server", shown: "stored login, else a local server" }),
  token: setting(optionalString(), { env: ["CATTY_TOKEN"], doc: "token", shown: "stored login" }),
  home: setting(optionalString(), { env: ["CATTY_HOME"], doc: "home (credentials, logs, the local server's data)", shown: "`~/.catty`" }),
  port: setting(intSetting(4815, 1), { env: ["CATTY_PORT"], doc: "local server port" }),
  serverBin: setting(optionalString(), {
    env: ["CATTY_SERVER_BIN"],
    doc: "the `catty-server` executable for the local server",
    shown: "beside `catty`",
  }),
  syncMaxBytes: setting(intSetting(DEFAULT_SYNC_MAX_BYTES, 1), { env: ["CATTY_SYNC_MAX_BYTES"], unit: "bytes", doc: "largest file sync-back writes here (larger ones are listed; get them with `catty download`)" }),
  githubApi: setting(stringSetting("https://api.github.com"), { env: ["CATTY_GITHUB_API"], doc: "the GitHub API `catty secrets` checks tokens with" }),
  quiet: setting(boolSetting(false), { env: ["CATTY_QUIET"], doc: "print only errors" }),
  noUpdateCheck: setting(boolSetting(false), { env: ["CATTY_NO_UPDATE_CHECK"], doc: "never look for a newer release after a command (`catty update` still does)" }),
  detachKeys: setting(optionalString(), {
    flag: "detach-keys",
    env: ["CATTY_DETACH_KEYS"],
    doc: "keys that detach without reaching the program, docker-style (e.g. `ctrl-p,ctrl-q`)",
    shown: "none (Enter ~ . and Ctrl+C twice always work)",
  }),
  predict: setting(enumSetting(["auto", "always", "never"] as const, "auto"), {
    flag: "predict",
    env: ["CATTY_PREDICT"],
    doc: "predictive local echo: keys drawn at once, underlined until the program echoes them; `auto` when the round trip exceeds 30 ms and the prompt's echo was confirmed",
  }),
  logLevel: setting(enumSetting(LOG_LEVELS, "info"), {
    env: ["CATTY_LOG_LEVEL"],
    doc: "log level of `$CATTY_HOME/logs/catty.log`",
  }),
} as const;

/** The flags that are settings too. */
export interface CliFlags {
  api?: string;
  "detach-keys"?: string;
  predict?: string;
}

export interface CliConfig {
  /** `$CATTY_HOME`, default `~/.catty`. */
  home: string;
  credentialsFile: string;
  logFile: string;
  /** Server URL from `--api` or `CATTY_API_ADDR`, if given. */
  apiOverride: string | undefined;
  /** `CATTY_TOKEN`: a token to use instead of the stored one. */
  tokenOverride: string | undefined;
  /** `CATTY_PORT`: port of the zero-setup local server (default 4815). */
  localPort: number;
  /** `CATTY_SERVER_BIN`: the `catty-server` executable for the zero-setup server. */
  serverBin: string | undefined;
  /** `CATTY_SYNC_MAX_BYTES`: the largest file sync-back writes, whatever the session sends. */
  syncMaxBytes: number;
  /** `CATTY_GITHUB_API`: where GitHub tokens are checked. */
  githubApi: string;
  /** `CATTY_QUIET`: only errors on the terminal. */
  quiet: boolean;
  /** Not `CATTY_NO_UPDATE_CHECK`: after a command on a terminal, look for a newer release. */
  updateCheck: boolean;
  /** `CATTY_LOG_LEVEL`. */
  logLevel: Level;
  /** `--detach-keys` / `CATTY_DETACH_KEYS`, parsed; null: none. */
  detachKeys: Uint8Array | null;
  /** `--predict` / `CATTY_PREDICT`: predictive local echo (default auto). */
  predict: "auto" | "always" | "never";
}

export function readCliConfig(flags: CliFlags, env: NodeJS.ProcessEnv = process.env): Readonly<CliConfig> {
  let s;
  try {
    s = readSettings(CLI_SETTINGS, { flags: { api: flags.api, "detach-keys": flags["detach-keys"], predict: flags.predict }, env });
  } catch (err) {
    throw new CattyError("bad_request", (err as Error).message, "Fix or unset the variable.");
  }
  const home = s.home ?? cattyHome(env);
  return Object.freeze({
    home,
    credentialsFile: join(home, "credentials.json"),
    logFile: join(home, "logs", "catty.log"),
    apiOverride: normalizeApi(s.api),
    tokenOverride: s.token,
    localPort: s.port,
    serverBin: s.serverBin,
    syncMaxBytes: s.syncMaxBytes,
    githubApi: s.githubApi.replace(/\/+$/, ""),
    quiet: s.quiet,
    updateCheck: !s.noUpdateCheck,
    logLevel: s.logLevel,
    detachKeys: s.detachKeys ? parseDetachKeys(s.detachKeys) : null,
    predict: s.predict,
  });
}

export function normalizeApi(api: string | undefined): string | undefined {
  if (!api) return undefined;
  const withScheme = /^https?:\/\//.test(api) ? api : `http://${api}`;
  try {
    const url = new URL(withScheme);
    return url.origin + url.pathname.replace(/\/+$/, "");
  } catch {
    throw new CattyError("bad_request", `"${api}" is not a server URL.`, "Use a URL like https://catty.example.com.");
  }
}

export function readCredentials(config: CliConfig): Credentials | null {
  if (!existsSync(config.credentialsFile)) return null;
  try {
    const parsed = Credentials.safeParse(JSON.parse(readFileSync(config.credentialsFile, "utf8")));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

export function writeCredentials(config: CliConfig, creds: Credentials): void {
  mkdirSync(config.home, { recursive: true, mode: 0o700 });
  chmodSync(config.home, 0o700);
  const tmp = `${config.credentialsFile}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, config.credentialsFile);
}

export function removeCredentials(config: CliConfig): boolean {
  if (!existsSync(config.credentialsFile)) return false;
  rmSync(config.credentialsFile);
  return true;
}
