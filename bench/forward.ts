/**
 * Port forwarding, side by side in one run: `catty forward` (the compiled CLI, a real
 * `catty-server` process and the session's `catty-agent`) against `ssh -L` to a loopback sshd
 * this run starts (bench/paths.ts), both reaching the same servers on 127.0.0.1
 * (test/helpers/port-servers.ts, run by the session; sessions here are unsandboxed, so ssh reaches
 * them too).
 *
 *   bun bench/forward.ts [--mib 512] [--rounds 2000] [--parallel 100]
 *
 * Measures, alternating the two paths: throughput of one connection downloading `--mib` MiB
 * (best of three), request round trips on one open connection (64 bytes out, 64 back; p50/p90/p99
 * over `--rounds`), and `--parallel` connections at once through one forward, each checked byte
 * for byte. Prints the figures and the ratios catty/ssh with the targets (throughput ≥ 0.8×, p50
 * ≤ 1.5×, no errors). Needs sshd (installs Debian's openssh-server when missing).
 */
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createApiClient } from "../src/client/api.ts";
import { checkPattern } from "../test/helpers/port-servers.ts";
import { benchTempDir, cleanups, compiledBinaries, freePort, killAndWait, percentile, run, runBench, startServerProcess, waitForPort, withDeadline, wholeNumbers } from "./harness.ts";
import { startSshd } from "./paths.ts";

interface Route {
  name: string;
  source: number;
  echo: number;
}

/** Downloads `bytes` from the SOURCE server through `port`, checking each; resolves to seconds taken. */
function download(port: number, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect({ host: "127.0.0.1", port });
    let received = 0;
    socket.on("connect", () => socket.write(`${bytes}\n`));
    socket.on("data", (chunk: Buffer) => {
      if (checkPattern(received, chunk) !== -1) {
        socket.destroy();
        reject(new Error(`wrong byte near ${received}`));
      }
      received += chunk.length;
    });
    socket.on("end", () => (received === bytes ? resolve((performance.now() - started) / 1000) : reject(new Error(`got ${received} of ${bytes} bytes`))));
    socket.on("error", reject);
  });
}

/** One open connection to the ECHO server; `roundTrip()` sends 64 bytes and resolves (ms) once they are back. */
async function echoClient(port: number): Promise<{ roundTrip(): Promise<number>; close(): void }> {
  const socket: Socket = await new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port }, () => resolve(s));
    s.on("error", reject);
  });
  socket.setNoDelay(true);
  const request = Buffer.alloc(64, 7);
  let waiting: { need: number; resolve(ms: number): void; started: number } | null = null;
  socket.on("data", (chunk: Buffer) => {
    if (!waiting) return;
    waiting.need -= chunk.length;
    if (waiting.need <= 0) {
      const w = waiting;
      waiting = null;
      w.resolve(performance.now() - w.started);
    }
  });
  return {
    roundTrip: () =>
      new Promise((resolve) => {
        waiting = { need: request.length, resolve, started: performance.now() };
        socket.write(request);
      }),
    close: () => socket.destroy(),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { mib: { type: "string", default: "512" }, rounds: { type: "string", default: "2000" }, parallel: { type: "string", default: "100" } },
  });
  const { mib, rounds, parallel } = wholeNumbers(values, { mib: 1, rounds: 1, parallel: 1 });
  const tmp = benchTempDir("catty-bench-forward-");
  const bins = await compiledBinaries();

  // The servers, in a catty session.
  // Unsandboxed, so that ssh -L reaches the very same servers on the host's loopback.
  const server = await startServerProcess(join(tmp, "catty-server"), { bin: bins.server, env: { CATTY_SANDBOX: "none" } });
  const api = createApiClient(server.url, server.token);
  const target = { ws: freePort(), source: freePort(), half: freePort(), echo: freePort() };
  const servers = join(import.meta.dir, "../test/helpers/port-servers.ts");
  const session = await withDeadline(
    api.create({ command: [process.execPath, servers, String(target.ws), String(target.source), String(target.half), String(target.echo)], cols: 80, rows: 24 }),
    30_000,
    "create a catty session",
  );
  cleanups.push({ what: `catty session ${session.label}`, run: async () => void (await api.stop(session.label)) });
  const deadline = Date.now() + 30_000;
  while ((await api.get(session.label)).ports.length < 4) {
    if (Date.now() > deadline) throw new Error("the session's servers did not listen within 30 s");
    await Bun.sleep(100);
  }

  // catty forward.
  const catty: Route = { name: "catty forward", source: freePort(), echo: freePort() };
  const fwd = Bun.spawn([bins.catty, "forward", session.label, `${catty.source}:${target.source}`, `${catty.echo}:${target.echo}`], {
    env: { ...process.env, CATTY_API_ADDR: server.url, CATTY_TOKEN: server.token, CATTY_HOME: join(tmp, "catty-home") },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "inherit",
  });
  cleanups.push({ what: "catty forward", run: () => killAndWait(fwd) });
  await waitForPort(catty.echo, fwd, "catty forward", () => "");

  // ssh -L to a loopback sshd.
  const sshd = await startSshd(join(tmp, "ssh"));
  const user = (await run(["id", "-un"], { timeoutMs: 10_000 })).out.trim();
  const ssh: Route = { name: "ssh -L", source: freePort(), echo: freePort() };
  const sshProc = Bun.spawn(
    [
      "ssh", "-N", "-F", "/dev/null", "-p", String(sshd.port), "-i", sshd.clientKey,
      "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
      "-o", "ExitOnForwardFailure=yes",
      "-L", `127.0.0.1:${ssh.source}:127.0.0.1:${target.source}`, "-L", `127.0.0.1:${ssh.echo}:127.0.0.1:${target.echo}`,
      `${user}@127.0.0.1`,
    ],
    { stdin: "ignore", stdout: "ignore", stderr: "inherit" },
  );
  cleanups.push({ what: "ssh -L", run: () => killAndWait(sshProc) });
  await waitForPort(ssh.echo, sshProc, "ssh -L", () => "");
  const routes = [catty, ssh];

  // Throughput: best of three, alternating.
  const bytes = mib * 1024 * 1024;
  for (const r of routes) await download(r.source, 16 * 1024 * 1024);
  const best = new Map<string, number>();
  for (let i = 0; i < 3; i++) {
    for (const r of i % 2 === 0 ? routes : [...routes].reverse()) {
      const s = await download(r.source, bytes);
      best.set(r.name, Math.max(best.get(r.name) ?? 0, mib / s));
    }
  }

  // Request round trips on one open connection, in alternating blocks of 100.
  const clients = await Promise.all(routes.map((r) => echoClient(r.echo)));
  for (const c of clients) for (let i = 0; i < 100; i++) await c.roundTrip();
  const times = routes.map(() => [] as number[]);
  for (let done = 0; done < rounds; done += 100) {
    for (const i of done % 200 === 0 ? [0, 1] : [1, 0]) {
      const c = clients[i] as (typeof clients)[number];
      for (let k = 0; k < Math.min(100, rounds - done); k++) (times[i] as number[]).push(await c.roundTrip());
    }
  }
  for (const c of clients) c.close();
  const stats = times.map((t) => {
    const sorted = [...t].sort((a, b) => a - b);
    return { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99) };
  });

  // Many connections at once through one forward.
  const parallelResults = await Promise.allSettled(Array.from({ length: parallel }, () => download(catty.source, 1024 * 1024)));
  const errors = parallelResults.filter((r) => r.status === "rejected");

  const [c, s] = stats as [(typeof stats)[0], (typeof stats)[0]];
  const tc = best.get(catty.name) as number;
  const ts = best.get(ssh.name) as number;
  const ms = (x: number): string => `${x.toFixed(3)} ms`.padStart(11);
  console.log(`forwarded throughput (one connection, ${mib} MiB, best of 3) and request round trip (64 B, ${rounds} rounds):`);
  console.log(`${"".padEnd(16)}${"MiB/s".padStart(9)}${"p50".padStart(11)}${"p90".padStart(11)}${"p99".padStart(11)}`);
  for (const [name, t, st] of [[catty.name, tc, c], [ssh.name, ts, s]] as const) {
    console.log(`${name.padEnd(16)}${t.toFixed(0).padStart(9)}${ms(st.p50)}${ms(st.p90)}${ms(st.p99)}`);
  }
  const ok = (b: boolean): string => (b ? "ok" : "MISSED");
  console.log(`ratio throughput catty/ssh  ${(tc / ts).toFixed(2)}×  (target ≥ 0.8×: ${ok(tc / ts >= 0.8)})`);
  console.log(`ratio round trip p50 catty/ssh  ${(c.p50 / s.p50).toFixed(2)}×  (target ≤ 1.5×: ${ok(c.p50 / s.p50 <= 1.5)})`);
  console.log(`${parallel} parallel connections through one forward (1 MiB each, checked): ${errors.length} errors (target 0: ${ok(errors.length === 0)})`);
  if (errors.length > 0) console.log(`first error: ${(errors[0] as PromiseRejectedResult).reason}`);
}

await runBench("forward", 15 * 60_000, main);
