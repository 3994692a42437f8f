/**
 * What `catty-server` says about its own environment at start: a warning for each `CATTY_*`
 * variable no Catty binary reads (a typo would otherwise be ignored silently), and one line with
 * the settings that shape the server.
 */
import { AGENT_ENV } from "../src/protocol/agent-env.ts";
import { nearest } from "../src/lib/nearest.ts";
import type { SettingsSpec } from "../src/protocol/settings.ts";
import { SERVER_SETTINGS, type ServerConfig } from "./config.ts";

/**
 * `CATTY_*` variables the server's and agents' declarations do not hold: the CLI's own (the server
 * may not import the CLI's modules; test/lib/command-line.test.ts checks this list against them),
 * its update check's and the session image's entrypoint's.
 */
const OTHER_VARIABLES = [
  "CATTY_API_ADDR",
  "CATTY_TOKEN",
  "CATTY_HOME",
  "CATTY_SERVER_BIN",
  "CATTY_GITHUB_API",
  "CATTY_QUIET",
  "CATTY_NO_UPDATE_CHECK",
  "CATTY_DETACH_KEYS",
  "CATTY_PREDICT",
  "CATTY_DOWNLOAD_URL",
  "CATTY_NPM_NAME",
  "CATTY_NPM_REGISTRY",
  "CATTY_PROGRAM_UID",
];

/** Every `CATTY_*` variable some binary reads: the server's, the CLI's and the agent's (the server passes some to agents). */
export function knownVariables(): Set<string> {
  const names = new Set(OTHER_VARIABLES);
  for (const spec of [SERVER_SETTINGS, AGENT_ENV] as SettingsSpec[]) {
    for (const { info } of Object.values(spec)) for (const name of info.env ?? []) if (name.startsWith("CATTY_")) names.add(name);
  }
  return names;
}

/** One warning per `CATTY_*` variable in `env` that no binary reads, naming the nearest one that is. */
export function unknownVariableWarnings(env: NodeJS.ProcessEnv): string[] {
  const known = knownVariables();
  return Object.keys(env)
    .filter((name) => name.startsWith("CATTY_") && !known.has(name))
    .sort()
    .map((name) => {
      const guess = nearest(name, known);
      return `${name} is not a Catty setting and is ignored${guess ? `: did you mean ${guess}?` : ""} (the README's settings tables list them)`;
    });
}

/** The one line a starting server logs: where it keeps things, where sessions run, how it is reached. */
export function startLine(config: ServerConfig, publicUrl: string, tls: string): string {
  const storage = config.s3 ? `S3 bucket ${config.s3.bucket}${config.s3.endpoint ? ` at ${config.s3.endpoint}` : ""}` : `disk (${config.dataDir})`;
  const database = config.databaseUrl ? `PostgreSQL at ${new URL(config.databaseUrl).host}` : "SQLite in the data dir";
  const sandbox = config.provider === "local" ? `, sandbox ${config.sandbox}` : "";
  const network = config.provider === "docker" ? `, network ${config.docker.network}` : "";
  const egress = `${config.egress.policy}${config.egress.allow.length > 0 ? ` (+${config.egress.allow.length} allowed)` : ""}`;
  return `settings: storage ${storage}; database ${database}; provider ${config.provider}${sandbox}${network}; session egress ${egress}; public URL ${publicUrl}; TLS ${tls}`;
}
