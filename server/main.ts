/**
 * `catty-server`: the API, the WebSocket relay between clients and session agents, and (later)
 * the dashboard. Subcommands: `serve` (default) and `token create`.
 */
import { defineCommand, runMain } from "citty";
import { createLog } from "../src/lib/log.ts";
import { VERSION } from "../src/lib/version.ts";
import { SettingsError } from "../src/protocol/settings.ts";
import { readServerConfig, serverFlags, type ServerConfig } from "./config.ts";
import { createUserToken, openStore, startServer } from "./listen.ts";

// Everything the server creates (database, WAL, keys, blobs, logs) is for its user only.
process.umask(0o077);

const common = serverFlags();

/** Reads the configuration; a bad setting is a one-line error and exit code 1. */
function configOrExit(args: Record<string, unknown>): Readonly<ServerConfig> {
  try {
    return readServerConfig(args as Record<string, string | undefined>);
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    console.error(`catty-server: ${err.message}`);
    process.exit(1);
  }
}

const serve = defineCommand({
  meta: { name: "serve", description: "Run the server (the default)" },
  args: common,
  async run({ args }) {
    const config = configOrExit(args);
    const log = createLog({ scope: "server", level: config.logLevel });
    const server = await startServer(config, log);
    const shutdown = async (): Promise<void> => {
      await server.stop();
      process.exit(0);
    };
    process.on("SIGINT", shutdown);
    process.on("SIGTERM", shutdown);
  },
});

const tokenCreate = defineCommand({
  meta: { name: "create", description: "Print a new API token for a user (created if missing)" },
  args: { ...common, user: { type: "string", description: "User name", default: "owner" } },
  async run({ args }) {
    const store = openStore(configOrExit(args));
    try {
      console.log(await createUserToken(store, args.user));
    } finally {
      store.close();
    }
  },
});

const main = defineCommand({
  meta: { name: "catty-server", version: VERSION, description: "Catty server: API, relay and session machines" },
  subCommands: {
    serve,
    token: defineCommand({ meta: { name: "token", description: "Manage API tokens" }, subCommands: { create: tokenCreate } }),
  },
});

const argv = process.argv.slice(2);
const first = argv[0];
const rawArgs = first === undefined || first.startsWith("-") && first !== "--help" && first !== "-h" && first !== "--version" ? ["serve", ...argv] : argv;
await runMain(main, { rawArgs });
