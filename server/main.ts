/**
 * `catty-server`: the API, the WebSocket relay between clients and session agents, and (later)
 * the dashboard. Subcommands: `serve` (default), `token create` and `users set-quota`.
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
    const log = createLog({ scope: "server", level: config.logLevel, format: config.logFormat });
    const server = await startServer(config, log);
    let stopping = false;
    const shutdown = async (): Promise<void> => {
      if (stopping) return;
      stopping = true;
      await server.shutdown(10_000);
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
    const store = await openStore(configOrExit(args));
    try {
      console.log(await createUserToken(store, args.user));
    } finally {
      await store.close();
    }
  },
});

const setQuota = defineCommand({
  meta: { name: "set-quota", description: "Set a user's monthly Claude API token quota (--tokens N, or --unlimited)" },
  args: {
    ...common,
    name: { type: "positional", required: true, description: "User name" },
    tokens: { type: "string", description: "Tokens per month (input, output and cache tokens together)" },
    unlimited: { type: "boolean", description: "No limit" },
  },
  async run({ args }) {
    const tokens = args.unlimited ? null : Number(args.tokens);
    if (!args.unlimited && (args.tokens === undefined || !/^\d+$/.test(args.tokens) || !Number.isSafeInteger(tokens))) {
      console.error("catty-server: give --tokens N (a whole number) or --unlimited.");
      process.exit(1);
    }
    const store = await openStore(configOrExit(args));
    try {
      const user = await store.userByName(args.name);
      if (!user) {
        console.error(`catty-server: no user named "${args.name}" (create one with \`catty-server token create --user ${args.name}\`).`);
        process.exit(1);
      }
      await store.setTokenQuota(user.id, tokens);
      console.log(tokens === null ? `${args.name}: no monthly token limit` : `${args.name}: ${tokens.toLocaleString("en-US")} tokens per month`);
    } finally {
      await store.close();
    }
  },
});

const main = defineCommand({
  meta: { name: "catty-server", version: VERSION, description: "Catty server: API, relay and session machines" },
  subCommands: {
    serve,
    token: defineCommand({ meta: { name: "token", description: "Manage API tokens" }, subCommands: { create: tokenCreate } }),
    users: defineCommand({ meta: { name: "users", description: "Manage users" }, subCommands: { "set-quota": setQuota } }),
  },
});

const argv = process.argv.slice(2);
const first = argv[0];
const rawArgs = first === undefined || first.startsWith("-") && first !== "--help" && first !== "-h" && first !== "--version" ? ["serve", ...argv] : argv;
await runMain(main, { rawArgs });
