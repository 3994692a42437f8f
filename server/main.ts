/**
 * `catty-server`: the API, the WebSocket relay between clients and session agents, the dashboard
 * and the Claude API proxy. `serve` is the default subcommand; `catty-server --help` lists the
 * others (tokens, users' quotas, …).
 */
import { defineCommand, runMain } from "citty";
import { createLog } from "../src/lib/log.ts";
import { parseDuration } from "../src/lib/duration.ts";
import { tokenIdOfHash } from "../src/lib/token-id.ts";
import { VERSION } from "../src/lib/version.ts";
import { SettingsError } from "../src/protocol/settings.ts";
import { readServerConfig, serverFlags, type ServerConfig } from "./config.ts";
import { createUserToken, openStore, startServer } from "./startup.ts";
import { runCheck, runRecover } from "./storage-commands.ts";
import { TopologyError } from "./topology.ts";
import { unknownVariableWarnings } from "./environment-check.ts";
import { checkCommandLine } from "../src/lib/command-line.ts";

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
    for (const warning of unknownVariableWarnings(process.env)) log.warn(warning);
    // A deployment the other replicas could not serve alongside this one is a one-line error and exit code 1, as a bad setting.
    const server = await startServer(config, log).catch((err: unknown) => (err instanceof TopologyError || err instanceof SettingsError ? fail(err.message) : Promise.reject(err)));
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

/** A one-line error and exit code 1. */
function fail(message: string): never {
  console.error(`catty-server: ${message}`);
  process.exit(1);
}

const tokenCreate = defineCommand({
  meta: { name: "create", description: "Print a new API token for a user (created if missing)" },
  args: {
    ...common,
    user: { type: "string", description: "User name", default: "owner" },
    expires: { type: "string", description: "Stop working after this long (30d, 12h, 90m); default: when revoked" },
  },
  async run({ args }) {
    let expiresAt: string | null = null;
    if (args.expires !== undefined) {
      try {
        expiresAt = new Date(Date.now() + parseDuration(args.expires, "--expires")).toISOString();
      } catch (err) {
        fail(`${(err as Error).message} Use a number with a unit, like 30d, 12h or 90m.`);
      }
    }
    const store = await openStore(configOrExit(args));
    try {
      console.log(await createUserToken(store, args.user, expiresAt));
    } finally {
      await store.close();
    }
  },
});

const tokenList = defineCommand({
  meta: { name: "list", description: "List API tokens (never the tokens themselves): id, user, created, expires" },
  args: { ...common, user: { type: "string", description: "Only this user's" }, json: { type: "boolean", description: "JSON on stdout" } },
  async run({ args }) {
    const store = await openStore(configOrExit(args));
    try {
      const user = args.user === undefined ? null : await store.userByName(args.user);
      if (args.user !== undefined && !user) fail(`no user named "${args.user}".`);
      const now = new Date().toISOString();
      const rows = (await store.listTokens(user?.id)).map((t) => ({
        id: tokenIdOfHash(t.hash),
        user: t.userName,
        createdAt: t.createdAt,
        expiresAt: t.expiresAt,
        expired: t.expiresAt !== null && t.expiresAt <= now,
      }));
      if (args.json) {
        console.log(JSON.stringify(rows, null, 2));
        return;
      }
      const when = (iso: string): string => `${iso.slice(0, 16).replace("T", " ")} UTC`;
      const table = [["ID", "USER", "CREATED", "EXPIRES"], ...rows.map((r) => [r.id, r.user, when(r.createdAt), r.expiresAt === null ? "never" : `${when(r.expiresAt)}${r.expired ? " (expired)" : ""}`])];
      const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
      for (const row of table) console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd());
    } finally {
      await store.close();
    }
  },
});

const tokenRevoke = defineCommand({
  meta: { name: "revoke", description: "Revoke an API token by its id (from `token list`); the browsers it signed in are signed out" },
  args: { ...common, id: { type: "positional", required: true, description: "The token's id, or enough of its start to name one" } },
  async run({ args }) {
    const id = args.id.trim().toLowerCase();
    if (!/^[0-9a-f]{6,64}$/.test(id)) fail(`"${args.id}" is not a token id: give 6 or more of the hex digits \`catty-server token list\` shows.`);
    const store = await openStore(configOrExit(args));
    try {
      const found = (await store.listTokens()).filter((t) => t.hash.startsWith(id));
      if (found.length === 0) fail(`no token has an id starting "${id}" (see \`catty-server token list\`).`);
      if (found.length > 1) fail(`${found.length} tokens have ids starting "${id}": give more of the id.`);
      const token = found[0]!;
      await store.revokeToken(token.hash);
      console.log(`Revoked token ${tokenIdOfHash(token.hash)} of ${token.userName}; browsers it signed in are signed out.`);
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

const recover = defineCommand({
  meta: { name: "recover", description: "Rebuild an empty database from the saves' bucket and the master key (--from-storage)" },
  args: { ...common, "from-storage": { type: "boolean", description: "Read users, the index, sessions and saves from storage" }, json: { type: "boolean", description: "JSON on stdout" } },
  async run({ args }) {
    if (!args["from-storage"]) fail("give --from-storage: recovery reads everything from the bucket (or the disk store) and the master key.");
    const config = configOrExit(args);
    process.exit(await runRecover(config, createLog({ scope: "server", level: config.logLevel, format: config.logFormat }), { json: args.json === true }));
  },
});

const check = defineCommand({
  meta: { name: "check", description: "Check that every save's blobs exist and decrypt (safe on a live server); exit code 1 when something is damaged" },
  args: { ...common, "read-data": { type: "boolean", description: "Read and decrypt every blob, not only the trees" }, json: { type: "boolean", description: "JSON on stdout" } },
  async run({ args }) {
    const config = configOrExit(args);
    const log = createLog({ scope: "server", level: config.logLevel, format: config.logFormat });
    process.exit(await runCheck(config, log, { json: args.json === true, readData: args["read-data"] === true }));
  },
});

const main = defineCommand({
  meta: { name: "catty-server", version: VERSION, description: "Catty server: API, relay and session machines" },
  subCommands: {
    serve,
    token: defineCommand({ meta: { name: "token", description: "Manage API tokens" }, subCommands: { create: tokenCreate, list: tokenList, revoke: tokenRevoke } }),
    users: defineCommand({ meta: { name: "users", description: "Manage users" }, subCommands: { "set-quota": setQuota } }),
    recover,
    check,
  },
});

const argv = process.argv.slice(2);
const first = argv[0];
const rawArgs = first === undefined || first.startsWith("-") && first !== "--help" && first !== "-h" && first !== "--version" ? ["serve", ...argv] : argv;
// A mistyped subcommand or flag is a usage error (exit code 2): citty alone would ignore the flag.
const wrong = await checkCommandLine(main, rawArgs, "catty-server");
if (wrong) {
  console.error(`catty-server: ${wrong}`);
  process.exit(2);
}
await runMain(main, { rawArgs });
