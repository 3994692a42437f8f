/**
 * `catty-server` configuration, read once into a frozen object. Every setting is declared in
 * `SERVER_SETTINGS` (a zod schema tagged with its flag and environment variables, see
 * src/protocol/settings.ts); the README's table is generated from that declaration
 * (`settingsTable(SERVER_SETTINGS)`). Precedence: flags > environment > defaults. A bad value
 * throws a `SettingsError` naming the flag or variable; `catty-server` prints it and exits 1.
 */
import type { SandboxMode, SessionLimits } from "./providers/sandbox.ts";
import { parseEgressAllow, type AllowEntry, type EgressPolicy } from "../src/lib/egress.ts";
import { join } from "node:path";
import { z } from "zod";
import type { Level } from "../src/lib/log.ts";
import { cattyHome } from "../src/lib/paths.ts";
import { readAgentTuning, type AgentTuning } from "../src/protocol/agent-env.ts";
import { regionName, RegionId } from "../src/protocol/session.ts";
import { FLY_REGIONS, parseRegions, singleRegion, type Region } from "./regions.ts";
import { parseTrustedProxies } from "./client-address.ts";
import {
  enumSetting,
  intSetting,
  LOG_LEVELS,
  optionalString,
  readSettings,
  setting,
  SettingsError,
  stringSetting,
  type SettingsOf,
} from "../src/protocol/settings.ts";
import type { S3BlobStoreOptions } from "./blobs/s3.ts";

const portSetting = (fallback: number): z.ZodType<number, string | undefined> =>
  intSetting(fallback).pipe(z.number().max(65_535, { error: "must be a port number (0 to 65535)" }));

/** 32 bytes as 64 hex characters or in base64 (as `parseMasterKey` reads them). */
const isKey32 = (v: string): boolean => /^[0-9a-fA-F]{64}$/.test(v.trim()) || /^[A-Za-z0-9+/_-]{43}=?$/.test(v.trim());

const urlSetting = (): z.ZodType<string | undefined, string | undefined> =>
  optionalString().refine((v) => v === undefined || /^https?:\/\/[^/\s]+/.test(v), {
    error: "must be an http:// or https:// URL",
  });

/** Every setting of `catty-server`, in the order the README lists them. */
export const SERVER_SETTINGS = {
  port: setting(portSetting(4815), { flag: "port", env: ["CATTY_PORT"], doc: "port to listen on (0: any free port)" }),
  host: setting(stringSetting("127.0.0.1"), { flag: "host", env: ["CATTY_HOST"], doc: "address to bind (with TLS: the HTTPS and HTTP ports' address, `0.0.0.0` unless given; `--port` stays on loopback)" }),
  domain: setting(
    optionalString().refine((v) => v === undefined || /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z0-9-]{2,}$/.test(v), {
      error: "must be a domain name such as catty.example.com (lowercase, no scheme or port)",
    }),
    {
      flag: "domain",
      env: ["CATTY_DOMAIN"],
      doc: "serve HTTPS for this name with a certificate obtained and renewed by itself over ACME (its DNS must point here, ports 443 and 80 open); HTTP redirects to HTTPS; sets the public URL",
      shown: "none",
    },
  ),
  acmeDirectory: setting(stringSetting("https://acme-v02.api.letsencrypt.org/directory").pipe(z.string().regex(/^https:\/\/[^/\s]+/, { error: "must be an https:// URL" })), {
    env: ["CATTY_ACME_DIRECTORY"],
    doc: "with `--domain`: the ACME directory of the certificate authority (Let's Encrypt's staging: `https://acme-staging-v02.api.letsencrypt.org/directory`)",
    shown: "Let's Encrypt",
  }),
  acmeEmail: setting(optionalString(), { env: ["CATTY_ACME_EMAIL"], doc: "with `--domain`: a contact address the certificate authority may write to about the certificate", shown: "none" }),
  acmeRenewDays: setting(intSetting(30, 1), { env: ["CATTY_ACME_RENEW_DAYS"], doc: "with `--domain`: renew the certificate this many days before it expires" }),
  tlsCert: setting(optionalString(), {
    flag: "tls-cert",
    env: ["CATTY_TLS_CERT"],
    doc: "serve HTTPS with this PEM certificate chain (with `--tls-key`; reloaded on SIGHUP or when the file changes); with `--domain`, it serves the names it is for (a wildcard for `CATTY_PREVIEW_DOMAIN`) and `--domain` the rest",
    shown: "none",
  }),
  tlsKey: setting(optionalString(), { flag: "tls-key", env: ["CATTY_TLS_KEY"], doc: "the private key of `--tls-cert`, PEM", shown: "none" }),
  httpsPort: setting(portSetting(443), { flag: "https-port", env: ["CATTY_HTTPS_PORT"], doc: "with TLS: the HTTPS port" }),
  httpPort: setting(portSetting(80), { flag: "http-port", env: ["CATTY_HTTP_PORT"], doc: "with TLS: the HTTP port, which redirects to HTTPS and answers the ACME HTTP-01 challenge" }),
  dataDir: setting(optionalString(), {
    flag: "data-dir",
    env: ["CATTY_DATA_DIR"],
    doc: "data directory: database, session workspaces, saves (mode 0700)",
    shown: "`$CATTY_HOME/server` (`~/.catty/server`)",
  }),
  databaseUrl: setting(
    optionalString().refine((v) => v === undefined || /^postgres(ql)?:\/\/\S+$/.test(v), { error: "must be a postgres:// or postgresql:// URL" }),
    {
      flag: "database-url",
      env: ["CATTY_DATABASE_URL"],
      doc: "keep the database in PostgreSQL (`postgres://user:password@host:5432/catty`) instead of SQLite in the data dir; several replicas may share it",
      shown: "SQLite: `<data dir>/catty.db`",
    },
  ),
  publicUrl: setting(urlSetting(), {
    env: ["CATTY_PUBLIC_URL"],
    doc: "the server's public URL: session agents dial it, and requests to its host are taken to have come with its scheme (`https://`: cookies are `Secure`, HSTS is sent, device links use it)",
    shown: "`http://127.0.0.1:<port>`",
  }),
  notifyUrl: setting(optionalString().refine((v) => v === undefined || /^https?:\/\/[^/\s]+/.test(v), { error: "must be an http:// or https:// URL" }), {
    env: ["CATTY_NOTIFY_URL"],
    doc: "a webhook that gets each new request of the inbox (and each answer): JSON events, or ntfy messages with Allow/Deny buttons (`CATTY_NOTIFY_FORMAT`)",
    shown: "none",
  }),
  notifyFormat: setting(enumSetting(["json", "ntfy"] as const, "json"), {
    env: ["CATTY_NOTIFY_FORMAT"],
    doc: "what `CATTY_NOTIFY_URL` gets: `json` events, or `ntfy` messages (the URL names the topic: `https://ntfy.sh/my-topic`)",
  }),
  previewDomain: setting(
    optionalString().refine((v) => v === undefined || /^(?=.{1,200}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$/.test(v), {
      error: "must be a domain name such as preview.example.com (lowercase, no scheme or port)",
    }),
    {
      env: ["CATTY_PREVIEW_DOMAIN"],
      doc: "preview links at `https://LABEL-PORT.<domain>/` (a wildcard DNS record and certificate for `*.<domain>` pointing at this server); without it they are `http://LABEL-PORT.localhost:<port>/`, which browsers send to this machine's loopback",
      shown: "none",
    },
  ),
  internalUrl: setting(urlSetting(), {
    env: ["CATTY_INTERNAL_URL"],
    doc: "with several replicas: the URL the other replicas reach this one at (on the cluster's private network; for example `http://$(POD_IP):8080`)",
    shown: "`http://<host>:<port>` (`:<internal port>` with `CATTY_INTERNAL_PORT`)",
  }),
  internalKey: setting(optionalString().refine((v) => v === undefined || isKey32(v), { error: "must be 32 bytes as 64 hex characters or base64 (`openssl rand -hex 32`)" }), {
    env: ["CATTY_INTERNAL_KEY"],
    doc: "with several replicas (needed on PostgreSQL): the key replicas sign their calls to each other with, the same on every replica and not the master key: 32 bytes as hex or base64 (`openssl rand -hex 32`)",
    shown: "none",
  }),
  internalPort: setting(portSetting(0), {
    env: ["CATTY_INTERNAL_PORT"],
    doc: "with several replicas: serve the replicas' calls to each other (`/v1/internal`) on this port of `--host` only, not on `--port` (0: on `--port`)",
  }),
  trustedProxies: setting(
    optionalString().refine(
      (v) => {
        if (v === undefined) return true;
        try {
          parseTrustedProxies(v);
          return true;
        } catch {
          return false;
        }
      },
      { error: "must be the proxies' IP addresses or CIDR ranges, comma-separated (192.168.1.7,10.2.0.15)" },
    ),
    {
      env: ["CATTY_TRUSTED_PROXIES"],
      doc: "load balancers or proxies in front of the server (IPs or CIDRs, comma-separated) whose `X-Forwarded-For` names the client, for per-address limits, and whose `X-Forwarded-Proto` the scheme the client used (name only the proxy itself, never a range sessions live in)",
      shown: "none: the connection's address",
    },
  ),
  replicaDeadMs: setting(intSetting(10_000, 500), {
    env: ["CATTY_REPLICA_DEAD_MS"],
    unit: "ms",
    doc: "with several replicas: how long a replica may miss its heartbeats (sent five times as often) before the others take over its sessions and duties",
  }),
  agentBin: setting(optionalString(), {
    env: ["CATTY_AGENT_BIN"],
    doc: "the `catty-agent` executable the local provider starts",
    shown: "beside `catty-server`",
  }),
  agentLostMs: setting(intSetting(120_000, 1), { env: ["CATTY_AGENT_LOST_MS"], unit: "ms", doc: "how long a session may be without its agent (machine still alive) before it fails" }),
  stopTimeoutMs: setting(intSetting(60_000, 1), { env: ["CATTY_STOP_TIMEOUT_MS"], unit: "ms", doc: "how long a stop waits for the program and its final save before the machine is destroyed" }),
  maxUploadBytes: setting(intSetting(1_000_000_000, 1), { env: ["CATTY_MAX_UPLOAD_BYTES"], unit: "bytes", doc: "cap on the new content one `catty new` may upload (content already stored costs nothing)" }),
  maxSaveBytes: setting(intSetting(4 * 1024 ** 3, 1), { env: ["CATTY_MAX_SAVE_BYTES"], unit: "bytes", doc: "cap on the new content one workspace save may add" }),
  retentionDays: setting(intSetting(30, 1), {
    env: ["CATTY_SAVE_RETENTION_DAYS"],
    doc: "how long saves are kept: every save of the last hour, hourly for a day, then daily for this many days (a session's latest save stays)",
  }),
  masterKey: setting(optionalString(), {
    env: ["CATTY_MASTER_KEY"],
    doc: "the key that wraps each user's save key: 32 bytes as hex or base64 (`openssl rand -hex 32`); keep it safe, saves do not open without it",
    shown: "made on first start in `<data dir>/master-key`",
  }),
  idleTimeoutMs: setting(intSetting(2 * 3_600_000, 1000), { env: ["CATTY_IDLE_TIMEOUT_MS"], unit: "ms", doc: "default time without input or output before a session stops" }),
  minDurationMs: setting(intSetting(3_600_000, 1000), { env: ["CATTY_MIN_DURATION_MS"], unit: "ms", doc: "shortest maximum duration a session may ask for" }),
  maxDurationMs: setting(intSetting(8 * 3_600_000, 1000), { env: ["CATTY_MAX_DURATION_MS"], unit: "ms", doc: "longest maximum duration a session may ask for" }),
  tickMs: setting(intSetting(5_000, 100), { env: ["CATTY_LIFECYCLE_TICK_MS"], unit: "ms", doc: "how often idle and duration limits are checked" }),
  s3Bucket: setting(optionalString(), {
    flag: "s3-bucket",
    env: ["CATTY_S3_BUCKET"],
    doc: "keep saves and uploads in this S3 bucket instead of the data dir",
  }),
  s3Endpoint: setting(urlSetting(), {
    flag: "s3-endpoint",
    env: ["CATTY_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"],
    doc: "S3-compatible endpoint",
    shown: "AWS",
  }),
  s3Region: setting(stringSetting("us-east-1"), {
    env: ["CATTY_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"],
    doc: "S3 region",
  }),
  s3Prefix: setting(optionalString(), { flag: "s3-prefix", env: ["CATTY_S3_PREFIX"], doc: "folder inside the bucket holding every key" }),
  s3AccessKeyId: setting(optionalString(), {
    env: ["CATTY_S3_ACCESS_KEY_ID"],
    doc: "S3 access key (with `CATTY_S3_SECRET_ACCESS_KEY`, optionally `CATTY_S3_SESSION_TOKEN`); beats the AWS_* pair",
  }),
  s3SecretAccessKey: setting(optionalString(), { env: ["CATTY_S3_SECRET_ACCESS_KEY"], doc: "S3 secret key" }),
  s3SessionToken: setting(optionalString(), { env: ["CATTY_S3_SESSION_TOKEN"], doc: "S3 session token" }),
  awsAccessKeyId: setting(optionalString(), { env: ["AWS_ACCESS_KEY_ID"], doc: "S3 access key when `CATTY_S3_ACCESS_KEY_ID` is unset" }),
  awsSecretAccessKey: setting(optionalString(), { env: ["AWS_SECRET_ACCESS_KEY"], doc: "its secret key" }),
  awsSessionToken: setting(optionalString(), { env: ["AWS_SESSION_TOKEN"], doc: "its session token" }),
  provider: setting(enumSetting(["local", "docker", "kubernetes", "fly"] as const, "local"), {
    flag: "provider",
    env: ["CATTY_PROVIDER"],
    doc: "where sessions run: local (processes on this host, sandboxed), docker (a container each), kubernetes (a Pod each) or fly (a Fly Machine each)",
  }),
  region: setting(stringSetting("local").pipe(RegionId), {
    flag: "region",
    env: ["CATTY_REGION"],
    doc: "the region name sessions of this server report (local and Docker: their one region)",
  }),
  regions: setting(optionalString(), {
    env: ["CATTY_REGIONS"],
    doc: "the regions sessions may run in, the first the default: `id=place,…` (Fly: `us-east=iad,frankfurt=fra`; the place is the provider's region)",
    shown: "fly: us-east=iad, us-west=sjc, london=lhr, frankfurt=fra, sydney=syd, tokyo=nrt; else `--region`",
  }),
  k8sImage: setting(optionalString(), { env: ["CATTY_K8S_IMAGE"], doc: "Kubernetes: the session image, as the cluster pulls it" }),
  k8sNamespace: setting(optionalString().refine((v) => v === undefined || /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v), { error: "must be a Kubernetes namespace name" }), {
    env: ["CATTY_K8S_NAMESPACE"],
    doc: "Kubernetes: the namespace of session Pods, never the server's own (in the cluster: `<server's namespace>-sessions`, else the kubeconfig context's)",
    shown: "`<server's namespace>-sessions`",
  }),
  k8sRegionLabel: setting(stringSetting("topology.kubernetes.io/region"), {
    env: ["CATTY_K8S_REGION_LABEL"],
    doc: "Kubernetes: the node label a region's place selects (CATTY_REGIONS=eu=europe-west1)",
  }),
  k8sPullSecret: setting(optionalString(), { env: ["CATTY_K8S_PULL_SECRET"], doc: "Kubernetes: an image pull secret for the session image" }),
  flyApp: setting(optionalString(), { env: ["CATTY_FLY_APP"], doc: "Fly: the app session Machines are created in" }),
  flyApiToken: setting(optionalString(), { env: ["CATTY_FLY_API_TOKEN", "FLY_API_TOKEN"], doc: "Fly: an API token for that app (`fly tokens create deploy`)" }),
  flyImage: setting(optionalString(), { env: ["CATTY_FLY_IMAGE"], doc: "Fly: the session image in a registry Fly pulls from (`registry.fly.io/<app>:<tag>`)" }),
  flyApi: setting(stringSetting("https://api.machines.dev").pipe(z.string().regex(/^https?:\/\/[^/\s]+/, { error: "must be an http:// or https:// URL" })), {
    env: ["CATTY_FLY_API"],
    doc: "Fly: the Machines API",
  }),
  dockerHost: setting(stringSetting("unix:///var/run/docker.sock"), {
    env: ["DOCKER_HOST"],
    doc: "the Docker engine: a unix:// socket or tcp:// address",
  }),
  dockerImage: setting(stringSetting("catty-session:latest"), {
    flag: "docker-image",
    env: ["CATTY_DOCKER_IMAGE"],
    doc: "the session image (`npm run session-image` builds it)",
  }),
  dockerNetwork: setting(stringSetting("bridge"), {
    flag: "docker-network",
    env: ["CATTY_DOCKER_NETWORK"],
    doc: "the network session containers join, a bridge network (agents dial `CATTY_PUBLIC_URL` there); `host`: the host's, with `CATTY_SESSION_EGRESS=all` only (then agents reach a loopback server)",
  }),
  anthropicApiKey: setting(optionalString(), {
    env: ["CATTY_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"],
    doc: "the Claude API key sessions use through the server (it never enters a session)",
    shown: "none: no API access",
  }),
  anthropicUpstream: setting(stringSetting("https://api.anthropic.com").pipe(z.string().regex(/^https?:\/\/[^/\s]+/, { error: "must be an http:// or https:// URL" })), {
    env: ["CATTY_ANTHROPIC_UPSTREAM"],
    doc: "the Claude API the server forwards to",
  }),
  sandbox: setting(enumSetting(["auto", "bwrap", "none"] as const, "auto"), {
    flag: "sandbox",
    env: ["CATTY_SANDBOX"],
    doc: "isolation of local sessions: bwrap (bubblewrap), none, or auto (bwrap when installed)",
  }),
  sessionMemoryBytes: setting(intSetting(4 * 1024 ** 3, 64 * 1024 ** 2), { env: ["CATTY_SESSION_MEMORY_BYTES"], unit: "bytes", doc: "memory of one session's processes together" }),
  sessionCpus: setting(intSetting(2, 1), { env: ["CATTY_SESSION_CPUS"], doc: "CPUs one session may use" }),
  sessionPids: setting(intSetting(512, 16), { env: ["CATTY_SESSION_PIDS"], doc: "processes and threads one session may have" }),
  sessionDiskBytes: setting(intSetting(0), {
    env: ["CATTY_SESSION_DISK_BYTES"],
    unit: "bytes",
    doc: "disk of one session (0: no limit): local sessions get a file system of this size for their workspace, home and agent (needs a server running as root); Docker the size of a container's writable layer, where the engine's storage can limit it (overlay2 on xfs with pquota)",
    shown: "0",
  }),
  sessionEgress: setting(enumSetting(["public", "all", "none"] as const, "public"), {
    env: ["CATTY_SESSION_EGRESS"],
    doc: "what sessions reach on the network: public (the internet, not private, loopback or link-local ranges: no metadata service, no host services), all, or none (DNS too); Catty's Claude API proxy always",
  }),
  sessionEgressAllow: setting(
    optionalString().refine(
      (v) => {
        try {
          parseEgressAllow(v);
          return true;
        } catch {
          return false;
        }
      },
      { error: "must be host:port, IP addresses or CIDR ranges, comma-separated (mirror.internal:443,10.1.0.0/16)" },
    ),
    { env: ["CATTY_SESSION_EGRESS_ALLOW"], doc: "what sessions may reach beside the egress policy (an internal package mirror): host:port, IP or CIDR, comma-separated", shown: "none" },
  ),
  logLevel: setting(enumSetting(LOG_LEVELS, "info"), {
    env: ["CATTY_LOG_LEVEL"],
    doc: "log level (debug, info, warn, error); also passed to every session's agent",
  }),
  logFormat: setting(enumSetting(["text", "json"] as const, "text"), {
    env: ["CATTY_LOG_FORMAT"],
    doc: "log lines as text, or as JSON objects (one per line, with the request's or session's id)",
  }),
  metricsToken: setting(optionalString(), {
    env: ["CATTY_METRICS_TOKEN"],
    doc: "a bearer token `/metrics` asks for",
    shown: "none: `/metrics` is open",
  }),
} as const;

export type ServerSettings = SettingsOf<typeof SERVER_SETTINGS>;

/** Flags of `catty-server serve` as citty declares them, one per setting that has a flag. */
export function serverFlags(): Record<string, { type: "string"; description: string }> {
  const out: Record<string, { type: "string"; description: string }> = {};
  for (const { info } of Object.values(SERVER_SETTINGS)) {
    if (info.flag) out[info.flag] = { type: "string", description: `${info.doc} (${(info.env ?? []).join(", ")})` };
  }
  return out;
}

export interface TlsConfig {
  /** The HTTPS and HTTP listeners' address: `--host` when given, else every interface. */
  host: string;
  httpsPort: number;
  /** Redirects to HTTPS and answers ACME HTTP-01 challenges. */
  httpPort: number;
  /** `--domain`: a certificate obtained over ACME for it. */
  domain: string | null;
  acme: Readonly<{ directory: string; email: string | null; renewDays: number }>;
  /** `--tls-cert` and `--tls-key`: a certificate the operator brings. */
  files: Readonly<{ cert: string; key: string }> | null;
}

export interface SessionTimeouts {
  /** Default time without input or output before a session stops. */
  idleTimeoutMs: number;
  /** The range a session's maximum duration may take. */
  minDurationMs: number;
  maxDurationMs: number;
  /** How often the limits are checked. */
  tickMs: number;
}

export interface ServerConfig {
  port: number;
  host: string;
  /** Resolved: `--data-dir`, `CATTY_DATA_DIR`, else `$CATTY_HOME/server`. */
  dataDir: string;
  /** PostgreSQL's URL; null keeps the database in SQLite in the data dir. */
  databaseUrl: string | null;
  publicUrl: string | undefined;
  /** HTTPS served by the server itself (`--domain`, `--tls-cert`); null: plain HTTP on `port`. */
  tls: Readonly<TlsConfig> | null;
  /** `CATTY_PREVIEW_DOMAIN`: preview links live under it; null: under `localhost`. */
  previewDomain: string | null;
  /** `CATTY_NOTIFY_URL` and `CATTY_NOTIFY_FORMAT`: the inbox's webhook; null: none. */
  notify: { url: string; format: "json" | "ntfy" } | null;
  /** Where the other replicas reach this one; unset: the address it listens on. */
  internalUrl: string | undefined;
  /** `CATTY_INTERNAL_KEY` as given: replicas sign their calls to each other with it; set whenever `databaseUrl` is. */
  internalKey: string | undefined;
  /** A port of its own for `/v1/internal`; null: served on `port`. */
  internalPort: number | null;
  replicaDeadMs: number;
  /** `CATTY_TRUSTED_PROXIES` as given. */
  trustedProxies: string | undefined;
  agentBin: string | undefined;
  agentLostMs: number;
  stopTimeoutMs: number;
  maxUploadBytes: number;
  maxSaveBytes: number;
  retentionDays: number;
  /** `CATTY_MASTER_KEY` as given; unset: `<dataDir>/master-key`. */
  masterKey: string | undefined;
  timeouts: Readonly<SessionTimeouts>;
  /** S3 storage when a bucket is configured; null keeps blobs in the data dir. */
  s3: Readonly<S3BlobStoreOptions> | null;
  logLevel: Level;
  logFormat: "text" | "json";
  metricsToken: string | null;
  /** Agent tuning from the server's environment, written into every session agent's environment. */
  agentTuning: AgentTuning;
  provider: "local" | "docker" | "kubernetes" | "fly";
  kubernetes: Readonly<{ image: string; namespace: string | null; regionLabel: string; pullSecret: string | null }> | null;
  /** Where sessions may run; the first is the default. */
  regions: readonly Region[];
  fly: Readonly<{ app: string; apiToken: string; image: string; api: string }> | null;
  /** Claude API access for sessions: the operator's key (null: none) and where requests go. */
  apiAccess: Readonly<{ apiKey: string | null; upstream: string }>;
  region: string;
  docker: Readonly<{ host: string; image: string; network: string }>;
  /** How local sessions are isolated, and their limits (the limits apply to every provider). */
  sandbox: SandboxMode;
  sessionLimits: Readonly<SessionLimits>;
  /** A session's disk: local sessions' file system, Docker's writable layer (when the engine's storage can limit it). */
  sessionDiskBytes: number | undefined;
  /** What sessions reach on the network, and what beside it (server/providers/network.ts). */
  egress: Readonly<{ policy: EgressPolicy; allow: readonly AllowEntry[]; /** Set by the operator (not the default). */ asked: boolean }>;
}

/** Reads the configuration once. Throws `SettingsError` naming the flag or variable at fault. */
export function readServerConfig(
  flags: Record<string, string | undefined>,
  env: NodeJS.ProcessEnv = process.env,
): Readonly<ServerConfig> {
  const s = readSettings(SERVER_SETTINGS, { flags, env });
  const tls = tlsOptions(s, flags.host || env.CATTY_HOST ? s.host : "0.0.0.0");
  if (s.minDurationMs > s.maxDurationMs) {
    throw new SettingsError(
      `CATTY_MIN_DURATION_MS (${s.minDurationMs}) is larger than CATTY_MAX_DURATION_MS (${s.maxDurationMs}).`,
    );
  }
  if (s.databaseUrl && !s.internalKey) {
    throw new SettingsError(
      "CATTY_DATABASE_URL is set, so replicas may share this database, and they sign their calls to each other with CATTY_INTERNAL_KEY: " +
        "set it to a key of its own (`openssl rand -hex 32`), the same on every replica.",
    );
  }
  if (s.internalKey && s.masterKey && s.internalKey.trim() === s.masterKey.trim()) {
    throw new SettingsError("CATTY_INTERNAL_KEY is the master key: give it a key of its own (`openssl rand -hex 32`), the same on every replica.");
  }
  return Object.freeze({
    port: s.port,
    host: s.host,
    dataDir: s.dataDir ?? join(cattyHome(env), "server"),
    databaseUrl: s.databaseUrl ?? null,
    publicUrl: s.publicUrl?.replace(/\/+$/, "") ?? (tls?.domain ? `https://${tls.domain}${tls.httpsPort === 443 ? "" : `:${tls.httpsPort}`}` : undefined),
    tls,
    previewDomain: s.previewDomain ?? null,
    notify: s.notifyUrl ? { url: s.notifyUrl, format: s.notifyFormat } : null,
    internalUrl: s.internalUrl?.replace(/\/+$/, ""),
    internalKey: s.internalKey,
    internalPort: s.internalPort > 0 ? s.internalPort : null,
    replicaDeadMs: s.replicaDeadMs,
    trustedProxies: s.trustedProxies,
    agentBin: s.agentBin,
    agentLostMs: s.agentLostMs,
    stopTimeoutMs: s.stopTimeoutMs,
    maxUploadBytes: s.maxUploadBytes,
    maxSaveBytes: s.maxSaveBytes,
    retentionDays: s.retentionDays,
    masterKey: s.masterKey,
    timeouts: Object.freeze({
      idleTimeoutMs: s.idleTimeoutMs,
      minDurationMs: s.minDurationMs,
      maxDurationMs: s.maxDurationMs,
      tickMs: s.tickMs,
    }),
    s3: s3Options(s),
    logLevel: s.logLevel,
    logFormat: s.logFormat,
    metricsToken: s.metricsToken ?? null,
    agentTuning: readAgentTuning(env),
    provider: s.provider,
    regions: Object.freeze(s.regions ? parseRegions(s.regions) : s.provider === "fly" ? flyDefaultRegions() : singleRegion(s.region)),
    fly: flyOptions(s),
    kubernetes: kubernetesOptions(s),
    apiAccess: Object.freeze({ apiKey: s.anthropicApiKey ?? null, upstream: s.anthropicUpstream.replace(/\/+$/, "") }),
    region: s.region,
    docker: Object.freeze({ host: s.dockerHost, image: s.dockerImage, network: s.dockerNetwork }),
    sandbox: s.sandbox,
    sessionLimits: Object.freeze({ memoryBytes: s.sessionMemoryBytes, cpus: s.sessionCpus, pids: s.sessionPids }),
    sessionDiskBytes: s.sessionDiskBytes > 0 ? s.sessionDiskBytes : undefined,
    egress: Object.freeze({
      policy: s.sessionEgress,
      allow: Object.freeze(parseEgressAllow(s.sessionEgressAllow)),
      asked: !!(env.CATTY_SESSION_EGRESS || env.CATTY_SESSION_EGRESS_ALLOW),
    }),
  });
}

/** Kubernetes settings, checked when it is the provider; null otherwise. */
function kubernetesOptions(s: ServerSettings): ServerConfig["kubernetes"] {
  if (s.provider !== "kubernetes") return null;
  if (!s.k8sImage) throw new SettingsError("--provider kubernetes needs CATTY_K8S_IMAGE (the session image, as the cluster pulls it).");
  return Object.freeze({ image: s.k8sImage, namespace: s.k8sNamespace ?? null, regionLabel: s.k8sRegionLabel, pullSecret: s.k8sPullSecret ?? null });
}

const flyDefaultRegions = (): Region[] => Object.entries(FLY_REGIONS).map(([id, place]) => ({ id, name: regionName(id), place }));

/** Fly settings, checked when it is the provider; null otherwise. */
function flyOptions(s: ServerSettings): ServerConfig["fly"] {
  if (s.provider !== "fly") return null;
  const missing = [
    ["CATTY_FLY_APP", s.flyApp],
    ["CATTY_FLY_API_TOKEN", s.flyApiToken],
    ["CATTY_FLY_IMAGE", s.flyImage],
  ].filter(([, v]) => !v).map(([k]) => k);
  if (missing.length > 0) throw new SettingsError(`--provider fly needs ${missing.join(", ")}.`);
  if (s.regions) {
    for (const r of parseRegions(s.regions)) {
      if (!r.place || !/^[a-z]{3}$/.test(r.place)) throw new SettingsError(`CATTY_REGIONS: the region "${r.id}" needs its Fly region (${r.id}=iad, say).`);
    }
  }
  return Object.freeze({ app: s.flyApp as string, apiToken: s.flyApiToken as string, image: s.flyImage as string, api: s.flyApi.replace(/\/+$/, "") });
}

/**
 * S3 options, or null without a bucket. Credentials come as a pair, never mixed: Catty's
 * (`CATTY_S3_ACCESS_KEY_ID` + `CATTY_S3_SECRET_ACCESS_KEY`) when its key is set, else the AWS pair.
 */
function s3Options(s: ServerSettings): Readonly<S3BlobStoreOptions> | null {
  if (!s.s3Bucket) return null;
  const catty = s.s3AccessKeyId !== undefined;
  const [accessKeyId, secretAccessKey, sessionToken] = catty
    ? [s.s3AccessKeyId, s.s3SecretAccessKey, s.s3SessionToken]
    : [s.awsAccessKeyId, s.awsSecretAccessKey, s.awsSessionToken];
  if (accessKeyId !== undefined && secretAccessKey === undefined) {
    const [key, secret] = catty
      ? ["CATTY_S3_ACCESS_KEY_ID", "CATTY_S3_SECRET_ACCESS_KEY"]
      : ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
    throw new SettingsError(`${key} is set but ${secret} is not: set both, or neither.`);
  }
  const options: S3BlobStoreOptions = { bucket: s.s3Bucket, region: s.s3Region };
  if (s.s3Endpoint !== undefined) options.endpoint = s.s3Endpoint;
  if (accessKeyId !== undefined) options.accessKeyId = accessKeyId;
  if (secretAccessKey !== undefined) options.secretAccessKey = secretAccessKey;
  if (sessionToken !== undefined) options.sessionToken = sessionToken;
  if (s.s3Prefix !== undefined) options.prefix = s.s3Prefix;
  return Object.freeze(options);
}

/** TLS settings when the server serves HTTPS itself; null otherwise. */
function tlsOptions(s: ServerSettings, host: string): TlsConfig | null {
  if ((s.tlsCert === undefined) !== (s.tlsKey === undefined)) throw new SettingsError("--tls-cert and --tls-key go together: give both, the certificate chain and its private key.");
  if (!s.domain && !s.tlsCert) return null;
  if (s.httpsPort === s.httpPort) throw new SettingsError(`--https-port and --http-port are both ${s.httpsPort}: give them different ports.`);
  return Object.freeze({
    host,
    httpsPort: s.httpsPort,
    httpPort: s.httpPort,
    domain: s.domain ?? null,
    acme: Object.freeze({ directory: s.acmeDirectory, email: s.acmeEmail ?? null, renewDays: s.acmeRenewDays }),
    files: s.tlsCert && s.tlsKey ? Object.freeze({ cert: s.tlsCert, key: s.tlsKey }) : null,
  });
}
