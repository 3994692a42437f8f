/**
 * Starting a server from its configuration: open the database, create the owner on first start,
 * pick the provider, build the app and bind it. Used by `catty-server serve` and by tests.
 */
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { binaryCommand } from "../src/lib/paths.ts";
import type { Log } from "../src/lib/log.ts";
import { hashToken, newToken } from "./tokens.ts";
import { createServer } from "./app.ts";
import { createDiskBlobStore, handleBlobRequest, loadOrCreateSecret } from "./blobs/disk.ts";
import { createS3BlobStore } from "./blobs/s3.ts";
import type { BlobStore } from "./blobs/types.ts";
import type { ServerConfig } from "./config.ts";
import { createLocalProvider } from "./providers/local.ts";
import type { Provider } from "./providers/types.ts";
import type { SocketData } from "./relay.ts";
import { openSqliteStore } from "./store/sqlite.ts";
import type { Store } from "./store/types.ts";

export interface RunningServer {
  url: string;
  port: number;
  /** Set on the very first start: the owner's token and where it was written. */
  ownerTokenFile: string;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export function openStore(config: ServerConfig): Store {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const file = join(config.dataDir, "catty.db");
  const store = openSqliteStore(file);
  chmodSync(file, 0o600);
  return store;
}

/** Creates a token for `name` (and the user if missing). The token is only ever shown here. */
export async function createUserToken(store: Store, name: string): Promise<string> {
  const user = (await store.userByName(name)) ?? (await store.createUser(name));
  const token = newToken("cat");
  await store.addToken(user.id, hashToken(token));
  return token;
}

/** S3 when a bucket is configured, else a directory in the data dir. */
export function openBlobs(config: ServerConfig, log: Log): { blobs: BlobStore; blobRoute?: (req: Request) => Promise<Response> } {
  const s3 = config.s3;
  if (s3) {
    log.info(`saves go to S3 bucket ${s3.bucket}${s3.endpoint ? ` at ${s3.endpoint}` : ""}`);
    return { blobs: createS3BlobStore(s3) };
  }
  const disk = createDiskBlobStore({ dir: join(config.dataDir, "blobs"), secret: loadOrCreateSecret(config.dataDir) });
  return { blobs: disk, blobRoute: (req) => handleBlobRequest(req, disk, { maxPutBytes: config.maxSaveBytes }) };
}

export interface StartOptions {
  /** Tests wrap the provider to observe it (the real local provider still does the work). */
  wrapProvider?(provider: Provider): Provider;
}

export async function startServer(config: ServerConfig, log: Log, opts: StartOptions = {}): Promise<RunningServer> {
  const store = openStore(config);
  const ownerTokenFile = join(config.dataDir, "owner-token");
  if ((await store.countUsers()) === 0) {
    const token = await createUserToken(store, "owner");
    writeFileSync(ownerTokenFile, `${token}\n`, { mode: 0o600 });
    chmodSync(ownerTokenFile, 0o600);
    log.info(`first start: created user "owner"; its token is in ${ownerTokenFile}`);
  }
  const local = createLocalProvider({
    dataDir: config.dataDir,
    agentCommand: binaryCommand("catty-agent", config.agentBin),
    log,
  });
  const provider = opts.wrapProvider ? opts.wrapProvider(local) : local;
  const { blobs, blobRoute } = openBlobs(config, log);
  let agentUrl = config.publicUrl ?? "";
  const app = createServer({
    store,
    provider,
    blobs,
    blobRoute,
    limits: { maxUploadBytes: config.maxUploadBytes, keepSaves: config.keepSaves },
    log,
    agentUrl: () => agentUrl,
    agentLostMs: config.agentLostMs,
    timeouts: config.timeouts,
  });
  const server = Bun.serve<SocketData>({
    port: config.port,
    hostname: config.host,
    fetch: app.fetch,
    websocket: app.websocket,
    // Saves and uploads stream through here (disk storage); the handlers enforce the real caps.
    maxRequestBodySize: Math.max(config.maxSaveBytes, config.maxUploadBytes) + 1024 * 1024,
  });
  const port = server.port as number;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  if (!agentUrl) agentUrl = `http://${config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host}:${port}`;
  await app.recover();
  const pidFile = join(config.dataDir, "server.pid");
  writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o600 });
  log.info(`listening on ${url}`, { dataDir: config.dataDir });
  const stop = async (): Promise<void> => {
    rmSync(pidFile, { force: true });
    app.close();
    await server.stop(true);
    store.close();
  };
  return { url, port, ownerTokenFile, stop, [Symbol.asyncDispose]: stop };
}
