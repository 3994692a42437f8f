/**
 * An in-process server from source on port 0, with its own data dir. Agents are real
 * `catty-agent` processes (run from source) started by the real local provider.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readServerConfig } from "../../server/config.ts";
import { startServer, type RunningServer, type StartOptions } from "../../server/startup.ts";
import { createApiClient, type ApiClient } from "../../src/client/api.ts";
import { createLog, type Log } from "../../src/lib/log.ts";
import { openSqliteStore } from "../../server/store/sqlite.ts";
import type { Store, User } from "../../server/store/types.ts";
import { killAgents } from "./agents.ts";
import { removeAfterRun } from "./fs.ts";

export interface TestServer extends RunningServer {
  dataDir: string;
  ownerToken: string;
  owner: ApiClient;
  /** A second connection to the server's database, for what the API does not show. */
  store(): Store;
  ownerUser(): Promise<User>;
}

export interface TestServerOptions extends StartOptions {
  env?: Record<string, string>;
  /** An existing data dir (a restarted server); default: a new temp dir. */
  dataDir?: string;
  log?: Log;
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  // A new one is removed after the run (not at stop: a test may start a server on it again).
  const dataDir = opts.dataDir ?? removeAfterRun(mkdtempSync(join(tmpdir(), "catty-srv-")));
  const config = readServerConfig({ port: "0", "data-dir": dataDir }, { ...process.env, CATTY_SANDBOX: "none", ...opts.env });
  const server = await startServer(config, opts.log ?? createLog({ scope: "test-server", level: "warn" }), opts);
  const ownerToken = readFileSync(server.ownerTokenFile, "utf8").trim();
  const stopServer = server.stop;
  let db: Store | null = null;
  const store = (): Store => (db ??= openSqliteStore(join(dataDir, "catty.db")));
  const stop = async (): Promise<void> => {
    db?.close();
    await stopServer();
    killAgents(dataDir);
  };
  const ownerUser = async (): Promise<User> => (await store().userByName("owner")) as User;
  return Object.assign(server, { dataDir, ownerToken, owner: createApiClient(server.url, ownerToken), store, ownerUser, stop, [Symbol.asyncDispose]: stop });
}
