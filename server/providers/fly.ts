/**
 * Fly Machines provider: one Machine per session, from the session image (`image/`, pushed to a
 * registry Fly pulls from), in the Fly region of the session's region, through the Machines API
 * (https://fly.io/docs/machines/api/machines-resource/):
 *
 * - create: `POST /v1/apps/{app}/machines` with the image, the agent's environment, the guest
 *   size from the session limits, `auto_destroy` (the Machine goes when the agent exits), no
 *   restarts, and metadata naming the session and this server;
 * - wait: `GET …/machines/{id}/wait?state=started` (a Machine that does not start is destroyed);
 * - check: `GET …/machines/{id}` (its state; 404 once destroyed);
 * - destroy: `DELETE …/machines/{id}?force=true`;
 * - reconcile: `GET …/machines?metadata.catty-server={id}`, destroying Machines no session owns.
 *
 * As in Docker, the agent is the image's entrypoint and runs as root inside the Machine; it starts
 * the program as the image's unprivileged user with a uid of the session's own. The agent dials
 * the server's public URL. The API token is sent to the Machines API only and never logged.
 */
import type { Log } from "../../src/lib/log.ts";
import type { AgentTuning } from "../../src/protocol/agent-env.ts";
import { CattyError, type FlyMachine, type MachineHandle } from "../../src/protocol/index.ts";
import type { Region } from "../regions.ts";
import { imageAgentEnv } from "./docker.ts";
import type { SessionLimits } from "./sandbox.ts";
import type { MachineSpec, Provider } from "./types.ts";

export interface FlyProviderOptions {
  /** The Machines API (`https://api.machines.dev`). */
  api: string;
  app: string;
  token: string;
  image: string;
  /** Each with its Fly region code as `place`. */
  regions: readonly Region[];
  limits: SessionLimits;
  tuning: AgentTuning;
  /** Names this server in its Machines' metadata. */
  serverId: string;
  log: Log;
  /** How long a new Machine may take to start (default 60 s, the API's longest wait). */
  startTimeoutSec?: number;
}

/** Metadata keys on every session Machine. */
export const FLY_METADATA = { session: "catty-session", server: "catty-server" } as const;
/** Machine states in which it exists and may run (or is about to). */
const ALIVE = new Set(["created", "starting", "started", "replacing", "updating"]);
/** Attempts for requests that may be repeated (reads, deletes) when Fly answers 429 or 5xx. */
const ATTEMPTS = 3;

interface FlyMachineInfo {
  id: string;
  name?: string;
  state?: string;
  region?: string;
  config?: { metadata?: Record<string, string> };
  events?: Array<{ type?: string; status?: string; request?: { exit_event?: { exit_code?: number; oom_killed?: boolean } } }>;
}

class FlyApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const fly = (machine: MachineHandle): FlyMachine | null => (machine.provider === "fly" ? machine : null);

/** Memory in MB as Fly takes it: a multiple of 256. */
export const flyMemoryMb = (bytes: number): number => Math.max(256, Math.ceil(bytes / (256 * 1024 * 1024)) * 256);

export function createFlyProvider(opts: FlyProviderOptions): Provider {
  const { log } = opts;
  const base = `${opts.api.replace(/\/+$/, "")}/v1/apps/${encodeURIComponent(opts.app)}/machines`;

  const call = async <T>(method: string, path: string, body?: unknown, retry = method !== "POST"): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      let res: Response;
      try {
        res = await fetch(`${base}${path}`, {
          method,
          headers: { Authorization: `Bearer ${opts.token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(90_000),
        });
      } catch (err) {
        if (retry && attempt < ATTEMPTS) continue;
        throw new FlyApiError(0, `the Machines API at ${opts.api} cannot be reached (${(err as Error).message})`);
      }
      if (res.ok) return (res.status === 204 ? undefined : await res.json().catch(() => undefined)) as T;
      const text = await res.text().catch(() => "");
      if (retry && attempt < ATTEMPTS && (res.status === 429 || res.status >= 500)) {
        await Bun.sleep(250 * attempt);
        continue;
      }
      let message = text.slice(0, 300);
      try {
        const parsed = JSON.parse(text) as { error?: unknown };
        if (typeof parsed.error === "string") message = parsed.error;
      } catch {
        // not JSON
      }
      throw new FlyApiError(res.status, `the Machines API answered ${res.status}${message ? `: ${message}` : ""}`);
    }
  };
  const machinePath = (m: FlyMachine): string => `/${encodeURIComponent(m.id)}`;
  const get = async (m: FlyMachine): Promise<FlyMachineInfo | null> => {
    try {
      return await call<FlyMachineInfo>("GET", machinePath(m));
    } catch (err) {
      if (err instanceof FlyApiError && err.status === 404) return null;
      throw err;
    }
  };
  const remove = async (m: { id: string }): Promise<void> => {
    try {
      await call("DELETE", `/${encodeURIComponent(m.id)}?force=true`);
    } catch (err) {
      if (!(err instanceof FlyApiError && err.status === 404)) throw err;
    }
  };

  return {
    name: "fly",
    regions: opts.regions,
    isolated: true,
    async start(spec: MachineSpec) {
      const place = spec.region.place;
      if (!place) throw new CattyError("internal", `The region ${spec.region.id} has no Fly region (CATTY_REGIONS: ${spec.region.id}=iad, say).`);
      const env = imageAgentEnv(spec, opts.tuning, { pids: opts.limits.pids });
      const request = {
        name: `catty-${spec.label}-${crypto.randomUUID().slice(0, 8)}`,
        region: place,
        config: {
          image: opts.image,
          env,
          guest: { cpu_kind: "shared", cpus: opts.limits.cpus, memory_mb: flyMemoryMb(opts.limits.memoryBytes) },
          auto_destroy: true,
          restart: { policy: "no" },
          metadata: { [FLY_METADATA.session]: spec.label, [FLY_METADATA.server]: opts.serverId },
        },
      };
      let created: FlyMachineInfo;
      try {
        created = await call<FlyMachineInfo>("POST", "", request);
      } catch (err) {
        throw new CattyError("unavailable", `Fly could not create the session's Machine in ${spec.region.name} (${place}): ${(err as Error).message}.`, "Try again, or another region (catty regions).");
      }
      if (typeof created?.id !== "string") throw new CattyError("unavailable", "Fly created a Machine but did not say its id.");
      const machine: FlyMachine = { provider: "fly", app: opts.app, id: created.id, region: created.region && /^[a-z]{3}$/.test(created.region) ? created.region : place };
      try {
        await call("GET", `${machinePath(machine)}/wait?state=started&timeout=${opts.startTimeoutSec ?? 60}`);
      } catch (err) {
        await remove(machine).catch((e: unknown) => log.warn("could not destroy a Fly Machine that did not start", { machine: machine.id, err: e }));
        throw new CattyError("unavailable", `The session's Fly Machine did not start: ${(err as Error).message}.`, "Try again, or another region (catty regions).");
      }
      log.info("Fly Machine started", { label: spec.label, machine: machine.id, region: machine.region });
      return machine;
    },
    async isAlive(machine) {
      const m = fly(machine);
      if (!m) return false;
      try {
        const info = await get(m);
        return info !== null && ALIVE.has(info.state ?? "");
      } catch (err) {
        // Fly cannot say right now: the Machine may well run; ask again later.
        log.warn("could not check a session's Fly Machine", { machine: m.id, err: (err as Error).message });
        return true;
      }
    },
    async whyGone(machine) {
      const m = fly(machine);
      if (!m) return null;
      const info = await get(m).catch(() => undefined);
      if (info === undefined) return null;
      if (info === null) return `its Fly Machine ${m.id} no longer exists`;
      const exit = info.events?.find((e) => e.request?.exit_event)?.request?.exit_event;
      if (exit?.oom_killed) return `its Fly Machine ${m.id} ran out of memory`;
      return `its Fly Machine ${m.id} is ${info.state ?? "in an unknown state"}${exit?.exit_code !== undefined ? ` (exit code ${exit.exit_code})` : ""}`;
    },
    async destroy(machine) {
      const m = fly(machine);
      if (m) await remove(m);
    },
    async release(machine) {
      const m = fly(machine);
      if (m) await remove(m);
    },
    async reconcile(live, liveLabels) {
      const keep = new Set(live.flatMap((m) => (m.provider === "fly" ? [m.id] : [])));
      const mine = await call<FlyMachineInfo[]>("GET", `?metadata.${FLY_METADATA.server}=${encodeURIComponent(opts.serverId)}`);
      for (const m of Array.isArray(mine) ? mine : []) {
        if (keep.has(m.id) || m.config?.metadata?.[FLY_METADATA.server] !== opts.serverId) continue;
        if (liveLabels.has(m.config?.metadata?.[FLY_METADATA.session] ?? "")) continue;
        log.warn("destroying a Fly Machine with no live session", { machine: m.id, name: m.name });
        await remove(m).catch((err: unknown) => log.warn("could not destroy a Fly Machine", { machine: m.id, err: (err as Error).message }));
      }
    },
  };
}
