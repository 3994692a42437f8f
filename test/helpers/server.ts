/**
 * An in-process server from source on port 0, with its own data dir. Agents are real
 * `catty-agent` processes (run from source) started by the real local provider.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readServerConfig } from "../../server/config.ts";
import { startServer, type RunningServer, type StartOptions } from "../../server/listen.ts";
import { createApiClient, type ApiClient } from "../../src/client/api.ts";
import { createLog, type Log } from "../../src/lib/log.ts";
import { killAgents } from "./agents.ts";

export interface TestServer extends RunningServer {
  dataDir: string;
  ownerToken: string;
  owner: ApiClient;
}

export interface TestServerOptions extends StartOptions {
  env?: Record<string, string>;
  /** An existing data dir (a restarted server); default: a new temp dir. */
  dataDir?: string;
  log?: Log;
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "catty-srv-"));
  const config = readServerConfig({ port: "0", "data-dir": dataDir }, { ...process.env, CATTY_SANDBOX: "none", ...opts.env });
  const server = await startServer(config, opts.log ?? createLog({ scope: "test-server", level: "warn" }), opts);
  const ownerToken = readFileSync(server.ownerTokenFile, "utf8").trim();
  const stopServer = server.stop;
  const stop = async (): Promise<void> => {
    await stopServer();
    killAgents(dataDir);
  };
  return Object.assign(server, { dataDir, ownerToken, owner: createApiClient(server.url, ownerToken), stop, [Symbol.asyncDispose]: stop });
}
