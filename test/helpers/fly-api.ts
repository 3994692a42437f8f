/**
 * A stand-in for Fly's Machines API (no Fly account is reachable from here), serving the paths
 * and shapes the Fly provider uses, as documented at
 * https://fly.io/docs/machines/api/machines-resource/: create, get, wait, delete (with `force`),
 * and list with a `metadata.<key>` filter. It checks the bearer token, records every request, and
 * keeps Machines in memory with their states. With `run`, a created Machine's process is started
 * for real on this host: `run(config)` gets the Machine's config (image, env) and returns the
 * process, whose exit makes the Machine `stopped`, then destroyed when `auto_destroy` is set.
 */
import type { Subprocess } from "bun";
import { serveRecorded, type RecordedApiRequest } from "./api-stand-in.ts";

export type FlyRequest = RecordedApiRequest;

export interface FlyMachineConfig {
  image: string;
  env: Record<string, string>;
  guest?: { cpu_kind?: string; cpus?: number; memory_mb?: number };
  auto_destroy?: boolean;
  restart?: { policy?: string };
  metadata?: Record<string, string>;
}

interface Machine {
  id: string;
  name: string;
  region: string;
  state: string;
  config: FlyMachineConfig;
  proc: Subprocess | null;
  exitCode: number | null;
}

export interface FlyStandIn {
  url: string;
  app: string;
  token: string;
  requests: FlyRequest[];
  machines: Map<string, Machine>;
  /** The next create answers this instead (status and Fly's `{ error }`). */
  failNextCreate: { status: number; error: string } | null;
  /** While set, new Machines stay `created`: a wait for `started` times out (408). */
  neverStart: boolean;
  /** A Machine made by someone else (another server, or an earlier run of this one). */
  addMachine(m: { id: string; name: string; region: string; metadata: Record<string, string>; state?: string }): void;
  stop(): void;
}

export function startFlyStandIn(opts: { app?: string; token?: string; run?: (config: FlyMachineConfig, id: string) => Subprocess } = {}): FlyStandIn {
  const app = opts.app ?? "catty-sessions";
  const token = opts.token ?? `fly-token-${crypto.randomUUID()}`;
  const machines = new Map<string, Machine>();
  const requests: FlyRequest[] = [];
  const error = (status: number, message: string): Response => Response.json({ error: message }, { status });
  const view = (m: Machine) => ({
    id: m.id,
    name: m.name,
    state: m.state,
    region: m.region,
    instance_id: `inst-${m.id}`,
    config: m.config,
    events: m.exitCode === null ? [] : [{ type: "exit", status: "stopped", request: { exit_event: { exit_code: m.exitCode, oom_killed: false } } }],
  });
  const state: FlyStandIn = {
    url: "",
    app,
    token,
    requests,
    machines,
    failNextCreate: null,
    neverStart: false,
    addMachine(m) {
      machines.set(m.id, { id: m.id, name: m.name, region: m.region, state: m.state ?? "started", config: { image: "x", env: {}, metadata: m.metadata }, proc: null, exitCode: null });
    },
    stop() {
      server.stop(true);
      for (const m of machines.values()) m.proc?.kill("SIGKILL");
    },
  };
  const server = serveRecorded(
    requests,
    (req, url, body) => {
      if (req.headers.get("authorization") !== `Bearer ${token}`) return error(401, "unauthorized");
      const prefix = `/v1/apps/${app}/machines`;
      if (!url.pathname.startsWith(prefix)) return error(404, `app not found`);
      const rest = url.pathname.slice(prefix.length).split("/").filter(Boolean);
      if (rest.length === 0 && req.method === "GET") {
        const filters = [...url.searchParams].filter(([k]) => k.startsWith("metadata.")).map(([k, v]) => [k.slice("metadata.".length), v] as const);
        const list = [...machines.values()].filter((m) => m.state !== "destroyed" && filters.every(([k, v]) => m.config.metadata?.[k] === v));
        return Response.json(list.map(view));
      }
      if (rest.length === 0 && req.method === "POST") {
        if (state.failNextCreate) {
          const f = state.failNextCreate;
          state.failNextCreate = null;
          return error(f.status, f.error);
        }
        const b = body as { name?: string; region?: string; config?: FlyMachineConfig } | undefined;
        if (!b?.config?.image) return error(400, "config.image is required");
        const id = crypto.randomUUID().replace(/-/g, "").slice(0, 14);
        const m: Machine = { id, name: b.name ?? `m-${id}`, region: b.region ?? "iad", state: "created", config: b.config, proc: null, exitCode: null };
        machines.set(id, m);
        if (!state.neverStart) {
          m.state = "started";
          if (opts.run) {
            m.proc = opts.run(b.config, id);
            void m.proc.exited.then((code) => {
              m.exitCode = code;
              m.state = m.config.auto_destroy ? "destroyed" : "stopped";
            });
          }
        }
        return Response.json(view(m));
      }
      const m = machines.get(rest[0] ?? "");
      if (!m || m.state === "destroyed") return error(404, "machine not found");
      if (rest.length === 1 && req.method === "GET") return Response.json(view(m));
      if (rest.length === 2 && rest[1] === "wait" && req.method === "GET") {
        const want = url.searchParams.get("state") ?? "started";
        return m.state === want ? Response.json({ ok: true }) : error(408, `timed out waiting for machine to reach ${want}`);
      }
      if (rest.length === 1 && req.method === "DELETE") {
        if (m.state === "started" && url.searchParams.get("force") !== "true") return error(412, "machine is running; stop it or use force=true");
        m.proc?.kill("SIGKILL");
        m.state = "destroyed";
        return Response.json({ ok: true });
      }
      return error(404, `no route ${req.method} ${url.pathname}`);
    },
    () => error(400, "invalid JSON body"),
  );
  state.url = `http://127.0.0.1:${server.port}`;
  return state;
}
