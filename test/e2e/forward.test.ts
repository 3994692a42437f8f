/**
 * Ports and forwards through the real binaries: a session runs `python3 -m http.server`, a
 * WebSocket echo server and two plain TCP servers (test/helpers/port-servers.ts); `catty list`
 * shows its ports; `catty forward` makes them local — curl and a WebSocket client byte for byte,
 * a half-close that passes, 1 GB through with flat memory in the CLI, the server and the agent, a
 * transfer that survives the server's restart, and nothing for another user.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { connect, type Socket as NetSocket } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { CLOSE, type Session } from "../../src/protocol/index.ts";
import { removeAfterRun } from "../helpers/fs.ts";
import { checkPattern } from "../helpers/port-servers.ts";
import { freePort } from "../helpers/ports.ts";
import { waitFor } from "../helpers/wait.ts";
import { run, workspaceServerForFile } from "../helpers/workspace.ts";

const fixture = workspaceServerForFile();
const dir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-fwd-")));
const big = crypto.getRandomValues(new Uint8Array(65536));
const site = Buffer.concat(Array.from({ length: 80 }, (_, i) => Buffer.from(big.map((b) => b ^ i))));
const ports = { http: freePort(), ws: freePort(), source: freePort(), half: freePort() };
let label = "";
const forwards: Subprocess[] = [];

afterAll(() => {
  for (const p of forwards) p.kill("SIGKILL");
});

beforeAll(async () => {
  writeFileSync(join(dir, "index.html"), "<h1>hello from the session</h1>");
  writeFileSync(join(dir, "big.bin"), site);
  const servers = join(import.meta.dir, "../helpers/port-servers.ts");
  const script =
    `cd ${dir} && python3 -m http.server ${ports.http} --bind 127.0.0.1 & ` +
    `${process.execPath} ${servers} ${ports.ws} ${ports.source} ${ports.half} & wait`;
  const res = await fixture().user.api("POST", "/v1/sessions", { command: ["bash", "-c", script], cols: 80, rows: 24 });
  expect(res.status).toBe(201);
  label = ((await res.json()) as Session).label;
}, 60_000);

/** `catty forward …` running; resolves once it printed a Forwarding line per port. */
async function forward(args: string[], lines: number, env: Record<string, string> = {}) {
  const proc = Bun.spawn([fixture().bins.catty, "forward", label, ...args], {
    env: { ...(fixture().user.env as Record<string, string>), ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  forwards.push(proc);
  const out = { stdout: "", stderr: "" };
  const dec = new TextDecoder();
  void (async () => {
    for await (const c of proc.stdout as ReadableStream<Uint8Array>) out.stdout += dec.decode(c);
  })();
  void (async () => {
    for await (const c of proc.stderr as ReadableStream<Uint8Array>) out.stderr += dec.decode(c);
  })();
  await waitFor(() => (out.stdout.match(/^Forwarding /gm) ?? []).length >= lines || proc.exitCode !== null, { timeoutMs: 20_000, what: "catty forward to listen" });
  if (proc.exitCode !== null) throw new Error(`catty forward exited ${proc.exitCode}: ${out.stderr}`);
  return { proc, out };
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1]);
}

function serverPid(): number {
  const res = Bun.spawnSync(["pgrep", "-f", "--", `--port ${fixture().server.port} --data-dir`]);
  return Number(new TextDecoder().decode(res.stdout).trim().split("\n")[0]);
}

/** Asks the SOURCE server for `total` bytes through `port`; checks each byte as it arrives; `during(received)` runs as they come. */
function download(port: number, total: number, during?: (received: number, socket: NetSocket) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let received = 0;
    socket.on("connect", () => socket.write(`${total}\n`));
    socket.on("data", (chunk: Buffer) => {
      const bad = checkPattern(received, chunk);
      if (bad !== -1) {
        socket.destroy();
        reject(new Error(`byte ${bad} is wrong`));
        return;
      }
      received += chunk.length;
      during?.(received, socket);
    });
    socket.on("end", () => resolve(received));
    socket.on("error", reject);
  });
}

describe("ports and forwards", () => {
  test("the session's ports: catty list --json carries them with their programs, the table shows them", async () => {
    const s = await waitFor(async () => {
      const got = await fixture().user.session(label);
      return got.ports.length === 4 ? got : null;
    }, { timeoutMs: 30_000, what: "four listening ports" });
    // The servers run in this test's bun (named as the kernel keeps it: 15 characters at most).
    const bun = basename(process.execPath).slice(0, 15);
    expect(s.ports).toEqual(
      [
        { port: ports.http, name: "python3" },
        { port: ports.ws, name: bun },
        { port: ports.source, name: bun },
        { port: ports.half, name: bun },
      ].sort((a, b) => a.port - b.port),
    );
    const json = JSON.parse((await fixture().user.cli(["list", "--json"])).stdout) as Session[];
    expect(json.find((x) => x.label === label)?.ports.map((p) => p.port).sort()).toEqual(Object.values(ports).sort());
    const table = (await fixture().user.cli(["list", "--plain"])).stdout;
    expect(table).toContain("PORTS");
    expect(table).toContain(`${ports.http} · python3`);
  }, 40_000);

  test("catty forward: curl and a WebSocket client through the local ports byte for byte, a half-close passes, and it is listed while it runs", async () => {
    const local = { http: freePort(), ws: freePort(), half: freePort(), none: freePort() };
    const nothing = freePort();
    const { proc, out } = await forward(
      [String(ports.http), "--local", String(local.http), `${local.ws}:${ports.ws}`, `${local.half}:${ports.half}`, `${local.none}:${nothing}`],
      4,
    );
    expect(out.stdout).toContain(`Forwarding 127.0.0.1:${local.http} → ${label}:${ports.http} · python3`);

    const file = join(dir, "got.bin");
    const curl = await run(["curl", "-sS", "-o", file, "-w", "%{http_code}", `http://127.0.0.1:${local.http}/big.bin`]);
    expect(curl.stdout).toBe("200");
    expect(Buffer.compare(readFileSync(file), site)).toBe(0);
    const page = await run(["curl", "-sS", `http://127.0.0.1:${local.http}/`]);
    expect(page.stdout).toBe("<h1>hello from the session</h1>");

    // A WebSocket client: messages of many sizes come back as sent.
    const ws = new WebSocket(`ws://127.0.0.1:${local.ws}/hot`);
    ws.binaryType = "arraybuffer";
    const echoed: Uint8Array[] = [];
    ws.onmessage = (e) => echoed.push(new Uint8Array(e.data as ArrayBuffer));
    await new Promise((r, j) => ((ws.onopen = r), (ws.onerror = j)));
    const sent = [1, 100, 70_000, 1_000_000, 5].map((n) => {
      const m = new Uint8Array(n);
      for (let i = 0; i < n; i += 65536) crypto.getRandomValues(m.subarray(i, Math.min(n, i + 65536)));
      return m;
    });
    for (const m of sent) ws.send(m);
    await waitFor(() => echoed.length === sent.length, { what: "every echo" });
    sent.forEach((m, i) => expect(Buffer.compare(Buffer.from(echoed[i] as Uint8Array), Buffer.from(m))).toBe(0));
    ws.close();

    // Half-close: the server answers only once it saw the end of what the client sent.
    const payload = crypto.getRandomValues(new Uint8Array(60_000));
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = connect({ host: "127.0.0.1", port: local.half, allowHalfOpen: true });
      let text = "";
      sock.on("connect", () => {
        for (let i = 0; i < 50; i++) sock.write(payload);
        sock.end();
      });
      sock.on("data", (c: Buffer) => (text += c.toString()));
      sock.on("end", () => resolve(text));
      sock.on("error", reject);
    });
    const hash = createHash("sha256");
    for (let i = 0; i < 50; i++) hash.update(payload);
    expect(answer).toBe(`${50 * payload.length} ${hash.digest("hex")}\n`);

    // Listed while it runs.
    const listed = (await fixture().user.session(label)).forwards;
    expect(listed).toHaveLength(1);
    expect(listed[0]?.ports).toEqual([ports.http, ports.ws, ports.half, nothing]);

    // A port nothing listens on: the connection ends at once and catty says why.
    const closed = await new Promise<boolean>((resolve) => {
      const s = connect({ host: "127.0.0.1", port: local.none });
      s.on("error", () => {});
      s.on("close", () => resolve(true));
    });
    expect(closed).toBe(true);
    await waitFor(() => out.stderr.includes(`nothing in the session listens on port ${nothing}`), { what: "catty forward to say why" });

    proc.kill("SIGINT");
    expect(await proc.exited).toBe(0);
    await waitFor(async () => (await fixture().user.session(label)).forwards.length === 0, { what: "the forward to be gone from the list" });
  }, 60_000);

  test("1 GB through one forward without memory growth in the CLI, the server or the agent; 100 connections at once", async () => {
    const local = freePort();
    const { proc } = await forward([`${local}:${ports.source}`], 1);
    // Warmed up first: what is measured is growth while data flows.
    expect(await download(local, 64 * 1024 * 1024)).toBe(64 * 1024 * 1024);
    const pids = { cli: proc.pid, server: serverPid(), agent: fixture().user.agentPid(label) };
    const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, rssKb(pid)]));
    const started = performance.now();
    const GB = 1024 * 1024 * 1024;
    let peak = { ...before };
    const peaks = (): void => {
      peak = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, Math.max(peak[k] ?? 0, rssKb(pid))]));
    };
    let next = 0;
    expect(await download(local, GB, (n) => n >= next && (peaks(), (next += 64 * 1024 * 1024)))).toBe(GB);
    const seconds = (performance.now() - started) / 1000;
    const after = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, rssKb(pid)]));
    console.log(`1 GiB in ${seconds.toFixed(1)} s (${(1024 / seconds).toFixed(0)} MiB/s); RSS kB before/peak/after:`, { before, peak, after });
    for (const k of Object.keys(pids)) expect((peak[k] as number) - (before[k] as number)).toBeLessThan(96 * 1024);

    // 100 parallel connections through the same forward, each checked byte for byte.
    const got = await Promise.all(Array.from({ length: 100 }, () => download(local, 1024 * 1024)));
    expect(got).toEqual(Array.from({ length: 100 }, () => 1024 * 1024));
    proc.kill("SIGINT");
    expect(await proc.exited).toBe(0);
  }, 180_000);

  test("a transfer under way survives the server's restart: the link resumes and every byte arrives once", async () => {
    const local = freePort();
    const { proc, out } = await forward([`${local}:${ports.source}`], 1);
    const total = 256 * 1024 * 1024;
    let restarted: Promise<void> | null = null;
    const done = download(local, total, (n, socket) => {
      if (restarted || n < 32 * 1024 * 1024) return;
      // Hold the reader while the server goes away and comes back.
      socket.pause();
      restarted = (async () => {
        await fixture().server.kill9();
        await fixture().server.start();
        socket.resume();
      })();
    });
    expect(await done).toBe(total);
    await restarted;
    expect(out.stderr).toContain("Link to the server lost");
    await waitFor(() => out.stderr.includes("Link back"), { what: "catty forward to say the link is back" });
    proc.kill("SIGINT");
    expect(await proc.exited).toBe(0);
  }, 120_000);

  test("another user gets 404 for the session and its forward; garbage on a forward link closes it", async () => {
    const made = await run([fixture().bins.server, "token", "create", "--user", "mallory", "--data-dir", fixture().server.dataDir]);
    expect(made.code).toBe(0);
    const token = (made.stdout.trim().split("\n").at(-1) ?? "").trim();
    const res = await fetch(`${fixture().server.url}/v1/sessions/${label}/forward?id=abcdefghijklmnopqrst`, { headers: { Authorization: `Bearer ${token}` } });
    expect(res.status).toBe(404);
    const cli = await fixture().user.cli(["forward", "--api", fixture().server.url, label, String(ports.http)], { env: { CATTY_TOKEN: token } });
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain(`Session ${label} not found`);

    const ws = new WebSocket(`${fixture().server.url.replace("http", "ws")}/v1/sessions/${label}/forward?id=abcdefghijklmnopqrst`, {
      headers: { Authorization: `Bearer ${fixture().server.ownerToken}` },
    } as never);
    await new Promise((r, j) => ((ws.onopen = r), (ws.onerror = j)));
    const closed = new Promise<number>((r) => (ws.onclose = (e) => r(e.code)));
    for (let i = 0; i < 5; i++) ws.send(new Uint8Array([99, 1, 2]));
    expect(await closed).toBe(CLOSE.malformed);
  }, 30_000);
});
