/**
 * Starting a server from its configuration: open the database, create the owner on first start,
 * pick the provider, build the app and bind it. Used by `catty-server serve` and by tests.
 */
import { randomUUID } from "node:crypto";
import { chmodSync, closeSync, openSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { binaryCommand } from "../src/lib/paths.ts";
import type { Log } from "../src/lib/log.ts";
import { hashToken, newToken } from "./tokens.ts";
import { createApp } from "./app.ts";
import { Replicas } from "./replicas.ts";
import { parseTrustedProxies } from "./client-address.ts";
import { aboutThisReplica } from "./topology.ts";
import { createDiskBlobStore, loadOrCreateSecret } from "./blobs/disk.ts";
import { createS3BlobStore } from "./blobs/s3.ts";
import type { BlobStore } from "./blobs/types.ts";
import type { ServerConfig } from "./config.ts";
import { startLine } from "./environment-check.ts";
import { serveTls } from "./tls/serve.ts";
import { dataDirTlsStorage, storeTlsStorage, underLease } from "./tls/storage.ts";
import { loadOrCreateKey, prepareDataDir } from "./data-dir.ts";
import { MAX_PACK_BYTES } from "../src/lib/snapshot/format.ts";
import { parseMasterKey } from "./vault/crypto.ts";
import { createDockerClient } from "./providers/docker-api.ts";
import { createFlyProvider } from "./providers/fly.ts";
import { createDockerProvider, serverIdFrom } from "./providers/docker.ts";
import { createLocalProvider } from "./providers/local.ts";
import { resolveSandbox } from "./providers/sandbox.ts";
import { createSessionNetworks } from "./providers/network.ts";
import { createSessionDisks } from "./providers/disk.ts";
import type { Provider } from "./providers/types.ts";
import type { SocketData } from "./relay.ts";
import { openPostgresStore } from "./store/postgres.ts";
import { openSqliteStore } from "./store/sqlite.ts";
import type { Store } from "./store/types.ts";

export interface RunningServer {
  url: string;
  port: number;
  /** Set on the very first start: the owner's token and where it was written. */
  ownerTokenFile: string;
  stop(): Promise<void>;
  /**
   * Stops gracefully, within `deadlineMs` (SIGTERM): `/readyz` says no, new connections are
   * refused, agents and clients are told to dial again, requests under way may finish until the
   * deadline, then everything is closed.
   */
  shutdown(deadlineMs?: number): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Opens the database: PostgreSQL when a URL is configured, else SQLite in the data dir (which it
 * creates or tightens first: see prepareDataDir). Either way the schema is brought up to date.
 */
export async function openStore(config: Pick<ServerConfig, "dataDir"> & Partial<Pick<ServerConfig, "databaseUrl">>, log?: Log): Promise<Store> {
  if (config.databaseUrl) return openPostgresStore(config.databaseUrl, log ? { log } : {});
  prepareDataDir(config.dataDir);
  const file = join(config.dataDir, "catty.db");
  // SQLite creates the -wal and -shm files with the database file's mode: make that 0600 first.
  closeSync(openSync(file, "a", 0o600));
  chmodSync(file, 0o600);
  return openSqliteStore(file, log ? { log } : {});
}

/** Creates a token for `name` (and the user if missing), working until `expiresAt` (null: until revoked). The token is only ever shown here. */
export async function createUserToken(store: Store, name: string, expiresAt: string | null = null): Promise<string> {
  // Replicas on one database may make the first user at once: the one that loses uses the other's.
  const user =
    (await store.userByName(name)) ??
    (await store.createUser(name).catch(async (err: unknown) => {
      const made = await store.userByName(name);
      if (!made) throw err;
      return made;
    }));
  const token = newToken("cat");
  await store.addToken(user.id, hashToken(token), expiresAt);
  return token;
}

/** S3 when a bucket is configured, else a directory in the data dir. */
export function openBlobs(config: ServerConfig, log: Log): BlobStore {
  if (config.s3) {
    log.info(`saves go to S3 bucket ${config.s3.bucket}${config.s3.endpoint ? ` at ${config.s3.endpoint}` : ""}`);
    return createS3BlobStore(config.s3);
  }
  return createDiskBlobStore({ dir: join(config.dataDir, "blobs"), secret: loadOrCreateSecret(config.dataDir) });
}

const LOOPBACK = ["127.0.0.1", "::1", "localhost"];
/** Whether `host` (a URL's hostname, IPv6 in brackets or not) is this machine's loopback. */
const isLoopback = (host: string): boolean => LOOPBACK.includes(host.replace(/^\[|\]$/g, ""));

/** The configured provider: local sessions (sandboxed when possible), Docker containers or Fly Machines. */
async function openProvider(config: ServerConfig, store: Store, serverKey: string, log: Log): Promise<Provider> {
  /** Machines elsewhere dial CATTY_PUBLIC_URL: it must be set, and not a loopback address. */
  const needPublicUrl = (machines: string, example: string): void => {
    const host = config.publicUrl ? new URL(config.publicUrl).hostname : null;
    if (!host || isLoopback(host)) throw new Error(`${machines} dial this server at CATTY_PUBLIC_URL: set it to an address they reach (${example})`);
  };
  if (config.provider === "fly" && config.fly) {
    needPublicUrl("Fly Machines", "https://catty.example.com, or the app's .internal or .flycast address");
    log.info(`sessions: Fly Machines of ${config.fly.image} in app ${config.fly.app}, regions ${config.regions.map((r) => `${r.id}=${r.place}`).join(", ")}`);
    return createFlyProvider({
      api: config.fly.api,
      app: config.fly.app,
      token: config.fly.apiToken,
      image: config.fly.image,
      regions: config.regions,
      limits: config.sessionLimits,
      tuning: config.agentTuning,
      // Replicas share the master key, not a data dir: their Machines carry one server id, so a
      // replica's reconcile never takes another's Machines for strays.
      serverId: serverIdFrom(config.masterKey ?? serverKey),
      log,
    });
  }
  if (config.provider === "kubernetes" && config.kubernetes) {
    needPublicUrl("session Pods", "the server's Service, http://catty-server.<namespace>.svc:4815");
    // Loaded only here: the Kubernetes client is large, and only this provider needs it.
    const { createKubernetesProvider, kubeNamespace, loadKubeConfig } = await import("./providers/kubernetes.ts");
    const kubeConfig = loadKubeConfig();
    const namespace = kubeNamespace(kubeConfig, config.kubernetes.namespace);
    log.info(`sessions: Kubernetes Pods of ${config.kubernetes.image} in namespace ${namespace} on ${kubeConfig.getCurrentCluster()?.server}`);
    return createKubernetesProvider({
      kubeConfig,
      namespace,
      image: config.kubernetes.image,
      regions: config.regions,
      regionLabel: config.kubernetes.regionLabel,
      pullSecret: config.kubernetes.pullSecret,
      limits: config.sessionLimits,
      ...(config.sessionDiskBytes ? { diskBytes: config.sessionDiskBytes } : {}),
      tuning: config.agentTuning,
      serverId: serverIdFrom(config.masterKey ?? serverKey),
      log,
    });
  }
  if (config.provider === "docker") {
    const agentHost = config.publicUrl ? new URL(config.publicUrl).hostname : config.host;
    if (isLoopback(agentHost) && config.docker.network !== "host") {
      throw new Error(
        `session containers on the ${config.docker.network} network cannot reach this server on ${agentHost}: set CATTY_PUBLIC_URL to an address they reach ` +
          "(e.g. the host's bridge address, with --host bound there) or use --docker-network host with CATTY_SESSION_EGRESS=all",
      );
    }
    if (config.docker.network === "host" && (config.egress.policy !== "all" || config.egress.allow.length > 0)) {
      throw new Error(
        `--docker-network host shares the host's network with sessions, where the egress policy (${config.egress.policy}) cannot hold: ` +
          "use a bridge network (the default, `bridge`, or one of yours, with CATTY_PUBLIC_URL at an address its containers reach) or set CATTY_SESSION_EGRESS=all",
      );
    }
    const docker = createDockerClient(config.docker.host);
    await docker.ping();
    if (!(await docker.hasImage(config.docker.image))) {
      throw new Error(`the session image ${config.docker.image} is not in the Docker engine at ${docker.host}: build it with \`npm run session-image\` (or docker build image/), or set --docker-image`);
    }
    const l = config.sessionLimits;
    log.info(`sessions: Docker containers of ${config.docker.image} on ${docker.host}, network ${config.docker.network}`);
    log.info(
      `session limits: memory ${l.memoryBytes} bytes and ${l.cpus} CPUs (container cgroup), ${l.pids} processes (RLIMIT_NPROC of the session's own uid), ` +
        `disk ${config.sessionDiskBytes ? `${config.sessionDiskBytes} bytes (storage option)` : "not limited"}`,
    );
    return createDockerProvider({
      docker,
      image: config.docker.image,
      network: config.docker.network,
      regions: config.regions,
      limits: config.sessionLimits,
      ...(config.sessionDiskBytes ? { diskBytes: config.sessionDiskBytes } : {}),
      tuning: config.agentTuning,
      // Replicas sharing a database share the id (so any of them reconciles all their containers); a
      // server of its own keeps the id its containers were labelled with.
      serverId: serverIdFrom(config.databaseUrl && config.masterKey ? config.masterKey : serverKey),
      egress: { policy: config.egress.policy, allow: [...config.egress.allow] },
      log,
    });
  }
  const sandbox = resolveSandbox(config.sandbox, config.sessionLimits);
  // A network per session needs root (a namespace of the host's, rules the program cannot change).
  const root = process.getuid?.() === 0;
  const network =
    sandbox.kind === "bwrap" && root ? createSessionNetworks({ policy: config.egress.policy, allow: [...config.egress.allow], dataDir: config.dataDir }) : null;
  log.info(`local sessions: sandbox ${sandbox.kind}, limits ${sandbox.limits}, network ${network ? network.summary : "the host's"}`);
  const disks = config.sessionDiskBytes ? createSessionDisks({ dataDir: config.dataDir, bytes: config.sessionDiskBytes }) : null;
  log.info(`local sessions' disks: ${disks ? disks.summary : "the data dir's, not limited"}`);
  if (!network && config.egress.asked) {
    throw new Error(
      `CATTY_SESSION_EGRESS${config.egress.allow.length ? "_ALLOW" : ""} is set, but this server cannot give local sessions a network of their own ` +
        `(that needs bubblewrap and a server running as root; it has ${sandbox.kind === "bwrap" ? "bubblewrap but runs as an ordinary user" : "no sandbox"}): ` +
        "run catty-server as root with bubblewrap (apt-get install bubblewrap), or unset it",
    );
  }
  if (!network && sandbox.kind === "bwrap") {
    log.warn("sandboxed sessions share the host's network (and reach its loopback): run catty-server as root for a network of their own with the egress policy");
  }
  const loopback = isLoopback(config.host);
  return createLocalProvider({
    dataDir: config.dataDir,
    agentCommand: binaryCommand("catty-agent", config.agentBin),
    tuning: config.agentTuning,
    sandbox,
    network,
    disks,
    mayRunUnsandboxed: async () => loopback && (await store.countUsers()) <= 1,
    regions: config.regions,
    log,
  });
}

export interface StartOptions {
  /** Tests wrap the provider to observe it (the real local provider still does the work). */
  wrapProvider?(provider: Provider): Provider;
  /** Tests shorten how long presigned URLs live and how often unused blobs are swept. */
  transferTtlMs?: number;
  sweepMs?: number;
}

export async function startServer(config: ServerConfig, log: Log, opts: StartOptions = {}): Promise<RunningServer> {
  // The data dir holds this process's keys and pid file whichever database it uses.
  prepareDataDir(config.dataDir);
  const store = await openStore(config, log);
  const ownerTokenFile = join(config.dataDir, "owner-token");
  if ((await store.countUsers()) === 0) {
    const token = await createUserToken(store, "owner");
    writeFileSync(ownerTokenFile, `${token}\n`, { mode: 0o600 });
    chmodSync(ownerTokenFile, 0o600);
    log.info(`first start: created user "owner"; its token is in ${ownerTokenFile}`);
  }
  const serverKey = loadOrCreateKey(config.dataDir, "server-key");
  const chosen = await openProvider(config, store, serverKey, log).catch(async (err: unknown) => {
    await store.close();
    throw err;
  });
  const provider = opts.wrapProvider ? opts.wrapProvider(chosen) : chosen;
  // Local agents dial the plain port on loopback, whatever name the server has outside.
  let agentUrl = config.tls && config.provider === "local" ? "" : (config.publicUrl ?? "");
  let internalUrl = config.internalUrl ?? "";
  const masterKey = parseMasterKey(config.masterKey ?? loadOrCreateKey(config.dataDir, "master-key"));
  // On SQLite the database is this process's alone (the data dir is locked); on PostgreSQL other
  // replicas may share it, and must share the master key too.
  const solo = config.databaseUrl === null;
  if (!solo && !config.masterKey) log.warn("on PostgreSQL, give every replica the same CATTY_MASTER_KEY: this one uses the key in its data dir");
  if (!solo && !config.s3) log.warn("on PostgreSQL, several replicas need an S3 bucket (--s3-bucket): this one keeps saves on its own disk, so no other replica may share this database (one that tries is refused)");
  // readServerConfig asks for CATTY_INTERNAL_KEY on PostgreSQL; a solo replica calls no other.
  const key = !solo && config.internalKey ? parseMasterKey(config.internalKey) : null;
  const replicas = new Replicas({
    store,
    log,
    key,
    url: () => internalUrl,
    solo,
    deadMs: config.replicaDeadMs,
    beatMs: Math.max(100, Math.floor(config.replicaDeadMs / 5)),
    about: aboutThisReplica(config, masterKey),
  });
  const app = createApp({
    store,
    provider,
    blobs: openBlobs(config, log),
    log,
    limits: { maxUploadBytes: config.maxUploadBytes, maxSaveBytes: config.maxSaveBytes, retentionDays: config.retentionDays },
    masterKey,
    replicas,
    trustedProxies: config.trustedProxies ? parseTrustedProxies(config.trustedProxies) : null,
    publicUrl: config.publicUrl ?? null,
    previewDomain: config.previewDomain,
    notify: config.notify,
    timeouts: config.timeouts,
    agentUrl: () => agentUrl,
    agentLostMs: config.agentLostMs,
    stopTimeoutMs: config.stopTimeoutMs,
    serverKey,
    apiAccess: config.apiAccess,
    metricsToken: config.metricsToken,
    internalListener: config.internalPort !== null,
    ...(opts.transferTtlMs !== undefined ? { transferTtlMs: opts.transferTtlMs } : {}),
    ...(opts.sweepMs !== undefined ? { sweepMs: opts.sweepMs } : {}),
  });
  const server = Bun.serve<SocketData>({
    port: config.port,
    hostname: config.host,
    fetch: app.fetch,
    websocket: app.websocket,
    // Archive uploads stream through here to storage; their routes enforce the real caps, and
    // JSON routes stop reading at 1 MiB. Save packs are far smaller.
    maxRequestBodySize: Math.max(config.maxUploadBytes, MAX_PACK_BYTES) + 1024 * 1024,
  });
  // Replicas' calls to each other on a port of their own (the cluster's private network), when asked.
  const internalServer = app.internalFetch
    ? Bun.serve<SocketData>({ port: config.internalPort ?? 0, hostname: config.host, fetch: app.internalFetch, websocket: app.websocket, maxRequestBodySize: 2 * 1024 * 1024 })
    : null;
  // HTTPS on its own ports when the server has certificates (--domain, --tls-cert); --port stays plain for local agents.
  const tls = config.tls
    ? await serveTls({
        tls: config.tls,
        // Replicas on one database share the certificate, and one of them orders at a time.
        ...(solo ? { storage: dataDirTlsStorage(config.dataDir) } : { storage: storeTlsStorage(store, masterKey), exclusive: underLease(store, `${hostname()}:${process.pid}:${randomUUID()}`) }),
        fetch: app.fetch,
        websocket: app.websocket,
        maxRequestBodySize: Math.max(config.maxUploadBytes, MAX_PACK_BYTES) + 1024 * 1024,
        log,
      }).catch(async (err: unknown) => {
        await server.stop(true);
        await internalServer?.stop(true);
        await store.close();
        throw err;
      })
    : null;
  const port = server.port as number;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  const reachableHost = config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host.includes(":") ? `[${config.host}]` : config.host;
  if (!agentUrl) agentUrl = `http://${reachableHost}:${port}`;
  if (!internalUrl) internalUrl = `http://${reachableHost}:${internalServer?.port ?? port}`;
  // A deployment the other replicas could not serve alongside this one stops here, before it takes any work.
  const check = async (): Promise<void> => {
    await replicas.checkUrl();
    await replicas.start();
    await replicas.checkTopology();
  };
  await check().catch(async (err: unknown) => {
    await replicas.close();
    await server.stop(true);
    await internalServer?.stop(true);
    await tls?.stop(true);
    await store.close();
    throw err;
  });
  await app.start();
  const pidFile = join(config.dataDir, "server.pid");
  writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o600 });
  log.info(`listening on ${url}`, { dataDir: config.dataDir });
  log.info(startLine(config, config.publicUrl ?? agentUrl, tls?.summary ?? "none (plain HTTP: put a TLS proxy in front)"));
  const stop = async (): Promise<void> => {
    rmSync(pidFile, { force: true });
    app.close();
    await replicas.close();
    await server.stop(true);
    await internalServer?.stop(true);
    await tls?.stop(true);
    // A storage sweep under way finishes before the database closes (for 5 s at most).
    await Promise.race([app.settled(), Bun.sleep(5_000)]);
    await store.close();
  };
  const shutdown = async (deadlineMs = 10_000): Promise<void> => {
    const started = Date.now();
    log.info("shutting down: links are told to dial again");
    app.drain();
    app.close();
    // The others take over this replica's sessions and duties at once.
    await replicas.close();
    // No new connection from here on, so links told to dial again land on another replica.
    const finished = Promise.all([server.stop(false), internalServer?.stop(false), tls?.stop(false), app.settled()]).then(() => true);
    app.closeLinks();
    // Whatever still runs at the deadline (a long download) is cut; a little is kept for the rest.
    const late = Bun.sleep(Math.max(0, deadlineMs - 1000)).then(() => false);
    if (!(await Promise.race([finished, late]))) log.warn("requests still under way at the deadline were cut");
    rmSync(pidFile, { force: true });
    await server.stop(true);
    await internalServer?.stop(true);
    await tls?.stop(true);
    await store.close();
    log.info("shut down", { ms: Date.now() - started });
  };
  return { url, port, ownerTokenFile, stop, shutdown, [Symbol.asyncDispose]: stop };
}
