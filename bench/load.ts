/**
 * Load: one `catty-server` (the compiled binary) on PostgreSQL (a private cluster, see
 * test/helpers/postgres.ts) with local sessions (sandboxed when bubblewrap is there), each running
 * a program that prints `--bytes-per-s` of text; one interactive client attached to every session
 * and `--viewers` read-only clients on the first sessions, all `SessionLink`s (the CLI's own link)
 * in this process. Every `--keystroke-ms` each interactive client types a marker, which the
 * session's terminal echoes (the program never reads its input); its round trip is the time until
 * the marker is back in that client's output, while the output streams.
 *
 * Prints relay throughput (bytes the clients received per second), keystroke round trip p50/p90/
 * p99, the server's CPU (share of one core) and peak resident memory, and errors: output a client
 * never got (gaps in its offsets), links that ended, sessions that did not run. Targets (the
 * issue's, for 200 sessions, 200 clients, 50 viewers): nothing lost, p99 ≤ 10 ms, RSS ≤ 1 GB.
 *
 * `--replicas N` (N > 1) runs N replicas on the same database and an S3 bucket (s3rver, in this
 * process), behind two round-robin TCP balancers (test/helpers/balancer.ts): agents dial one,
 * clients the other, so most clients land on a replica that does not relay their session and are
 * forwarded. CPU and memory are then the replicas' sum.
 *
 *   ./node_modules/.bin/bun bench/load.ts [--sessions 200] [--viewers 50] [--seconds 300] [--bytes-per-s 10240] [--keystroke-ms 1000] [--replicas 1]
 *
 * A soak is the same with `--seconds 3600`. Exits non-zero only when something fails to start.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createApiClient } from "../src/client/api.ts";
import { freshDatabase } from "../test/helpers/postgres.ts";
import { Recorder } from "../test/helpers/recorder.ts";
import { startBalancer, type Balancer } from "../test/helpers/balancer.ts";
import { startS3rver } from "../test/helpers/s3.ts";
import { cleanups, compiledBinaries, cpuSeconds, descendants, killProcessesUnder, memory, percentile, runBench, startServerProcess } from "./harness.ts";

const { values } = parseArgs({
  options: {
    sessions: { type: "string", default: "200" },
    viewers: { type: "string", default: "50" },
    seconds: { type: "string", default: "300" },
    "bytes-per-s": { type: "string", default: "10240" },
    "keystroke-ms": { type: "string", default: "1000" },
    replicas: { type: "string", default: "1" },
  },
});
const REPLICAS = Math.max(1, Number(values.replicas));
const SESSIONS = Number(values.sessions);
const VIEWERS = Math.min(SESSIONS, Number(values.viewers));
const SECONDS = Number(values.seconds);
const RATE = Number(values["bytes-per-s"]);
const KEY_MS = Number(values["keystroke-ms"]);

/** Prints `rate` bytes a second in lines of 100, in ten bursts a second; never reads its input. */
const PRODUCER = `$|=1; my $n=int($ARGV[0]/1000)||1; my $l=("x" x 99)."\\n"; while (1) { print $l x $n; select(undef,undef,undef,0.1) }`;

let balancers: { agents: Balancer; clients: Balancer } | null = null;

interface Client {
  rec: Recorder;
  received: number;
  /** The marker typed last and when, until its echo arrives. */
  pending: { marker: string; at: number } | null;
  tail: string;
}

await runBench("load", (SECONDS + 600) * 1000, async () => {
  const root = mkdtempSync(join(tmpdir(), "catty-bench-load-"));
  cleanups.push({ what: "the bench's directory", run: () => rmSync(root, { recursive: true, force: true }) });
  cleanups.push({ what: "session agents", run: () => killProcessesUnder(root) });
  console.log(`Starting PostgreSQL and ${REPLICAS === 1 ? "catty-server" : `${REPLICAS} catty-server replicas`}…`);
  const databaseUrl = await freshDatabase();
  const bins = await compiledBinaries();
  const env: Record<string, string> = {
    CATTY_DATABASE_URL: databaseUrl,
    CATTY_IDLE_TIMEOUT_MS: String((SECONDS + 600) * 1000),
    CATTY_SESSION_MEMORY_BYTES: String(256 * 1024 ** 2),
    CATTY_MASTER_KEY: "3e".repeat(32),
  };
  let clientUrl: string | null = null;
  if (REPLICAS > 1) {
    const s3 = await startS3rver({ bucket: "catty-load" });
    cleanups.push({ what: "s3rver", run: () => s3.stop() });
    const agents = await startBalancer();
    const clients = await startBalancer();
    cleanups.push({ what: "balancers", run: async () => (await agents.stop(), await clients.stop()) });
    Object.assign(env, s3.serverEnv(), { CATTY_PUBLIC_URL: agents.url });
    clientUrl = clients.url;
    balancers = { agents, clients };
  }
  const servers = [];
  for (let i = 0; i < REPLICAS; i++) servers.push(await startServerProcess(join(root, `server-${i}`), { bin: bins.server, env }));
  const server = servers[0] as (typeof servers)[number];
  balancers?.agents.setBackends(servers.map((s) => s.port));
  balancers?.clients.setBackends(servers.map((s) => s.port));
  const api = createApiClient(server.url, server.token);
  const clientApi = createApiClient(clientUrl ?? server.url, server.token);

  console.log(`Starting ${SESSIONS} sessions, each printing ${RATE} bytes/s…`);
  const t0 = performance.now();
  const labels: string[] = [];
  for (let i = 0; i < SESSIONS; i += 8) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(8, SESSIONS - i) }, () => api.create({ command: ["perl", "-e", PRODUCER, String(RATE)], cols: 120, rows: 40 })),
    );
    labels.push(...batch.map((s) => s.label));
  }
  for (const deadline = Date.now() + 180_000; ; ) {
    const sessions = await api.list();
    const running = sessions.filter((s) => s.status === "running").length;
    if (running === SESSIONS) break;
    const ended = sessions.find((s) => s.status !== "running" && s.status !== "starting");
    if (ended || Date.now() > deadline) {
      throw new Error(`only ${running} of ${SESSIONS} sessions run${ended ? `; ${ended.label} is ${ended.status}: ${ended.endReason}` : " after 3 minutes"}`);
    }
    await Bun.sleep(500);
  }
  console.log(`  all running after ${Math.round((performance.now() - t0) / 1000)} s`);

  const rtts: number[] = [];
  let ended = 0;
  const attach = (label: string, mode: "interactive" | "view"): Client => {
    const client: Client = { rec: undefined as unknown as Recorder, received: 0, pending: null, tail: "" };
    client.rec = new Recorder({
      url: clientApi.attachUrl(label),
      token: server.token,
      mode,
      offset: null,
      keepText: false,
      cols: 120,
      rows: 40,
      onOutput: (data, at) => {
        client.received += data.length;
        if (!client.pending) return;
        const text = client.tail + Buffer.from(data).toString("latin1");
        if (text.includes(client.pending.marker)) {
          rtts.push(at - client.pending.at);
          client.pending = null;
        }
        client.tail = text.slice(-8);
      },
    });
    void client.rec.outcome.then(() => ended++);
    return client;
  };
  const interactive = labels.map((l) => attach(l, "interactive"));
  const viewers = labels.slice(0, VIEWERS).map((l) => attach(l, "view"));
  const all = [...interactive, ...viewers];
  cleanups.push({ what: "clients", run: () => all.forEach((c) => c.rec.close()) });
  await Bun.sleep(5_000); // (the clients catch up on the screens; then the window starts)

  console.log(`Measuring for ${SECONDS} s: ${interactive.length} interactive clients, ${viewers.length} viewers…`);
  let seq = 0;
  const typist = setInterval(() => {
    for (const c of interactive) {
      if (c.pending) continue; // the last one is not back yet: counted when it is
      const marker = `K${(seq++ % 36 ** 5).toString(36).padStart(5, "0")}`;
      c.pending = { marker, at: performance.now() };
      c.tail = "";
      c.rec.send(marker);
    }
  }, KEY_MS);
  const serverPids = servers.map((s) => s.pid);
  const echoBefore = await echoBuckets(servers.map((x) => x.url));
  const cpuBefore = cpuSeconds(serverPids);
  // The sessions' own processes (agents, sandboxes, programs) run on this machine too.
  const sessionPids = serverPids.flatMap((pid) => descendants(pid));
  const sessionsCpuBefore = cpuSeconds(sessionPids);
  const benchCpuBefore = process.cpuUsage();
  const bytesBefore = all.reduce((a, c) => a + c.received, 0);
  let peakRss = 0;
  const windowStart = performance.now();
  while (performance.now() - windowStart < SECONDS * 1000) {
    peakRss = Math.max(peakRss, serverPids.reduce((a, pid) => a + (memory(pid)?.rssKb ?? 0), 0) / 1024);
    await Bun.sleep(1000);
  }
  clearInterval(typist);
  const echo = diffBuckets(await echoBuckets(servers.map((x) => x.url)), echoBefore);
  const elapsed = (performance.now() - windowStart) / 1000;
  const cpu = ((cpuSeconds(serverPids) - cpuBefore) / elapsed) * 100;
  const sessionsCpu = ((cpuSeconds(sessionPids) - sessionsCpuBefore) / elapsed) * 100;
  const benchUsage = process.cpuUsage(benchCpuBefore);
  const benchCpu = ((benchUsage.user + benchUsage.system) / 1e6 / elapsed) * 100;
  const bytes = all.reduce((a, c) => a + c.received, 0) - bytesBefore;
  const unanswered = interactive.filter((c) => c.pending && performance.now() - c.pending.at > 5_000).length;
  const lost = all.reduce((a, c) => a + c.rec.gaps.reduce((g, x) => g + Math.max(0, x.got - x.expected), 0), 0);
  const sorted = rtts.sort((a, b) => a - b);
  const ms = (x: number): string => `${x.toFixed(1)} ms`;

  console.log("");
  console.log(`${SESSIONS} sessions × ${RATE} B/s, ${interactive.length} interactive clients, ${viewers.length} viewers, ${Math.round(elapsed)} s, ${REPLICAS === 1 ? "one replica on PostgreSQL" : `${REPLICAS} replicas on PostgreSQL and S3, clients and agents through round-robin balancers`}`);
  console.log(`relay throughput   ${(bytes / elapsed / 1024 / 1024).toFixed(2)} MB/s to clients (${((SESSIONS + VIEWERS) * RATE / 1024 / 1024).toFixed(2)} MB/s produced for them)`);
  console.log(`keystroke round trip  p50 ${ms(percentile(sorted, 50))}  p90 ${ms(percentile(sorted, 90))}  p99 ${ms(percentile(sorted, 99))}  (${sorted.length} keystrokes; target p99 ≤ 10 ms)`);
  console.log(
    `  of which the servers saw   p50 ≤ ${bucketMs(echo, 0.5)}  p99 ≤ ${bucketMs(echo, 0.99)}  (keystroke reaching the server to the session's next output, from /metrics)`,
  );
  console.log(`server${REPLICAS > 1 ? "s (sum)" : "      "}      ${cpu.toFixed(0)} % of a core, peak ${peakRss.toFixed(0)} MB resident (target ≤ 1024 MB)`);
  console.log(`the same machine   sessions' processes ${sessionsCpu.toFixed(0)} %, this bench's clients ${benchCpu.toFixed(0)} % of a core (${navigator.hardwareConcurrency} cores)`);
  console.log(`errors             ${lost} bytes never received, ${ended} links ended, ${unanswered} keystrokes not echoed within 5 s (target: none)`);
});

/** The servers' `catty_keystroke_echo_seconds` histogram, summed: cumulative count per upper bound. */
async function echoBuckets(urls: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const url of urls) {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const m of text.matchAll(/^catty_keystroke_echo_seconds_bucket\{le="([^"]+)"\} (\d+)/gm)) {
      out.set(m[1] as string, (out.get(m[1] as string) ?? 0) + Number(m[2]));
    }
  }
  return out;
}

function diffBuckets(after: Map<string, number>, before: Map<string, number>): Map<string, number> {
  return new Map([...after].map(([le, n]) => [le, n - (before.get(le) ?? 0)]));
}

/** The bucket bound a quantile falls under, in ms ("> 1000 ms" past the last bound). */
function bucketMs(buckets: Map<string, number>, q: number): string {
  const total = buckets.get("+Inf") ?? 0;
  if (total === 0) return "n/a";
  for (const [le, n] of buckets) if (le !== "+Inf" && n >= q * total) return `${Number(le) * 1000} ms`;
  return "> 1000 ms";
}
