/**
 * The HTTP routes through `app.request()`, with no socket: a real SQLite store and disk blob store
 * in a temp dir, and a stand-in provider (the seam) that records what it is asked. Then one socket
 * test per WebSocket route, on a real `Bun.serve`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import { createApp, type AppDeps, type CattyApp } from "../../server/app.ts";
import { createDiskBlobStore } from "../../server/blobs/disk.ts";
import { createUserToken, openStore } from "../../server/startup.ts";
import type { MachineSpec, Provider } from "../../server/providers/types.ts";
import type { SocketData } from "../../server/relay.ts";
import type { Store } from "../../server/store/types.ts";
import { hashToken } from "../../server/tokens.ts";
import { createLog } from "../../src/lib/log.ts";
import { VERSION } from "../../src/lib/version.ts";
import { parseMessage, PROTOCOL_VERSION, ServerToAgent, ServerToClient, type MachineHandle } from "../../src/protocol/index.ts";
import { keptLog, type KeptLog } from "../helpers/log.ts";
import { waitFor } from "../helpers/wait.ts";
import { removeAfterRun } from "../helpers/fs.ts";

interface Recorded {
  started: MachineSpec[];
  destroyed: MachineHandle[];
}

/** Stands in for a machine provider: records, and reports this test process as the machine. */
function standInProvider(): Provider & Recorded {
  const started: MachineSpec[] = [];
  const destroyed: MachineHandle[] = [];
  return {
    name: "stand-in",
    regions: [
      { id: "test", name: "Test", place: null },
      { id: "eu-north", name: "EU North", place: "north-1" },
    ],
    isolated: true,
    started,
    destroyed,
    async start(spec) {
      started.push(spec);
      if (spec.command[0] === "fail-to-start") throw new Error("no capacity");
      return { provider: "local", pid: process.pid, dir: "/nonexistent" };
    },
    async isAlive() {
      return true;
    },
    async destroy(machine) {
      destroyed.push(machine);
    },
  };
}

interface Fixture {
  app: CattyApp;
  store: Store;
  provider: Provider & Recorded;
  log: KeptLog;
  token: string;
  otherToken: string;
  serverKey: string;
  dataDir: string;
}

async function fixture(wrapStore: (s: Store) => Store = (s) => s, extra: Partial<AppDeps> = {}): Promise<Fixture> {
  const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-routes-")));
  const store = wrapStore(await openStore({ dataDir }));
  const token = await createUserToken(store, "owner");
  const otherToken = await createUserToken(store, "mallory");
  const provider = standInProvider();
  const log = keptLog();
  const serverKey = "ab".repeat(32);
  const app = createApp({
    store,
    provider,
    blobs: createDiskBlobStore({ dir: join(dataDir, "blobs"), secret: "cd".repeat(32) }),
    log,
    limits: { maxUploadBytes: 1_000_000, maxSaveBytes: 2_000_000, retentionDays: 30 },
    masterKey: Buffer.alloc(32, 7),
    timeouts: { idleTimeoutMs: 3_600_000, minDurationMs: 60_000, maxDurationMs: 7_200_000, tickMs: 1_000 },
    agentUrl: () => "http://agents.test",
    agentLostMs: 60_000,
    stopTimeoutMs: 60_000,
    serverKey,
    ...extra,
  });
  return { app, store, provider, log, token, otherToken, serverKey, dataDir };
}

const auth = (token: string, extra: Record<string, string> = {}) => ({ headers: { Authorization: `Bearer ${token}`, ...extra } });
const json = (token: string, body: unknown) => ({
  method: "POST",
  headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  body: typeof body === "string" ? body : JSON.stringify(body),
});

async function errorOf(res: Response): Promise<{ status: number; code: string; message: string; hint?: string }> {
  const body = (await res.json()) as { type: string; code: string; message: string; hint?: string };
  expect(body.type).toBe("error");
  return { status: res.status, code: body.code, message: body.message, hint: body.hint };
}

let f: Fixture;
beforeAll(async () => {
  f = await fixture();
});
afterAll(() => {
  f.app.close();
  f.store.close();
});

describe("building the app", () => {
  test("starts no timer and touches nothing until start()", async () => {
    const realTimeout = globalThis.setTimeout;
    const realInterval = globalThis.setInterval;
    let timers = 0;
    globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
      timers++;
      return realTimeout(...args);
    }) as typeof setTimeout;
    globalThis.setInterval = ((...args: Parameters<typeof setInterval>) => {
      timers++;
      return realInterval(...args);
    }) as typeof setInterval;
    const touched: string[] = [];
    try {
      const g = await fixture((s) => new Proxy(s, { get: (t, p) => (touched.push(String(p)), Reflect.get(t, p)) }));
      touched.length = 0;
      const app = g.app;
      expect((await app.request("/healthz")).status).toBe(200);
      expect(timers).toBe(0);
      expect(touched).toEqual([]);
      app.close();
      g.store.close();
    } finally {
      globalThis.setTimeout = realTimeout;
      globalThis.setInterval = realInterval;
    }
  });
});

describe("/healthz", () => {
  test("is open and says which version runs", async () => {
    const res = await f.app.request("/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, version: VERSION });
  });

  test("answers a challenge with an HMAC of it keyed by the server key", async () => {
    const challenge = "0123456789abcdef0123456789abcdef";
    const body = (await (await f.app.request(`/healthz?challenge=${challenge}`)).json()) as Record<string, unknown>;
    expect(body).toEqual({ ok: true, version: VERSION, proof: createHmac("sha256", f.serverKey).update(challenge).digest("hex") });
    for (const bad of ["xyz", "12", "0".repeat(300)]) {
      expect((await errorOf(await f.app.request(`/healthz?challenge=${bad}`))).status).toBe(400);
    }
  });
});

describe("operating it: /readyz, /metrics, request ids", () => {
  test("/readyz answers 200 when the database and storage answer, 503 naming what does not, 503 while draining", async () => {
    expect(await (await f.app.request("/readyz")).json()).toEqual({ ok: true });
    const broken = await fixture((s) => ({ ...s, countUsers: () => Promise.reject(new Error("connection refused")) }));
    try {
      const res = await broken.app.request("/readyz");
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ ok: false, problems: ["database: connection refused"] });
      broken.app.drain();
      expect(await (await broken.app.request("/readyz")).json()).toEqual({ ok: false, problems: ["shutting down"] });
    } finally {
      broken.app.close();
    }
  });

  test("/metrics: sessions from the database, errors by code; with a token, only for its bearer", async () => {
    const metricsToken = "m3tr1cs-t0ken";
    const fx = await fixture((s) => s, { metricsToken });
    try {
      const created = await fx.app.request("/v1/sessions", json(fx.token, { command: ["vim"] }));
      expect(created.status).toBe(201);
      expect((await fx.app.request("/v1/sessions/no-such-label-0000", auth(fx.token))).status).toBe(404);
      expect((await fx.app.request("/metrics")).status).toBe(401);
      expect((await fx.app.request("/metrics", auth("wrong"))).status).toBe(401);
      const res = await fx.app.request("/metrics", auth(metricsToken));
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/plain");
      const text = await res.text();
      expect(text).toMatch(/^catty_sessions\{status="starting",provider="stand-in"\} 1$/m);
      expect(text).toMatch(/^catty_errors_total\{code="not_found"\} 1$/m);
      expect(text).toMatch(/^catty_errors_total\{code="unauthorized"\} 2$/m);
      expect(text).toMatch(/^catty_attached_clients\{mode="interactive"\} 0$/m);
      expect(text).toMatch(/^catty_forwarded_clients 0$/m);
      expect(text).toMatch(/^catty_replicas 1$/m);
      expect(text).toMatch(/^process_resident_memory_bytes \d+$/m);
      expect(text).toContain("# TYPE catty_keystroke_echo_seconds histogram");
    } finally {
      fx.app.close();
    }
  });

  test("every answer has a request id, and every log line about a request carries it", async () => {
    const given = await f.app.request("/healthz", { headers: { "X-Request-Id": "lb-1234.abc" } });
    expect(given.headers.get("x-request-id")).toBe("lb-1234.abc");
    const odd = await f.app.request("/healthz", { headers: { "X-Request-Id": "no spaces; $(or) <this>" } });
    expect(odd.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);

    const file = join(removeAfterRun(mkdtempSync(join(tmpdir(), "catty-log-"))), "server.log");
    const log = createLog({ scope: "server", file, format: "json" });
    const fx = await fixture((s) => ({ ...s, listSessions: () => Promise.reject(new Error("disk on fire")) }), { log });
    try {
      const res = await fx.app.request("/v1/sessions", auth(fx.token));
      expect(res.status).toBe(500);
      const id = res.headers.get("x-request-id");
      const lines = readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      const failed = lines.find((l) => l.msg === "request failed");
      expect(failed).toMatchObject({ level: "error", scope: "server", request: id, method: "GET", path: "/v1/sessions" });
      expect(failed?.err).toMatchObject({ message: "disk on fire" });
    } finally {
      fx.app.close();
    }
  });
});

describe("auth", () => {
  test("every user route needs a user's token", async () => {
    const paths: Array<[string, string]> = [
      ["GET", "/v1/whoami"],
      ["GET", "/v1/config"],
      ["GET", "/v1/sessions"],
      ["POST", "/v1/sessions"],
      ["GET", "/v1/sessions/brave-tiger-1234"],
      ["POST", "/v1/sessions/brave-tiger-1234/stop"],
      ["GET", "/v1/sessions/brave-tiger-1234/saves/latest"],
      ["GET", "/v1/sessions/brave-tiger-1234/attach"],
      ["POST", "/v1/uploads"],
    ];
    for (const [method, path] of paths) {
      for (const headers of [{}, { Authorization: "Bearer cat_wrong" }, { Authorization: "Basic abc" }] as Record<string, string>[]) {
        const res = await f.app.request(path, { method, headers });
        expect(`${method} ${path} ${res.status}`).toBe(`${method} ${path} 401`);
        expect((await errorOf(res)).code).toBe("unauthorized");
      }
    }
  });

  test("whoami and config", async () => {
    expect(await (await f.app.request("/v1/whoami", auth(f.token))).json()).toEqual({ user: "owner" });
    expect(await (await f.app.request("/v1/config", auth(f.token))).json()).toEqual({ maxUploadBytes: 1_000_000 });
  });

  test("the agent endpoint needs an agent token", async () => {
    for (const headers of [{}, { Authorization: `Bearer ${f.token}` }, { Authorization: "Bearer agt_forged" }] as Record<string, string>[]) {
      expect((await errorOf(await f.app.request("/v1/agent/connect", { headers }))).status).toBe(401);
    }
  });
});

describe("sessions", () => {
  test("create with defaults: the provider gets the spec, the idle timeout included", async () => {
    const res = await f.app.request("/v1/sessions", { method: "POST", ...auth(f.token) });
    expect(res.status).toBe(201);
    const session = (await res.json()) as { label: string; status: string; command: string[]; idleTimeoutMs: number };
    expect(session).toMatchObject({ status: "starting", command: [], idleTimeoutMs: 3_600_000 });
    const spec = f.provider.started.at(-1);
    expect(spec).toMatchObject({ label: session.label, serverUrl: "http://agents.test", cols: 80, rows: 24, idleTimeoutMs: 3_600_000 });
    expect(spec?.agentToken).toStartWith("agt_");
    const row = await f.store.sessionFor((await f.store.userByName("owner"))!.id, session.label);
    expect(row?.machine).toEqual({ provider: "local", pid: process.pid, dir: "/nonexistent" });
  });

  test("create with a body, then list and show", async () => {
    const res = await f.app.request("/v1/sessions", json(f.token, { command: ["vim"], cols: 100, rows: 30, idleTimeoutMs: 5_000 }));
    expect(res.status).toBe(201);
    const { label } = (await res.json()) as { label: string };
    expect(f.provider.started.at(-1)).toMatchObject({ command: ["vim"], cols: 100, rows: 30, idleTimeoutMs: 5_000 });
    const list = (await (await f.app.request("/v1/sessions", auth(f.token))).json()) as Array<{ label: string }>;
    expect(list[0]?.label).toBe(label);
    const shown = (await (await f.app.request(`/v1/sessions/${label}`, auth(f.token))).json()) as { command: string[]; isolated: boolean };
    expect(shown.command).toEqual(["vim"]);
    expect(shown.isolated).toBe(true); // the provider's word, for the CLI's warning when false
    // Another user's session does not exist for them.
    expect((await errorOf(await f.app.request(`/v1/sessions/${label}`, auth(f.otherToken)))).status).toBe(404);
    expect(await (await f.app.request("/v1/sessions", auth(f.otherToken))).json()).toEqual([]);
  });

  test("bodies that do not match the schema are 400 with the field named, and nothing is created", async () => {
    const before = f.provider.started.length;
    const cases: Array<[unknown, RegExp]> = [
      [{ command: "vim" }, /^Invalid request: command: /],
      [{ cols: 0 }, /^Invalid request: cols: /],
      [{ upload: "../../etc" }, /^Invalid request: upload: /],
      [[], /^Invalid request: body: /],
      ["{nope", /^The request body is not valid JSON\.$/],
      ["null", /^Invalid request: body: /],
    ];
    for (const [body, message] of cases) {
      const e = await errorOf(await f.app.request("/v1/sessions", json(f.token, body)));
      expect(e).toMatchObject({ status: 400, code: "bad_request" });
      expect(e.message).toMatch(message);
    }
    // JSON sent as something else is refused, not ignored.
    const plain = await f.app.request("/v1/sessions", { method: "POST", ...auth(f.token), body: '{"command":["vim"]}' });
    expect((await errorOf(plain)).message).toMatch(/must be JSON/);
    expect((await errorOf(await f.app.request("/v1/sessions", json(f.token, { durationMs: 1000 })))).message).toMatch(/duration must be between/);
    const elsewhere = await errorOf(await f.app.request("/v1/sessions", json(f.token, { region: "mars-north" })));
    expect(elsewhere.message).toMatch(/no region "mars-north"/);
    expect(elsewhere.message).toContain("Test (test), EU North (eu-north)");
    expect(elsewhere.hint).toContain("--region eu-north");
    expect((await errorOf(await f.app.request("/v1/sessions", json(f.token, { region: "Mars North" })))).message).toMatch(/lowercase/);
    expect(f.provider.started.length).toBe(before);
  });

  test("a session in one of the server's regions, asked by id; the first region is the default", async () => {
    const res = await f.app.request("/v1/sessions", json(f.token, { region: "eu-north" }));
    expect(res.status).toBe(201);
    expect(((await res.json()) as { region: string }).region).toBe("eu-north");
    expect(f.provider.started.at(-1)?.region).toEqual({ id: "eu-north", name: "EU North", place: "north-1" });
    const plain = await f.app.request("/v1/sessions", json(f.token, {}));
    expect(((await plain.json()) as { region: string }).region).toBe("test");
  });

  test("a session's maximum duration is exactly the one asked for", async () => {
    for (let i = 0; i < 20; i++) {
      const res = await f.app.request("/v1/sessions", json(f.token, { durationMs: 3_600_000 }));
      const s = (await res.json()) as { createdAt: string; expiresAt: string };
      expect(Date.parse(s.expiresAt) - Date.parse(s.createdAt)).toBe(3_600_000);
    }
  });

  test("a body over 1 MiB is refused with 413 after reading at most about that much", async () => {
    let pulled = 0;
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    const body = new ReadableStream<Uint8Array>({
      pull(ctl) {
        pulled += chunk.length;
        if (pulled > 400 * 1024 * 1024) ctl.close();
        else ctl.enqueue(chunk);
      },
    });
    const res = await f.app.request("/v1/sessions", {
      method: "POST",
      headers: { Authorization: `Bearer ${f.token}`, "Content-Type": "application/json" },
      body,
      duplex: "half",
    } as RequestInit);
    expect(await errorOf(res)).toMatchObject({ status: 413, code: "too_large" });
    expect(pulled).toBeLessThan(2 * 1024 * 1024);
    const declared = await f.app.request("/v1/sessions", {
      method: "POST",
      headers: { Authorization: `Bearer ${f.token}`, "Content-Type": "application/json", "Content-Length": String(400 * 1024 * 1024) },
      body: "{}",
    });
    expect(declared.status).toBe(413);
  });

  test("a machine that cannot start: 503, and the session is recorded as failed", async () => {
    const res = await f.app.request("/v1/sessions", json(f.token, { command: ["fail-to-start"] }));
    const e = await errorOf(res);
    expect(e).toMatchObject({ status: 503, code: "unavailable" });
    expect(e.message).toMatch(/could not start: no capacity/);
    const list = (await (await f.app.request("/v1/sessions", auth(f.token))).json()) as Array<{ status: string; endReason: string }>;
    expect(list[0]).toMatchObject({ status: "failed", endReason: "could not start the session machine: no capacity" });
  });

  test("stop without a connected agent destroys the machine and records the stop", async () => {
    const { label } = (await (await f.app.request("/v1/sessions", json(f.token, { command: ["sleep", "1"] }))).json()) as { label: string };
    const res = await f.app.request(`/v1/sessions/${label}/stop`, { method: "POST", ...auth(f.token) });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "stopped", endReason: "stopped by user (machine destroyed)" });
    expect(f.provider.destroyed.length).toBeGreaterThan(0);
    // Stopping again changes nothing.
    expect(await (await f.app.request(`/v1/sessions/${label}/stop`, { method: "POST", ...auth(f.token) })).json()).toMatchObject({
      status: "stopped",
    });
  });

  test("unknown labels, saves and routes are 404; an attach without a socket is 400", async () => {
    expect((await errorOf(await f.app.request("/v1/sessions/no-such-1234", auth(f.token)))).status).toBe(404);
    expect((await errorOf(await f.app.request("/v1/sessions/..%2F..%2Fetc", auth(f.token)))).status).toBe(404);
    const { label } = (await (await f.app.request("/v1/sessions", json(f.token, {}))).json()) as { label: string };
    const latest = await errorOf(await f.app.request(`/v1/sessions/${label}/saves/latest`, auth(f.token)));
    expect(latest).toMatchObject({ status: 404, code: "not_found" });
    expect((await errorOf(await f.app.request("/v1/nothing", auth(f.token)))).message).toBe("No route for GET /v1/nothing.");
    expect((await errorOf(await f.app.request("/v1/sessions", { method: "DELETE", ...auth(f.token) }))).status).toBe(404);
    const attach = await errorOf(await f.app.request(`/v1/sessions/${label}/attach`, auth(f.token)));
    expect(attach).toMatchObject({ status: 400, message: "Expected a WebSocket upgrade." });
  });

  test("bad percent-encoding in a path is 400 or 404, never 500", async () => {
    for (const path of ["/v1/sessions/%ZZ", "/v1/sessions/%ZZ/stop", "/v1/sessions/%E0%A4%A/attach", "/v1/blobs/%E0%A4%A", "/%", "/v1/%ZZ"]) {
      for (const method of ["GET", "POST", "PUT"]) {
        const res = await f.app.request(path, { method, ...auth(f.token) });
        expect(`${method} ${path} ${[400, 404].includes(res.status)}`).toBe(`${method} ${path} true`);
      }
    }
  });
});

describe("errors", () => {
  test("an unexpected failure is a 500 that says little, and one log line with the details", async () => {
    const g = await fixture((s) => ({
      ...s,
      listSessions: async () => {
        throw new Error("disk on fire");
      },
    }));
    const e = await errorOf(await g.app.request("/v1/sessions", auth(g.token)));
    expect(e).toMatchObject({ status: 500, code: "internal", message: "Internal server error." });
    expect(g.log.lines.filter((l) => l.includes("disk on fire"))).toHaveLength(1);
    g.app.close();
    g.store.close();
  });
});

// ── the WebSocket routes, on a real socket ────────────────────────────────────────────────────

describe("WebSocket routes", () => {
  let server: Server<SocketData>;
  let base: string;
  let agentToken = "";
  let label = "";
  beforeAll(async () => {
    server = Bun.serve<SocketData>({ port: 0, hostname: "127.0.0.1", fetch: f.app.fetch, websocket: f.app.websocket });
    base = `ws://127.0.0.1:${server.port}`;
    const res = await f.app.request("/v1/sessions", json(f.token, { command: ["sh"] }));
    label = ((await res.json()) as { label: string }).label;
    agentToken = f.provider.started.at(-1)?.agentToken ?? "";
  });
  afterAll(() => server.stop(true));

  function open(path: string, token: string): Promise<{ ws: WebSocket; texts: string[] }> {
    const ws = new WebSocket(`${base}${path}`, { headers: { Authorization: `Bearer ${token}` } } as never);
    const texts: string[] = [];
    ws.onmessage = (e) => typeof e.data === "string" && texts.push(e.data);
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve({ ws, texts });
      ws.onerror = () => reject(new Error(`could not open ${path}`));
    });
  }

  test("/v1/agent/connect: hello gets a welcome", async () => {
    const { ws, texts } = await open("/v1/agent/connect", agentToken);
    ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, offset: 0, cols: 80, rows: 24, pid: null }));
    const welcome = await waitFor(() => texts.map((t) => parseMessage(ServerToAgent, t)).find((m) => m?.type === "welcome"));
    expect(welcome).toMatchObject({ type: "welcome", protocol: PROTOCOL_VERSION, label, restore: null });
    ws.close();
  });

  test("/v1/sessions/<label>/attach: hello gets attached", async () => {
    const { ws, texts } = await open(`/v1/sessions/${label}/attach`, f.token);
    ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, mode: "view", offset: null, cols: 80, rows: 24 }));
    const attached = await waitFor(() => texts.map((t) => parseMessage(ServerToClient, t)).find((m) => m?.type === "attached"));
    expect(attached).toMatchObject({ type: "attached", label, mode: "view" });
    ws.close();
  });
});

describe("files handed to a running session", () => {
  let server: Server<SocketData>;
  let base: string;
  let label = "";
  let agent: WebSocket;
  /** How the stand-in agent answers put_file: by fetching the bytes, or with an error. */
  let answer: "fetch" | "refuse" = "fetch";
  const received: Uint8Array[] = [];
  beforeAll(async () => {
    server = Bun.serve<SocketData>({ port: 0, hostname: "127.0.0.1", fetch: f.app.fetch, websocket: f.app.websocket });
    base = `127.0.0.1:${server.port}`;
    label = ((await (await f.app.request("/v1/sessions", json(f.token, { command: ["sh"] }))).json()) as { label: string }).label;
    const token = f.provider.started.at(-1)?.agentToken ?? "";
    agent = new WebSocket(`ws://${base}/v1/agent/connect`, { headers: { Authorization: `Bearer ${token}` } } as never);
    agent.onmessage = async (e) => {
      const msg = parseMessage(ServerToAgent, String(e.data));
      if (msg?.type !== "put_file") return;
      if (answer === "refuse") return agent.send(JSON.stringify({ type: "file_put", id: msg.id, path: null, error: "disk full" }));
      const bytes = new Uint8Array(await (await fetch(new URL(msg.url, `http://${base}/`))).arrayBuffer());
      received.push(bytes);
      agent.send(JSON.stringify({ type: "file_put", id: msg.id, path: `/workspace/.catty-uploads/${msg.name}`, error: null }));
    };
    await new Promise((resolve) => (agent.onopen = resolve));
    agent.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, offset: 0, cols: 80, rows: 24, pid: 1 }));
    await waitFor(async () => (await f.store.sessionFor((await f.store.userByTokenHash(hashToken(f.token)))!.id, label))?.status === "running", { what: "running" });
  });
  afterAll(() => {
    agent.close();
    server.stop(true);
  });
  const put = (name: string, body: string | Uint8Array | ReadableStream<Uint8Array>, token = f.token, l = label) =>
    fetch(`http://${base}/v1/sessions/${l}/files?name=${encodeURIComponent(name)}`, { method: "POST", headers: { Authorization: `Bearer ${token}` }, body });

  test("the agent fetches it under its stored name; the answer is the path the program sees; nothing is kept", async () => {
    const bytes = crypto.getRandomValues(new Uint8Array(200_000));
    const res = await put("Screen Shot.png", bytes);
    expect(res.status).toBe(201);
    const { path, size } = (await res.json()) as { path: string; size: number };
    expect(path).toMatch(/^\/workspace\/\.catty-uploads\/Screen-Shot-\d{8}-\d{6}\.png$/);
    expect(size).toBe(bytes.length);
    expect(received.at(-1)).toEqual(bytes);
    const blobs = createDiskBlobStore({ dir: join(f.dataDir, "blobs"), secret: "cd".repeat(32) });
    expect(await blobs.list("files/")).toEqual([]);
  });

  test("refused before anything reaches the agent: a type, a size (declared or streamed), another user's session, no token", async () => {
    const before = received.length;
    expect(await errorOf(await put("tool.exe", "x"))).toMatchObject({ status: 400, message: expect.stringContaining("not a file type") });
    expect(await errorOf(await put("big.png", new Uint8Array(10 * 1024 * 1024 + 1)))).toMatchObject({ status: 413 });
    const stream = new ReadableStream<Uint8Array>({
      start(ctl) {
        for (let i = 0; i < 11; i++) ctl.enqueue(new Uint8Array(1024 * 1024));
        ctl.close();
      },
    });
    expect((await errorOf(await put("streamed.png", stream))).status).toBe(413);
    expect((await errorOf(await put("a.png", "x", f.otherToken))).status).toBe(404);
    const anonymous = await fetch(`http://${base}/v1/sessions/${label}/files?name=a.png`, { method: "POST", body: "x" });
    expect(anonymous.status).toBe(401);
    expect(received.length).toBe(before);
  });

  test("the agent's refusal is a 503 that says why", async () => {
    answer = "refuse";
    try {
      const e = await errorOf(await put("notes.md", "# hi"));
      expect(e.status).toBe(503);
      expect(e.message).toContain("disk full");
    } finally {
      answer = "fetch";
    }
  });

  test("a session that is not running, or whose machine is not connected: a clear error", async () => {
    const other = ((await (await f.app.request("/v1/sessions", json(f.token, { command: ["sh"] }))).json()) as { label: string }).label;
    expect(await errorOf(await put("a.png", "x", f.token, other))).toMatchObject({ status: 409, message: expect.stringContaining("is starting") });
    const row = await f.store.sessionFor((await f.store.userByTokenHash(hashToken(f.token)))!.id, other);
    await f.store.updateSession(row!.id, { status: "running" });
    expect(await errorOf(await put("a.png", "x", f.token, other))).toMatchObject({ status: 503, message: expect.stringContaining("not connected") });
  });
});
