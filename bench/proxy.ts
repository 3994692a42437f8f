/**
 * The Claude API proxy: a streamed Messages API answer fetched directly from the Anthropic API
 * stand-in (test/helpers/anthropic.ts, in a process of its own) and through a real `catty-server`
 * process's `/v1/anthropic` with a session's token, in one run, taking turns.
 *
 * - time to first token (the first `content_block_delta` at the client) and total time, p50 and
 *   p99 of each path, and the proxy's overhead (paired rounds); target: first-token overhead
 *   p50 ≤ 2 ms;
 * - unbuffered: with the stand-in pausing `--gap-ms` between deltas, the gaps seen at the client
 *   through the proxy (deltas arriving together would mean a buffer);
 * - `--streams` concurrent streams (default 200) through one server: wall time, all complete, and
 *   the server's CPU time per stream (from /proc).
 *
 *   ./node_modules/.bin/bun bench/proxy.ts [--rounds 200] [--streams 200] [--gap-ms 20] [--bin-dir DIR]
 *
 * Cleans up everything it started, and exits non-zero only when something failed.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createApiClient } from "../src/client/api.ts";
import {
  benchTempDir,
  cleanups,
  compiledBinaries,
  cpuSeconds,
  freePort,
  killAndWait,
  percentile,
  runBench,
  startServerProcess,
  waitForPort,
  wholeNumbers,
  withDeadline,
} from "./harness.ts";

const TARGET_OVERHEAD_MS = 2;
const OVERALL_TIMEOUT_MS = 10 * 60_000;
const BODY = JSON.stringify({ model: "claude-bench", max_tokens: 256, stream: true, messages: [{ role: "user", content: "hi" }] });

/** Starts the stand-in as a process of its own; resolves to its URL. */
async function standIn(deltas: number, gapMs: number): Promise<string> {
  const port = freePort();
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "..", "test", "helpers", "anthropic.ts"), String(port), String(deltas), String(gapMs)], {
    stdout: "ignore",
    stderr: "inherit",
  });
  cleanups.push({ what: "Anthropic API stand-in", run: () => killAndWait(proc) });
  await waitForPort(port, proc, "the stand-in", () => "");
  return `http://127.0.0.1:${port}`;
}

interface Timing {
  firstMs: number;
  totalMs: number;
  /** When each delta arrived, ms from the request. */
  deltas: number[];
}

/** One streamed answer: when the first delta and the end arrived. */
async function stream(url: string, headers: Record<string, string>): Promise<Timing> {
  const start = performance.now();
  const res = await fetch(`${url}/v1/messages`, { method: "POST", headers: { "content-type": "application/json", "anthropic-version": "2023-06-01", ...headers }, body: BODY });
  if (!res.ok || !res.body) throw new Error(`${url}: HTTP ${res.status} ${await res.text()}`);
  const decoder = new TextDecoder();
  const deltas: number[] = [];
  let text = "";
  let firstMs = NaN;
  for await (const chunk of res.body) {
    const at = performance.now() - start;
    text += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = text.indexOf("\n\n")) !== -1) {
      const event = text.slice(0, i);
      text = text.slice(i + 2);
      if (event.includes("content_block_delta")) {
        deltas.push(at);
        if (Number.isNaN(firstMs)) firstMs = at;
      }
    }
  }
  if (Number.isNaN(firstMs)) throw new Error(`${url}: no delta in the answer`);
  return { firstMs, totalMs: performance.now() - start, deltas };
}

const stats = (xs: number[]): { p50: number; p99: number } => {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99) };
};
const ms = (v: number): string => `${v.toFixed(2)} ms`.padStart(11);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { rounds: { type: "string", default: "200" }, streams: { type: "string", default: "200" }, "gap-ms": { type: "string", default: "20" }, "bin-dir": { type: "string" } },
  });
  const { rounds, streams, "gap-ms": gapMs } = wholeNumbers(values, { rounds: 1, streams: 1, "gap-ms": 1 });
  const tmp = benchTempDir("catty-bench-proxy-");
  const bins = await compiledBinaries(values["bin-dir"]);
  const fast = await standIn(20, 0);
  const key = "sk-ant-bench-operator";
  const server = await startServerProcess(join(tmp, "server"), {
    bin: bins.server,
    env: { CATTY_SANDBOX: "none", CATTY_ANTHROPIC_API_KEY: key, CATTY_ANTHROPIC_UPSTREAM: fast },
  });
  // A session, for its proxy token (the program writes it where the bench can read it).
  const api = createApiClient(server.url, server.token);
  const session = await api.create({ command: ["sh", "-c", 'printf %s "$ANTHROPIC_AUTH_TOKEN" > token.tmp && mv token.tmp token && exec sleep 86400'] });
  cleanups.push({ what: "the session", run: () => api.stop(session.label) });
  const tokenFile = join(tmp, "server", "sessions", session.label, "workspace", "token");
  const token = await withDeadline(
    (async () => {
      while (!existsSync(tokenFile)) await Bun.sleep(20);
      return readFileSync(tokenFile, "utf8");
    })(),
    30_000,
    "the session's proxy token",
  );
  const proxy = `${server.url}/v1/anthropic`;
  const direct = { url: fast, headers: { "x-api-key": key } };
  const through = { url: proxy, headers: { authorization: `Bearer ${token}` } };

  // First token and total, paired rounds taking turns.
  for (let i = 0; i < 20; i++) {
    await stream(direct.url, direct.headers);
    await stream(through.url, through.headers);
  }
  const d: Timing[] = [];
  const p: Timing[] = [];
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) {
      d.push(await stream(direct.url, direct.headers));
      p.push(await stream(through.url, through.headers));
    } else {
      p.push(await stream(through.url, through.headers));
      d.push(await stream(direct.url, direct.headers));
    }
  }
  const overhead = stats(p.map((x, i) => x.firstMs - (d[i] as Timing).firstMs));
  console.log(`streamed answer, 20 deltas (n=${rounds})        p50        p99`);
  console.log(`direct: first token                  ${ms(stats(d.map((x) => x.firstMs)).p50)}${ms(stats(d.map((x) => x.firstMs)).p99)}`);
  console.log(`through catty: first token           ${ms(stats(p.map((x) => x.firstMs)).p50)}${ms(stats(p.map((x) => x.firstMs)).p99)}`);
  console.log(`direct: whole answer                 ${ms(stats(d.map((x) => x.totalMs)).p50)}${ms(stats(d.map((x) => x.totalMs)).p99)}`);
  console.log(`through catty: whole answer          ${ms(stats(p.map((x) => x.totalMs)).p50)}${ms(stats(p.map((x) => x.totalMs)).p99)}`);
  console.log(`first-token overhead (paired)        ${ms(overhead.p50)}${ms(overhead.p99)}   (target: p50 ≤ ${TARGET_OVERHEAD_MS} ms: ${overhead.p50 <= TARGET_OVERHEAD_MS ? "met" : "missed"})`);

  // Unbuffered: a stand-in that pauses between deltas; through the proxy the pauses must survive.
  const slow = await standIn(10, gapMs);
  const slowServerDir = join(tmp, "server-slow");
  mkdirSync(slowServerDir, { recursive: true });
  const slowServer = await startServerProcess(slowServerDir, { bin: bins.server, env: { CATTY_SANDBOX: "none", CATTY_ANTHROPIC_API_KEY: key, CATTY_ANTHROPIC_UPSTREAM: slow } });
  const slowApi = createApiClient(slowServer.url, slowServer.token);
  const s2 = await slowApi.create({ command: ["sh", "-c", 'printf %s "$ANTHROPIC_AUTH_TOKEN" > token.tmp && mv token.tmp token && exec sleep 86400'] });
  cleanups.push({ what: "the second session", run: () => slowApi.stop(s2.label) });
  const token2File = join(slowServerDir, "sessions", s2.label, "workspace", "token");
  while (!existsSync(token2File)) await Bun.sleep(20);
  const t = await stream(`${slowServer.url}/v1/anthropic`, { authorization: `Bearer ${readFileSync(token2File, "utf8")}` });
  const gaps = t.deltas.slice(1).map((at, i) => at - (t.deltas[i] as number));
  const together = gaps.filter((g) => g < gapMs / 4).length;
  console.log(`\nunbuffered: stand-in pauses ${gapMs} ms between 10 deltas; gaps at the client through catty: ${gaps.map((g) => g.toFixed(1)).join(" ")} ms`);
  console.log(`  deltas that arrived together (gap < ${gapMs / 4} ms): ${together} (0: nothing held back)`);

  // Concurrency: many streams at once through one server.
  const cpuBefore = cpuSeconds([server.pid]);
  const t0 = performance.now();
  const all = await Promise.allSettled(Array.from({ length: streams }, () => stream(through.url, through.headers)));
  const wall = performance.now() - t0;
  const cpu = cpuSeconds([server.pid]) - cpuBefore;
  const failed = all.filter((r) => r.status === "rejected");
  const ok = all.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  console.log(`\n${streams} concurrent streams through one server: ${ok.length} complete, ${failed.length} failed, in ${wall.toFixed(0)} ms`);
  console.log(`  first token p50 ${stats(ok.map((x) => x.firstMs)).p50.toFixed(1)} ms, p99 ${stats(ok.map((x) => x.firstMs)).p99.toFixed(1)} ms; server CPU ${(cpu * 1000).toFixed(0)} ms in all, ${((cpu * 1000) / streams).toFixed(2)} ms per stream`);
  if (failed.length > 0) throw new Error(`${failed.length} streams failed: ${(failed[0] as PromiseRejectedResult).reason}`);
}

await runBench("proxy", OVERALL_TIMEOUT_MS, main);
