/**
 * A small client of the Docker Engine API (version 1.41, Docker 20.10 and later) over its unix
 * socket or plain TCP, with Bun's `fetch` (`unix` option): the calls the Docker provider and the
 * session-image script make, typed to the fields they read. No `docker` CLI involved.
 *
 * `DOCKER_HOST` forms: `unix:///var/run/docker.sock` (the default) or `tcp://host:2375`. TLS
 * (`DOCKER_TLS_VERIFY`) is not supported: put the engine's socket on the server's host instead.
 */
import { z } from "zod";

const API = "/v1.41";

export class DockerError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "DockerError";
  }
}

export const ContainerInspect = z.object({
  Id: z.string(),
  Name: z.string(),
  State: z.object({
    Status: z.string(),
    Running: z.boolean(),
    ExitCode: z.number(),
    OOMKilled: z.boolean().optional(),
    Error: z.string().optional(),
    /** The entrypoint's pid on the engine's host (0 when not running). */
    Pid: z.number().optional(),
  }),
  Config: z.object({ Labels: z.record(z.string(), z.string()).nullable().optional() }),
});
export type ContainerInspect = z.infer<typeof ContainerInspect>;

const ContainerSummary = z.object({
  Id: z.string(),
  Names: z.array(z.string()).nullable().optional(),
  State: z.string(),
  Labels: z.record(z.string(), z.string()).nullable().optional(),
});
export type ContainerSummary = z.infer<typeof ContainerSummary>;

/** The part of `POST /containers/create` the provider fills in. */
export interface ContainerSpec {
  Image: string;
  Env: string[];
  Labels: Record<string, string>;
  Hostname?: string;
  HostConfig: {
    NetworkMode?: string;
    Memory?: number;
    MemorySwap?: number;
    NanoCpus?: number;
    PidsLimit?: number;
    CapDrop?: string[];
    CapAdd?: string[];
    SecurityOpt?: string[];
    ReadonlyRootfs?: boolean;
    LogConfig?: { Type: string; Config: Record<string, string> };
    RestartPolicy?: { Name: string };
    StorageOpt?: Record<string, string>;
  };
}

export interface DockerClient {
  /** Where the engine is, for messages. */
  readonly host: string;
  ping(): Promise<void>;
  /** Creates and starts a container; resolves to its id. */
  run(name: string, spec: ContainerSpec): Promise<string>;
  /** The container, or null when it does not exist. */
  inspect(id: string): Promise<ContainerInspect | null>;
  /** Containers (running or not) carrying every one of `labels` (`key` or `key=value`). */
  list(labels: string[]): Promise<ContainerSummary[]>;
  /** Removes a container, killing it if it runs; a missing container is not an error. */
  remove(id: string): Promise<void>;
  /** Whether an image exists. */
  hasImage(ref: string): Promise<boolean>;
  /** `docker import`: a root file system tarball becomes an image. */
  importImage(ref: string, rootfs: ReadableStream<Uint8Array> | Blob, changes: string[]): Promise<void>;
  /** `docker build` from a tar context; `onLine` receives the build's output. */
  build(ref: string, context: ReadableStream<Uint8Array> | Blob, onLine?: (line: string) => void): Promise<void>;
  /** `docker rmi`; a missing image is not an error. */
  removeImage(ref: string): Promise<void>;
}

/** Parses `DOCKER_HOST` into what `fetch` needs. */
export function dockerEndpoint(host: string): { base: string; unix?: string } {
  if (host.startsWith("unix://")) return { base: "http://docker", unix: host.slice("unix://".length) };
  if (host.startsWith("tcp://")) return { base: `http://${host.slice("tcp://".length).replace(/\/+$/, "")}` };
  if (host.startsWith("/")) return { base: "http://docker", unix: host };
  throw new Error(`DOCKER_HOST ${JSON.stringify(host)} is not a unix:// socket or a tcp:// address`);
}

export const DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock";

export function createDockerClient(host: string = DEFAULT_DOCKER_HOST): DockerClient {
  const endpoint = dockerEndpoint(host);

  const call = async (method: string, path: string, init: { body?: ReadableStream<Uint8Array> | Blob | string; json?: unknown; headers?: Record<string, string> } = {}): Promise<Response> => {
    const headers: Record<string, string> = { ...init.headers };
    let body = init.body;
    if (init.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(init.json);
    }
    let res: Response;
    try {
      res = await fetch(`${endpoint.base}${API}${path}`, {
        method,
        headers,
        body: body ?? null,
        ...(endpoint.unix ? { unix: endpoint.unix } : {}),
        // Large request bodies (images, build contexts) stream.
        ...(body instanceof ReadableStream ? { duplex: "half" } : {}),
      } as RequestInit);
    } catch (err) {
      throw new DockerError(0, `cannot reach the Docker engine at ${host}: ${(err as Error).message}. Is dockerd running, and may this user use its socket?`);
    }
    return res;
  };

  const fail = async (res: Response, what: string): Promise<never> => {
    const text = await res.text().catch(() => "");
    let message = text.trim();
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? message;
    } catch {
      // not JSON
    }
    throw new DockerError(res.status, `${what}: ${message || `HTTP ${res.status}`}`);
  };

  /** Reads a JSON-lines progress stream (import, build); an `error` line fails the call. */
  const progress = async (res: Response, what: string, onLine?: (line: string) => void): Promise<void> => {
    if (!res.ok) await fail(res, what);
    const text = await res.text();
    for (const raw of text.split("\n")) {
      if (!raw.trim()) continue;
      let line: { stream?: string; status?: string; error?: string; errorDetail?: { message?: string } };
      try {
        line = JSON.parse(raw);
      } catch {
        continue;
      }
      if (line.error || line.errorDetail) throw new DockerError(500, `${what}: ${line.errorDetail?.message ?? line.error}`);
      const out = line.stream ?? line.status;
      if (out && onLine) for (const l of out.split("\n")) if (l.trim()) onLine(l);
    }
  };

  return {
    host,
    async ping() {
      const res = await call("GET", "/_ping");
      if (!res.ok) await fail(res, "Docker engine ping");
      await res.arrayBuffer();
    },
    async run(name, spec) {
      const created = await call("POST", `/containers/create?name=${encodeURIComponent(name)}`, { json: spec });
      if (!created.ok) await fail(created, `creating container ${name}`);
      const { Id } = z.object({ Id: z.string() }).parse(await created.json());
      const started = await call("POST", `/containers/${Id}/start`);
      if (!started.ok && started.status !== 304) {
        const error = await fail(started, `starting container ${name}`).catch((err: unknown) => err);
        await this.remove(Id).catch(() => {});
        throw error;
      }
      await started.arrayBuffer();
      return Id;
    },
    async inspect(id) {
      const res = await call("GET", `/containers/${encodeURIComponent(id)}/json`);
      if (res.status === 404) {
        await res.arrayBuffer();
        return null;
      }
      if (!res.ok) await fail(res, `inspecting container ${id}`);
      return ContainerInspect.parse(await res.json());
    },
    async list(labels) {
      const filters = encodeURIComponent(JSON.stringify({ label: labels }));
      const res = await call("GET", `/containers/json?all=1&filters=${filters}`);
      if (!res.ok) await fail(res, "listing containers");
      return z.array(ContainerSummary).parse(await res.json());
    },
    async remove(id) {
      const res = await call("DELETE", `/containers/${encodeURIComponent(id)}?force=1&v=1`);
      if (res.status === 404) {
        await res.arrayBuffer();
        return;
      }
      // 409: a removal is already under way.
      if (!res.ok && res.status !== 409) await fail(res, `removing container ${id}`);
      await res.arrayBuffer();
    },
    async hasImage(ref) {
      const res = await call("GET", `/images/${encodeURIComponent(ref)}/json`);
      await res.arrayBuffer();
      if (res.status === 404) return false;
      if (!res.ok) throw new DockerError(res.status, `inspecting image ${ref}: HTTP ${res.status}`);
      return true;
    },
    async importImage(ref, rootfs, changes) {
      const [repo, tag = "latest"] = splitRef(ref);
      const query = new URLSearchParams({ fromSrc: "-", repo, tag });
      for (const change of changes) query.append("changes", change);
      const res = await call("POST", `/images/create?${query}`, { body: rootfs, headers: { "content-type": "application/x-tar" } });
      await progress(res, `importing image ${ref}`);
    },
    async build(ref, context, onLine) {
      const query = new URLSearchParams({ t: ref, rm: "1", forcerm: "1" });
      const res = await call("POST", `/build?${query}`, { body: context, headers: { "content-type": "application/x-tar" } });
      await progress(res, `building image ${ref}`, onLine);
    },
    async removeImage(ref) {
      const res = await call("DELETE", `/images/${encodeURIComponent(ref)}?force=1`);
      await res.arrayBuffer();
      if (!res.ok && res.status !== 404) throw new DockerError(res.status, `removing image ${ref}: HTTP ${res.status}`);
    },
  };
}

/** `repo:tag` → [repo, tag]; a registry port (`host:5000/repo`) is not a tag. */
function splitRef(ref: string): [string, string | undefined] {
  const slash = ref.lastIndexOf("/");
  const colon = ref.lastIndexOf(":");
  return colon > slash ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, undefined];
}
