/**
 * What `/metrics` reports, in Prometheus' text format (prom-client), per server process: each
 * replica is scraped on its own and a query sums them. Counters and histograms count what this
 * process did; gauges are read when scraped (sessions from the database, so every replica
 * reports the fleet's sessions; links and clients from this process's relay).
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Store } from "./store/types.ts";

/** What the relay knows when scraped. */
export interface RelayCounts {
  agents: number;
  /** Attached clients by mode. */
  clients: { interactive: number; view: number };
  /** Client links passed through to another replica (see replicas.ts). */
  forwarded: number;
}

export interface ServerMetrics {
  readonly registry: Registry;
  /** Bytes the relay passed on: program output sent to clients, input sent to programs. */
  relayBytes: Counter<"direction">;
  /** From a keystroke reaching the server to the session's next output (its echo), as this server sees it. */
  keystrokeEcho: Histogram;
  saveSeconds: Histogram;
  /** Bytes of new content saves and uploads stored (what deduplication did not find). */
  savedBytes: Counter<"kind">;
  saves: Counter<"outcome">;
  /** Claude API tokens sessions used through the proxy. */
  proxyTokens: Counter<"kind">;
  /** Error answers by code (`CattyError` codes). */
  errors: Counter<"code">;
  /** Sessions that ended in this process, by how. */
  ended: Counter<"status">;
  /** Where the gauges read from; set once the app exists. */
  sources(src: Sources): void;
  text(): Promise<string>;
}

interface Sources {
  store: Store;
  relay: () => RelayCounts;
  /** Live replicas as this one sees them. */
  replicas?: () => Promise<number>;
}

export function createMetrics(): ServerMetrics {
  const registry = new Registry();
  const registers = [registry];
  let src: Sources | null = null;

  new Gauge({
    name: "catty_sessions",
    help: "Sessions starting, running or stopping, by status and provider (from the database: the whole fleet).",
    labelNames: ["status", "provider"] as const,
    registers,
    async collect() {
      this.reset();
      if (!src) return;
      for (const s of await src.store.liveSessions()) this.inc({ status: s.status, provider: s.provider });
    },
  });
  new Gauge({
    name: "catty_agent_links",
    help: "Session agents connected to this server.",
    registers,
    collect() {
      this.set(src?.relay().agents ?? 0);
    },
  });
  new Gauge({
    name: "catty_attached_clients",
    help: "Terminals attached through this server, by mode (interactive or view).",
    labelNames: ["mode"] as const,
    registers,
    collect() {
      const counts = src?.relay().clients ?? { interactive: 0, view: 0 };
      this.set({ mode: "interactive" }, counts.interactive);
      this.set({ mode: "view" }, counts.view);
    },
  });
  new Gauge({
    name: "catty_forwarded_clients",
    help: "Terminals that attached through this server and are passed through to the replica relaying their session.",
    registers,
    collect() {
      this.set(src?.relay().forwarded ?? 0);
    },
  });
  new Gauge({
    name: "catty_replicas",
    help: "Live server replicas sharing the database, as this one sees them (1 on SQLite).",
    registers,
    async collect() {
      this.set(src?.replicas ? await src.replicas() : 1);
    },
  });
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory of this server process.",
    registers,
    collect() {
      this.set(process.memoryUsage().rss);
    },
  });
  new Gauge({
    name: "process_cpu_seconds_total",
    help: "CPU time this server process used (user and system).",
    registers,
    collect() {
      const u = process.cpuUsage();
      this.set((u.user + u.system) / 1e6);
    },
  });

  return {
    registry,
    relayBytes: new Counter({ name: "catty_relay_bytes_total", help: "Bytes relayed: program output to clients (to_clients), input to programs (to_programs).", labelNames: ["direction"], registers }),
    keystrokeEcho: new Histogram({
      name: "catty_keystroke_echo_seconds",
      help: "From a keystroke reaching this server to the session's next output (its echo through agent, terminal and program).",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    }),
    saveSeconds: new Histogram({
      name: "catty_save_duration_seconds",
      help: "From a workspace save's request to its completion.",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    }),
    savedBytes: new Counter({ name: "catty_saved_bytes_total", help: "Bytes of new content stored, by kind (save or upload).", labelNames: ["kind"], registers }),
    saves: new Counter({ name: "catty_saves_total", help: "Workspace saves by outcome (stored or refused).", labelNames: ["outcome"], registers }),
    proxyTokens: new Counter({ name: "catty_proxy_tokens_total", help: "Claude API tokens sessions used through this server, by kind.", labelNames: ["kind"], registers }),
    errors: new Counter({ name: "catty_errors_total", help: "Error answers by code.", labelNames: ["code"], registers }),
    ended: new Counter({ name: "catty_sessions_ended_total", help: "Sessions that ended in this server process, by status.", labelNames: ["status"], registers }),
    sources(s) {
      src = s;
    },
    text: () => registry.metrics(),
  };
}
