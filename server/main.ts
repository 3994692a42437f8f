/**
 * `catty-server`: the API, the WebSocket relay between clients and session agents, and (later)
 * the dashboard. Subcommands: `serve` (default) and `token create`.
 */
import { defineCommand, runMain } from "citty";
import { createLog } from "../src/lib/log.ts";
import { VERSION } from "../src/lib/version.ts";
import { readServerConfig } from "./config.ts";
import { createUserToken, openStore, startServer } from "./listen.ts";

const common = {
  port: { type: "string", description: "Port to listen on (CATTY_PORT, default 4815)" },
  host: { type: "string", description: "Address to bind (CATTY_HOST, default 127.0.0.1)" },
  "data-dir": { type: "string", description: "Data directory (CATTY_DATA_DIR, default ~/.catty/server)" },
  "s3-bucket": { type: "string", description: "Keep saves in this S3 bucket (CATTY_S3_BUCKET; keys from AWS_* variables)" },
  "s3-endpoint": { type: "string", description: "S3-compatible endpoint URL (CATTY_S3_ENDPOINT)" },
} as const;

const serve = defineCommand({
  meta: { name: "serve", description: "Run the server (the default)" },
  args: common,
  async run({ args }) {
    const config = readServerConfig(args);
    const log = createLog({ scope: "server" });
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
    const store = openStore(readServerConfig(args));
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
