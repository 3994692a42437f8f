/**
 * What replicas sharing a database must also share, and the check a replica makes when it starts
 * (replicas.ts, `checkTopology`): each says of itself where saves are kept, where session machines
 * run, and which master key opens saves (`GET /v1/internal/replica`), and a newcomer whose
 * deployment the others could not serve refuses to start, saying what to change, instead of
 * losing saves or clients later:
 *
 * - saves on a replica's own disk: the other replicas cannot read them (an agent's packs land on
 *   whichever replica the load balancer picks), so replicas need one S3 bucket;
 * - machines bound to a host (the local provider; Docker on a local socket) on replicas on other
 *   hosts: a replica watches a session's machine by its process or container, which another host
 *   does not have;
 * - another master key: saves one replica made would not open on the others.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { z } from "zod";
import type { ServerConfig } from "./config.ts";

/** A deployment replicas cannot serve, or an internal URL that does not reach its replica: the server does not start. */
export class TopologyError extends Error {}

/** What a replica says of itself to the others. */
export const ReplicaAbout = z.object({
  id: z.string(),
  /** Where saves are kept: `s3 <endpoint> <bucket>/<prefix>`, or `disk` (the replica's own). */
  storage: z.string(),
  /** Where session machines run and are watched: the provider, and the host for one bound to a host. */
  machines: z.string(),
  /** A fingerprint of the master key (not the key). */
  masterKey: z.string(),
});
export type ReplicaAbout = z.infer<typeof ReplicaAbout>;

/** The running kernel's boot id (shared by the containers on one host); null where there is none. */
function bootId(): string | null {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim().slice(0, 8) || null;
  } catch {
    return null;
  }
}

/**
 * Where this replica runs: `kernel` for what a host's containers share (a Docker socket), else this
 * host or container (local processes are seen through its process table).
 */
function thisHost(scope: "kernel" | "processes"): string {
  const boot = bootId();
  if (scope === "kernel" && boot) return `the kernel booted as ${boot}`;
  return boot ? `${hostname()} (boot ${boot})` : hostname();
}

/** What this replica says of itself, from its configuration and its master key. */
export function aboutThisReplica(config: ServerConfig, masterKey: Uint8Array): Omit<ReplicaAbout, "id"> {
  const s3 = config.s3;
  const storage = s3 ? `s3 ${s3.endpoint ?? "aws"} ${s3.bucket}/${s3.prefix ?? ""}` : "disk";
  const machines = ((): string => {
    switch (config.provider) {
      case "local":
        return `local processes on ${thisHost("processes")}`;
      case "docker":
        return config.docker.host.startsWith("unix:") ? `docker ${config.docker.host} on ${thisHost("kernel")}` : `docker ${config.docker.host}`;
      case "kubernetes":
        return `kubernetes ${config.kubernetes?.namespace ?? "(the current context's namespace)"}`;
      case "fly":
        return `fly ${config.fly?.app ?? ""}`;
      default:
        return String(config.provider);
    }
  })();
  const masterKeyPrint = createHash("sha256").update("catty master key fingerprint\n").update(masterKey).digest("hex").slice(0, 16);
  return { storage, machines, masterKey: masterKeyPrint };
}

/** Why this replica (`mine`) cannot serve alongside the one at `url` (`theirs`); null when it can. */
export function topologyProblem(mine: ReplicaAbout, theirs: ReplicaAbout, url: string): string | null {
  if (mine.storage === "disk") {
    return (
      `this replica keeps saves on its own disk (no --s3-bucket), and another replica (${url}) shares its database: ` +
      "the replicas could not read each other's saves. Give every replica the same S3 bucket (--s3-bucket, CATTY_S3_BUCKET), or run one replica on this database."
    );
  }
  if (theirs.storage === "disk") {
    return (
      `the replica at ${url} keeps saves on its own disk (no --s3-bucket), and shares this database: the replicas could not read each other's saves. ` +
      "Stop it and start every replica with the same S3 bucket (--s3-bucket, CATTY_S3_BUCKET)."
    );
  }
  if (mine.storage !== theirs.storage) {
    return `saves go to ${mine.storage} here and to ${theirs.storage} on the replica at ${url}: give every replica the same S3 endpoint, bucket and prefix.`;
  }
  if (mine.machines !== theirs.machines) {
    return (
      `sessions run as ${mine.machines} here and as ${theirs.machines} on the replica at ${url}: a replica takes over sessions only where it can reach their machines. ` +
      "Run every replica with the same provider, on one host for local sessions (or Docker on a local socket), or use a provider they share (Docker at one address, Kubernetes, Fly)."
    );
  }
  if (mine.masterKey !== theirs.masterKey) {
    return `the replica at ${url} opens saves with another master key: give every replica the same CATTY_MASTER_KEY.`;
  }
  return null;
}
