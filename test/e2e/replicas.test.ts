/**
 * Several replicas of the real server on one PostgreSQL and one S3 (s3rver), behind two small
 * TCP load balancers written for the test (helpers/balancer.ts): one that session agents dial,
 * one for clients. Sessions are created through one replica while their agents land on another;
 * clients attach through a third or through the balancer; the replica relaying a session is
 * killed mid-output; stops are asked of replicas that do not relay the session; a session whose
 * replica and machine both die is failed by exactly one of the others. A second cluster, of two
 * replicas behind one balancer for agents and clients alike (their calls to each other on an
 * internal port of their own), loses its relaying replica too. A third, of two replicas each with
 * its own CATTY_INTERNAL_URL, has its clients dial a replica straight and its agents a round-robin
 * balancer that goes on sending to the replica that was killed; deployments replicas could not
 * serve (saves on disk, another bucket, another master key, an internal URL that reaches nothing
 * or another replica) are refused at start. Holding the master key, an outsider signs no internal
 * request.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { createHmac, hkdfSync } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApiClient, type ApiClient } from "../../src/client/api.ts";
import { startBalancer, type Balancer } from "../helpers/balancer.ts";
import { buildBinaries, type Binaries } from "../helpers/binaries.ts";
import { killAgents, pidAlive } from "../helpers/agents.ts";
import { freePort } from "../helpers/ports.ts";
import { removeAfterRun } from "../helpers/fs.ts";
import { freshDatabase } from "../helpers/postgres.ts";
import { checkSeq, pacedSeq, Recorder } from "../helpers/recorder.ts";
import { startS3rver, type S3Fixture } from "../helpers/s3.ts";
import { ServerProcess } from "../helpers/server-process.ts";
import { waitFor } from "../helpers/wait.ts";

let bins: Binaries;
let s3: S3Fixture;
let sql: SQL;
let agents: Balancer;
let clients: Balancer;
/** Replicas A, B, C. Agents dial B and C only, so a session created through A always moves. */
let replicas: ServerProcess[];
let token: string;
/** The replicas' environment (database, bucket, timings). */
let env: Record<string, string>;
const recorders: Recorder[] = [];

const [A, B, C] = [0, 1, 2];
const api = (i: number): ApiClient => createApiClient((replicas[i] as ServerProcess).url, token);
const record = (url: string, mode: "interactive" | "view" = "interactive"): Recorder => {
  const rec = new Recorder({ url, token, mode, offset: 0 });
  recorders.push(rec);
  return rec;
};

/** The replica (index) whose relay holds the session's agent link, once one does. */
async function relayOf(label: string, not: number[] = []): Promise<number> {
  return waitFor(
    async () => {
      const [row] = (await sql`SELECT r.url FROM sessions s JOIN replicas r ON r.id = s.relay_replica WHERE s.label = ${label} AND s.status = 'running'`) as Array<{ url: string }>;
      const i = replicas.findIndex((r) => r.url === row?.url);
      return i >= 0 && !not.includes(i) ? i : null;
    },
    { timeoutMs: 20_000, what: `the relay replica of ${label}` },
  );
}

beforeAll(async () => {
  bins = await buildBinaries();
  s3 = await startS3rver({ bucket: "catty-replicas" });
  const databaseUrl = await freshDatabase();
  sql = new SQL(databaseUrl, { max: 2 });
  agents = await startBalancer();
  clients = await startBalancer();
  env = {
    CATTY_DATABASE_URL: databaseUrl,
    CATTY_MASTER_KEY: "7c".repeat(32),
    CATTY_INTERNAL_KEY: "c7".repeat(32),
    CATTY_PUBLIC_URL: agents.url,
    CATTY_REPLICA_DEAD_MS: "1500",
    // Routing decisions are logged at debug level: shown when a test fails.
    CATTY_LOG_LEVEL: "debug",
    CATTY_LIFECYCLE_TICK_MS: "300",
    CATTY_AGENT_LOST_MS: "2000",
    CATTY_SAVE_FIRST_MS: "300",
    CATTY_SAVE_INTERVAL_MS: "700",
    ...s3.serverEnv(),
  };
  replicas = [new ServerProcess(bins.server, env), new ServerProcess(bins.server, env), new ServerProcess(bins.server, env)];
  // The first one makes the owner; the others find it in the database.
  await (replicas[A] as ServerProcess).start();
  token = (replicas[A] as ServerProcess).ownerToken;
  await Promise.all([(replicas[B] as ServerProcess).start(), (replicas[C] as ServerProcess).start()]);
  agents.setBackends([(replicas[B] as ServerProcess).port, (replicas[C] as ServerProcess).port]);
  clients.setBackends(replicas.map((r) => r.port));
  await waitFor(async () => ((await sql`SELECT count(*)::int AS n FROM replicas`) as Array<{ n: number }>)[0]?.n === 3, {
    timeoutMs: 10_000,
    what: "three replicas registered",
  });
}, 120_000);

afterAll(async () => {
  for (const r of recorders) r.close();
  for (const r of replicas ?? []) await r.stop();
  await agents?.stop();
  await clients?.stop();
  await sql?.close();
  await s3?.stop();
});

/** An `X-Catty-Internal` header made as replicas made them before they had a key of their own: from the master key. */
function masterKeySignature(method: string, path: string): string {
  const derived = Buffer.from(hkdfSync("sha256", Buffer.from(env.CATTY_MASTER_KEY as string, "hex"), Buffer.alloc(0), "catty replicas v1", 32));
  const expiry = Math.ceil(Date.now() / 1000) + 60;
  return `${expiry}.${createHmac("sha256", derived).update(`${method} ${path} ${expiry}`).digest("base64url")}`;
}

/** Whether a WebSocket to `url` with `headers` opens (and, if it does, sends `input`). */
function opens(url: string, headers: Record<string, string>, input: string): Promise<boolean> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers } as unknown as string[]);
    ws.onopen = () => {
      ws.send(input);
      resolve(true);
    };
    ws.onerror = () => resolve(false);
    ws.onclose = () => resolve(false);
  });
}

/** Runs a test's body; when it fails, prints what each replica logged. */
function diagnosed(body: () => Promise<void>, cluster: () => ServerProcess[] = () => replicas): () => Promise<void> {
  return async () => {
    const from = cluster().map((r) => r.output.length);
    try {
      await body();
    } catch (err) {
      for (const [i, r] of cluster().entries()) console.error(`--- replica ${"ABC"[i]} (${r.url}) ---\n${r.output.slice(from[i]).split("\n").slice(-60).join("\n")}`);
      throw err;
    }
  };
}

describe("several replicas behind a load balancer", () => {
  test("created through one replica, attached through others; the replica relaying it is killed mid-output: every line arrives once, in order", diagnosed(async () => {
    const N = 60_000;
    const secret = `ghp_${crypto.randomUUID().replaceAll("-", "")}`;
    const prefix = `token=${secret}\r\n`;
    const session = await api(A).create({
      command: ["bash", "-c", `echo "token=$GITHUB_TOKEN"; ${pacedSeq(N, 60, 0.1)}`],
      cols: 80,
      rows: 24,
      secrets: { GITHUB_TOKEN: secret },
    });
    // Through A, which never relays (agents dial B or C): its frames are forwarded.
    const viaA = record(api(A).attachUrl(session.label));
    const viaBalancer = record(createApiClient(clients.url, token).attachUrl(session.label), "view");
    const relay = await relayOf(session.label);
    expect([B, C]).toContain(relay);
    // The program got the secret although the replica that took it (A) never had the agent.
    await viaA.waitForText(prefix, 20_000);
    await viaA.waitForText("\r\n10000\r\n", 20_000);
    // A counts the client it passes through, and sees the three replicas.
    const metrics = await (await fetch(`${(replicas[A] as ServerProcess).url}/metrics`)).text();
    expect(Number(/^catty_forwarded_clients (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    expect(metrics).toMatch(/^catty_replicas 3$/m);

    const killed = replicas[relay] as ServerProcess;
    await killed.kill9();
    agents.drop(killed.port);
    clients.drop(killed.port);
    const survivor = await relayOf(session.label, [relay]);
    expect(survivor).toBe(relay === B ? C : B);

    for (const rec of [viaA, viaBalancer]) {
      await rec.waitForText((t) => t.endsWith(`\n${N}\r\n`), 60_000, `line ${N}`);
      expect(rec.text.startsWith(prefix)).toBe(true);
      expect(checkSeq(rec.text.slice(prefix.length), N)).toBeNull();
      expect(rec.gaps).toEqual([]);
    }
    expect(viaA.attachedCount).toBeGreaterThanOrEqual(2);
    expect((await api(survivor).get(session.label)).status).toBe("running");

    // The killed replica comes back (a new process: a new replica id) and takes traffic again.
    await killed.start();
    agents.setBackends([(replicas[B] as ServerProcess).port, (replicas[C] as ServerProcess).port]);
    clients.setBackends(replicas.map((r) => r.port));
    await api(A).stop(session.label);
  }), 150_000);

  test("a rolling restart: SIGTERM of the relaying replica moves its agent and clients to another, losslessly", diagnosed(async () => {
    const N = 40_000;
    const session = await api(A).create({ command: ["bash", "-c", pacedSeq(N, 40, 0.1)], cols: 80, rows: 24 });
    const viaA = record(api(A).attachUrl(session.label));
    const relay = await relayOf(session.label);
    await viaA.waitForText("\r\n5000\r\n", 20_000);
    const leaving = replicas[relay] as ServerProcess;
    const { code, ms } = await leaving.terminate();
    expect(code).toBe(0);
    expect(ms).toBeLessThan(10_000);
    // The agent, told to dial again, lands on the other one.
    const other = await relayOf(session.label, [relay]);
    expect(other).toBe(relay === B ? C : B);
    await viaA.waitForText((t) => t.endsWith(`\n${N}\r\n`), 60_000, `line ${N}`);
    expect(checkSeq(viaA.text, N)).toBeNull();
    expect(viaA.gaps).toEqual([]);
    await leaving.start();
    await api(A).stop(session.label);
  }), 120_000);

  test("a file handed and a stop asked through a replica that does not relay the session are done by the one that does; every client hears the end", diagnosed(async () => {
    const session = await api(B).create({ command: ["bash", "-c", "echo ready; exec sleep 600"], cols: 80, rows: 24 });
    const relay = await relayOf(session.label);
    const other = relay === B ? C : B;
    const viaA = record(api(A).attachUrl(session.label));
    const viaOther = record(api(other).attachUrl(session.label), "view");
    await viaA.waitForText("ready");
    await viaOther.waitForText("ready");
    // Any replica shows when input or output last went through, as the relay replica records it.
    viaA.send("x");
    await waitFor(async () => (await api(A).get(session.label)).lastActivityAt, { timeoutMs: 10_000, what: "the last activity, seen through A" });
    // A file handed through A reaches the agent through the relay replica.
    const put = await api(A).putFile(session.label, "notes.txt", new TextEncoder().encode("handed over\n"));
    expect(put.path).toMatch(/\/\.catty-uploads\/notes-[\d-]+\.txt$/);
    // Unsandboxed local sessions see host paths: the file is there, as written by the agent.
    expect(readFileSync(put.path, "utf8")).toBe("handed over\n");
    const stopped = await api(A).stop(session.label);
    expect(stopped.status).toBe("stopped");
    expect(stopped.endReason).toBe("stopped by user");
    expect(stopped.finalSave === null || !stopped.finalSave.startsWith("failed")).toBe(true);
    for (const rec of [viaA, viaOther]) {
      const outcome = await waitFor(() => rec.outcomeNow, { timeoutMs: 15_000, what: "the client's outcome" });
      expect(outcome.kind).not.toBe("error");
    }
    // The end was recorded once, by the relay replica.
    const ended = replicas.map((r) => r.output.split("\n").filter((l) => l.includes("session ended") && l.includes(session.label)).length);
    expect(ended.reduce((a, b) => a + b, 0)).toBe(1);
    expect(ended[relay]).toBe(1);
  }), 60_000);

  test("a session whose relay replica and machine both die is failed once, by one of the others", diagnosed(async () => {
    const session = await api(A).create({ command: ["bash", "-c", "echo up; exec sleep 600"], cols: 80, rows: 24 });
    const relay = await relayOf(session.label);
    const watcher = record(api(A).attachUrl(session.label), "view");
    await watcher.waitForText("up");
    const [row] = (await sql`SELECT machine FROM sessions WHERE label = ${session.label}`) as Array<{ machine: string }>;
    const pid = (JSON.parse(row?.machine ?? "{}") as { pid?: number }).pid as number;
    expect(pidAlive(pid)).toBe(true);
    process.kill(pid, "SIGKILL");
    const killed = replicas[relay] as ServerProcess;
    await killed.kill9();
    agents.drop(killed.port);
    clients.drop(killed.port);

    const failed = await waitFor(
      async () => {
        const s = await api(A).get(session.label);
        return s.status === "failed" ? s : null;
      },
      { timeoutMs: 30_000, what: "the session failed" },
    );
    expect(failed.endReason).toContain("the session machine went away");
    const outcome = await waitFor(() => watcher.outcomeNow, { timeoutMs: 15_000, what: "the watcher's outcome" });
    expect(outcome.kind).not.toBe("error");
    const lines = replicas.map((r) => r.output.split("\n").filter((l) => l.includes("session failed") && l.includes(session.label)).length);
    expect(lines.reduce((a, b) => a + b, 0)).toBe(1);
    expect(lines[relay]).toBe(0);
    await killed.start();
    killAgents(killed.dataDir);
  }), 90_000);
});

describe("the replicas' internal API", () => {
  test("holding the master key, another user's session cannot be attached through /v1/internal", diagnosed(async () => {
    const session = await api(A).create({ command: ["bash", "-c", "echo ready; exec cat"], cols: 80, rows: 24 });
    const owner = record(api(A).attachUrl(session.label));
    await owner.waitForText("ready");
    const [row] = (await sql`SELECT id FROM sessions WHERE label = ${session.label}`) as Array<{ id: string }>;
    const path = `/v1/internal/sessions/${row?.id}/attach`;
    for (const r of replicas) {
      const forged = { "x-catty-internal": masterKeySignature("GET", path) };
      const res = await fetch(`${r.url}${path}`, { headers: forged });
      expect(res.status).toBe(403);
      expect(await opens(`${r.url.replace("http:", "ws:")}${path}`, forged, "typed by an intruder\r")).toBe(false);
    }
    // The owner's own input still goes through, and nothing else did.
    owner.send("mine\r");
    await owner.waitForText("mine\r\nmine");
    expect(owner.text).not.toContain("intruder");
    await api(A).stop(session.label);
  }), 60_000);
});

describe("two replicas behind one load balancer", () => {
  let pair: ServerProcess[] = [];
  let internalPorts: number[] = [];
  let balancer: Balancer;
  let pairSql: SQL;
  let pairToken: string;

  beforeAll(async () => {
    balancer = await startBalancer();
    const databaseUrl = await freshDatabase();
    pairSql = new SQL(databaseUrl, { max: 1 });
    const pairEnv = { ...env, CATTY_DATABASE_URL: databaseUrl, CATTY_PUBLIC_URL: balancer.url, CATTY_S3_PREFIX: "pair" };
    // Their calls to each other go to an internal port each, never through the balancer.
    internalPorts = [freePort(), freePort()];
    pair = internalPorts.map((port) => new ServerProcess(bins.server, { ...pairEnv, CATTY_INTERNAL_PORT: String(port) }));
    await (pair[0] as ServerProcess).start();
    pairToken = (pair[0] as ServerProcess).ownerToken;
    await (pair[1] as ServerProcess).start();
    balancer.setBackends(pair.map((r) => r.port));
  }, 60_000);

  afterAll(async () => {
    for (const r of pair) await r.stop();
    await balancer?.stop();
    await pairSql?.close();
  });

  test("agents and clients through the balancer; the relaying replica is killed mid-output; the other takes the session, and every line arrives once, in order", diagnosed(async () => {
    const N = 40_000;
    const session = await createApiClient((pair[0] as ServerProcess).url, pairToken).create({ command: ["bash", "-c", pacedSeq(N, 40, 0.1)], cols: 80, rows: 24 });
    const relayUrl = (): Promise<string | null> =>
      pairSql`SELECT r.url FROM sessions s JOIN replicas r ON r.id = s.relay_replica WHERE s.label = ${session.label} AND s.status = 'running'`.then(
        (rows: Array<{ url: string }>) => rows[0]?.url ?? null,
      );
    const relay = await waitFor(relayUrl, { timeoutMs: 20_000, what: "the relay replica" });
    // Recorded at its internal port; the public one has no /v1/internal.
    const killed = pair[internalPorts.findIndex((port) => relay === `http://127.0.0.1:${port}`)] as ServerProcess;
    expect(killed).toBeDefined();
    const [row] = (await pairSql`SELECT id FROM sessions WHERE label = ${session.label}`) as Array<{ id: string }>;
    expect((await fetch(`${killed.url}/v1/internal/sessions/${row?.id}/attach`)).status).toBe(404);
    const survivor = pair.find((r) => r !== killed) as ServerProcess;
    const viaBalancer = new Recorder({ url: createApiClient(balancer.url, pairToken).attachUrl(session.label), token: pairToken, offset: 0 });
    // Through the survivor, which forwards it until the kill, then serves it itself.
    const viaSurvivor = new Recorder({ url: createApiClient(survivor.url, pairToken).attachUrl(session.label), token: pairToken, mode: "view", offset: 0 });
    recorders.push(viaBalancer, viaSurvivor);
    await viaSurvivor.waitForText("\r\n5000\r\n", 20_000);
    await killed.kill9();
    balancer.drop(killed.port);
    await waitFor(async () => (await relayUrl()) === `http://127.0.0.1:${internalPorts[pair.indexOf(survivor)]}`, { timeoutMs: 20_000, what: "the survivor relaying the session" });
    for (const rec of [viaBalancer, viaSurvivor]) {
      await rec.waitForText((t) => t.endsWith(`\n${N}\r\n`), 60_000, `line ${N}`);
      expect(checkSeq(rec.text, N)).toBeNull();
      expect(rec.gaps).toEqual([]);
    }
    await killed.start();
    await createApiClient(survivor.url, pairToken).stop(session.label);
  }, () => pair), 120_000);
});

/**
 * Runs `catty-server serve` with `extra` added to `base` (a variable given as undefined is left
 * out) and waits for it to exit on its own: its exit code and what it wrote. A server still
 * running after `timeoutMs` is stopped, and its code is null.
 */
async function startRefused(base: Record<string, string | undefined>, extra: Record<string, string | undefined>, port = freePort(), timeoutMs = 30_000): Promise<{ code: number | null; stderr: string }> {
  const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-refused-")));
  const merged: Record<string, string | undefined> = { ...process.env, CATTY_SANDBOX: "none", ...base, ...extra };
  const proc = Bun.spawn([bins.server, "serve", "--host", "127.0.0.1", "--port", String(port), "--data-dir", dataDir], {
    stdout: "ignore",
    stderr: "pipe",
    env: Object.fromEntries(Object.entries(merged).filter((e): e is [string, string] => e[1] !== undefined)),
  });
  const stderr = new Response(proc.stderr).text();
  const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(timeoutMs).then(() => false)]);
  if (!exited) {
    proc.kill("SIGKILL");
    await proc.exited;
    return { code: null, stderr: await stderr };
  }
  return { code: proc.exitCode, stderr: await stderr };
}

describe("clients straight to a replica, agents through a round-robin balancer that keeps a dead replica", () => {
  /** Replicas A and B on S3, each with its own CATTY_INTERNAL_URL; clients dial B itself. */
  let duo: ServerProcess[] = [];
  let balancer: Balancer;
  let duoSql: SQL;
  let duoToken: string;
  let duoEnv: Record<string, string>;
  const duoApi = (r: ServerProcess): ApiClient => createApiClient(r.url, duoToken);

  beforeAll(async () => {
    balancer = await startBalancer();
    const databaseUrl = await freshDatabase();
    duoSql = new SQL(databaseUrl, { max: 1 });
    // The default heartbeat timing: a killed replica's row stays live for 10 s.
    duoEnv = { ...env, CATTY_DATABASE_URL: databaseUrl, CATTY_PUBLIC_URL: balancer.url, CATTY_S3_PREFIX: "duo", CATTY_REPLICA_DEAD_MS: "10000" };
    duo = [freePort(), freePort()].map((port) => new ServerProcess(bins.server, { ...duoEnv, CATTY_INTERNAL_URL: `http://127.0.0.1:${port}` }, { port }));
    await (duo[0] as ServerProcess).start();
    duoToken = (duo[0] as ServerProcess).ownerToken;
    await (duo[1] as ServerProcess).start();
  }, 60_000);

  afterAll(async () => {
    for (const r of duo) await r.stop();
    await balancer?.stop();
    await duoSql?.close();
  });

  test("the replica relaying the session is killed mid-output and the balancer still sends agents to it: the client on the other gets every line once, in order", diagnosed(async () => {
    const [A, B] = duo as [ServerProcess, ServerProcess];
    const N = 40_000;
    // The agent lands on A, then the balancer sends new connections to A and B in turn.
    balancer.setBackends([A.port]);
    // Once its output is done the program writes a file, for a save made after the kill.
    const command = pacedSeq(N, 40, 0.1).replace(/; sleep 600$/, "; echo after > after.txt; sleep 600");
    const session = await duoApi(A).create({ command: ["bash", "-c", command], cols: 80, rows: 24 });
    const relayUrl = (): Promise<string | null> =>
      duoSql`SELECT r.url FROM sessions s JOIN replicas r ON r.id = s.relay_replica WHERE s.label = ${session.label} AND s.status = 'running'`.then(
        (rows: Array<{ url: string }>) => rows[0]?.url ?? null,
      );
    const viaB = new Recorder({ url: duoApi(B).attachUrl(session.label), token: duoToken, offset: 0 });
    recorders.push(viaB);
    await viaB.waitForText("\r\n2000\r\n", 20_000);
    expect(await relayUrl()).toBe(A.url);
    balancer.setBackends([A.port, B.port]);
    await viaB.waitForText("\r\n5000\r\n", 20_000);
    await A.kill9();
    const savesAtKill = (await duoApi(B).get(session.label)).saves.length;
    await waitFor(async () => (await relayUrl()) === B.url, { timeoutMs: 30_000, what: "B relaying the session" });
    await viaB.waitForText((t) => t.endsWith(`\n${N}\r\n`), 60_000, `line ${N}`);
    expect(checkSeq(viaB.text, N)).toBeNull();
    expect(viaB.gaps).toEqual([]);
    expect((await duoApi(B).get(session.label)).status).toBe("running");
    // Saves go on after the kill, through the balancer that still names A, to the bucket.
    await waitFor(async () => (await duoApi(B).get(session.label)).saves.length > savesAtKill, { timeoutMs: 30_000, what: "a save after the kill" });
    const stopped = await duoApi(B).stop(session.label);
    expect(stopped.status).toBe("stopped");
    expect(stopped.finalSave?.startsWith("failed")).toBe(false);
    await A.start();
  }, () => duo), 150_000);

  test("a deployment the replicas could not serve is refused at start, saying what to change", diagnosed(async () => {
    const [A] = duo as [ServerProcess, ServerProcess];
    const unreachable = `http://127.0.0.1:${freePort()}`;
    const publicPort = freePort();
    const cases: Array<[Record<string, string | undefined>, RegExp, number?]> = [
      // The issue's deployment: saves on each replica's own disk.
      [{ CATTY_S3_BUCKET: undefined, CATTY_S3_ENDPOINT: undefined }, /^catty-server: this replica keeps saves on its own disk \(no --s3-bucket\), and another replica \(http:\/\/127\.0\.0\.1:\d+\) shares its database: .*Give every replica the same S3 bucket/m],
      [{ CATTY_S3_PREFIX: "elsewhere" }, /^catty-server: saves go to s3 \S+ catty-replicas\/elsewhere here and to s3 \S+ catty-replicas\/duo on the replica at .*: give every replica the same S3 endpoint, bucket and prefix\.$/m],
      [{ CATTY_MASTER_KEY: "9d".repeat(32) }, /^catty-server: the replica at http:\/\/127\.0\.0\.1:\d+ opens saves with another master key: give every replica the same CATTY_MASTER_KEY\.$/m],
      [{ CATTY_INTERNAL_URL: unreachable }, new RegExp(`^catty-server: this replica's internal URL ${unreachable} \\(CATTY_INTERNAL_URL\\) does not reach it .*set CATTY_INTERNAL_URL to an address of this replica`, "m")],
      [{ CATTY_INTERNAL_URL: A.url }, /^catty-server: this replica's internal URL http:\/\/127\.0\.0\.1:\d+ \(CATTY_INTERNAL_URL\) reaches another server, not this replica .*give each replica its own CATTY_INTERNAL_URL/m],
      // With an internal port of its own, the public one has no /v1/internal.
      [
        { CATTY_INTERNAL_PORT: String(freePort()), CATTY_INTERNAL_URL: `http://127.0.0.1:${publicPort}` },
        /^catty-server: this replica's internal URL http:\/\/127\.0\.0\.1:\d+ \(CATTY_INTERNAL_URL\) does not serve \/v1\/internal \(HTTP 404\): point it at the port that does/m,
        publicPort,
      ],
    ];
    for (const [extra, message, port] of cases) {
      const { code, stderr } = await startRefused(duoEnv, extra, port);
      expect({ extra, code, stderr }).toMatchObject({ code: 1, stderr: expect.stringMatching(message) });
    }
    // None of them stayed registered (the killed A's row may still be there, at A's address).
    const urls = ((await duoSql`SELECT url FROM replicas`) as Array<{ url: string }>).map((r) => r.url);
    expect(urls.filter((u) => u !== A.url && u !== (duo[1] as ServerProcess).url)).toEqual([]);
  }, () => duo), 120_000);
});

describe("a replica keeping saves on its own disk", () => {
  test("is refused by a replica on S3 that joins its database", async () => {
    const databaseUrl = await freshDatabase();
    const diskEnv = { ...env, CATTY_DATABASE_URL: databaseUrl, CATTY_S3_BUCKET: undefined, CATTY_S3_ENDPOINT: undefined };
    const alone = new ServerProcess(bins.server, diskEnv);
    try {
      // One replica on PostgreSQL with its saves on disk starts (with a warning).
      await alone.start();
      expect(alone.output).toContain("several replicas need an S3 bucket");
      const { code, stderr } = await startRefused({ ...env, CATTY_DATABASE_URL: databaseUrl }, {});
      expect(code).toBe(1);
      expect(stderr).toMatch(/^catty-server: the replica at http:\/\/127\.0\.0\.1:\d+ keeps saves on its own disk \(no --s3-bucket\), and shares this database: .*Stop it and start every replica with the same S3 bucket/m);
    } finally {
      await alone.stop();
    }
  }, 60_000);
});
