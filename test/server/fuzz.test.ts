/**
 * Property-based fuzzing of a real server on port 0: valid messages of every variant of
 * `AgentToServer` and `ClientToServer` with fields dropped, retyped, lengthened or renamed, random
 * JSON, truncated JSON and random binary frames, thrown at both WebSocket endpoints; and random
 * methods, paths, headers and bodies at every HTTP route. The server must answer with an error or
 * close the link — never a 500, never an unhandled rejection — and keep serving: `/healthz`
 * answers after every batch, and an unrelated session (a real agent running a counter that prints
 * every 50 ms) keeps streaming to its attached client, in order, without a gap, throughout.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import type { MachineSpec, Provider } from "../../server/providers/types.ts";
import {
  decodeClientOutput,
  encodeAgentOutput,
  encodeAgentSync,
  PROTOCOL_VERSION,
  type AgentToServer,
  type ClientToServer,
} from "../../src/protocol/index.ts";
import { keptLog } from "../helpers/log.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";

/** Each property runs as often as it can within its time budget (the whole file stays under 30 s). */
const RUNS = 100_000;
const BUDGET_MS = 5_000;

const COUNTER = ["sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done"];

// ── the server, and an unrelated session that streams all along ──────────────────────────────

const problems: string[] = [];
const onRejection = (err: unknown): void => void problems.push(`unhandled rejection: ${String(err)}`);
const onException = (err: unknown): void => void problems.push(`uncaught exception: ${String(err)}`);

let server: TestServer;
const log = keptLog();
/** Agent tokens of the fuzz sessions (whose machines are not started; the test plays their agents). */
const fuzzTokens = new Map<string, string>();
let counterLabel = "";
const stream = { text: "", frames: 0, end: -1, gaps: 0, lastAt: 0, maxSilenceMs: 0 };
let viewer: WebSocket;

/** Starts the counter session's machine for real; every other session is the test's to play. */
function provider(real: Provider): Provider {
  return {
    name: real.name,
    regions: real.regions,
    isolated: real.isolated,
    async start(spec: MachineSpec) {
      if (spec.command.join(" ") === COUNTER.join(" ")) return real.start(spec);
      fuzzTokens.set(spec.label, spec.agentToken);
      return { provider: "local", pid: process.pid, dir: "/nonexistent" };
    },
    isAlive: (m) => (m.provider === "local" && m.pid === process.pid ? Promise.resolve(true) : real.isAlive(m)),
    destroy: (m) => (m.provider === "local" && m.pid === process.pid ? Promise.resolve() : real.destroy(m)),
  };
}

beforeAll(async () => {
  process.on("unhandledRejection", onRejection);
  process.on("uncaughtException", onException);
  server = await startTestServer({ log, wrapProvider: provider });
  counterLabel = (await server.owner.create({ command: COUNTER })).label;
  viewer = new WebSocket(`${wsBase()}/v1/sessions/${counterLabel}/attach`, { headers: auth() } as never);
  viewer.binaryType = "arraybuffer";
  viewer.onopen = () => viewer.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, mode: "view", offset: null, cols: 80, rows: 24 }));
  viewer.onmessage = (e) => {
    if (typeof e.data === "string") return; // the screen, statuses
    const frame = decodeClientOutput(new Uint8Array(e.data as ArrayBuffer));
    if (!frame) return;
    if (stream.end !== -1 && frame.offset !== stream.end) stream.gaps++;
    stream.end = frame.offset + frame.data.length;
    stream.text += new TextDecoder().decode(frame.data);
    stream.frames++;
    const now = Date.now();
    if (stream.lastAt) stream.maxSilenceMs = Math.max(stream.maxSilenceMs, now - stream.lastAt);
    stream.lastAt = now;
  };
  await waitFor(() => counted().length >= 5, { timeoutMs: 20_000, what: "the counter session to stream" });
  stream.maxSilenceMs = 0;
}, 30_000);

afterAll(async () => {
  viewer?.close();
  await server?.stop();
  process.off("unhandledRejection", onRejection);
  process.off("uncaughtException", onException);
});

const wsBase = (): string => server.url.replace(/^http/, "ws");
const auth = (): Record<string, string> => ({ Authorization: `Bearer ${server.ownerToken}` });

/** The counter's numbers received so far (whole lines only). */
function counted(): number[] {
  const lines = stream.text.split(/\r?\n/).slice(1, -1);
  return lines.filter((l) => /^\d+$/.test(l)).map(Number);
}

/** After each batch: the server answers, and the counter went on, in order and without a gap. */
async function expectHealthy(since: number): Promise<void> {
  expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  await waitFor(() => counted().length > since + 3, { timeoutMs: 5_000, what: "the counter to keep streaming" });
  const numbers = counted();
  const jumps = numbers.slice(1).filter((n, i) => n !== (numbers[i] as number) + 1);
  expect(jumps).toEqual([]);
  expect(stream.gaps).toBe(0);
  expect(problems).toEqual([]);
  expect(log.lines.filter((l) => l.startsWith("error"))).toEqual([]);
}

// ── frames ─────────────────────────────────────────────────────────────────────────────────────

const AGENT_EXAMPLES: AgentToServer[] = [
  { type: "hello", protocol: PROTOCOL_VERSION, offset: 0, cols: 80, rows: 24, pid: 1234 },
  { type: "screen", clientId: 1, offset: 0, data: "\u001b[H$ ", cols: 80, rows: 24 },
  { type: "synced", clientId: 1, offset: 10 },
  { type: "exit", code: 0, reason: null, screen: "bye", finalSave: "stored" },
  { type: "restore_failed", error: "broken archive" },
  { type: "restored", files: 3, bytes: 100 },
  { type: "save_request", id: "save-0001", reason: "periodic" },
  { type: "save_done", id: "save-0001", root: "0000000000000000000000000000000000000000000000000000000000000000", size: 10, files: 1 },
  { type: "sync", clientId: 1, event: { kind: "start", epoch: "e1", seq: 0 } },
  { type: "sync", clientId: 1, event: { kind: "file", seq: 1, path: "a.txt", size: 3, transfer: 1 } },
  { type: "sync", clientId: 1, event: { kind: "file_end", transfer: 1, bytes: 3 } },
  { type: "sync", clientId: 1, event: { kind: "dir", seq: 2, path: "d" } },
  { type: "sync", clientId: 1, event: { kind: "delete", seq: 3, path: "a.txt" } },
  { type: "sync", clientId: 1, event: { kind: "skip", seq: 4, path: "big", reason: "too large" } },
  { type: "sync", clientId: 1, event: { kind: "caught_up", seq: 4 } },
  { type: "ping", id: 1 },
  { type: "pong", id: 1 },
];

const CLIENT_EXAMPLES: ClientToServer[] = [
  { type: "hello", protocol: PROTOCOL_VERSION, mode: "interactive", offset: null, cols: 80, rows: 24, syncBack: { epoch: null, seq: 0 }, instance: "i1", reconnect: false },
  { type: "hello", protocol: PROTOCOL_VERSION, mode: "view", offset: 5, cols: 80, rows: 24, syncBack: null, instance: "", reconnect: true },
  { type: "repaint" },
  { type: "resize", cols: 120, rows: 40 },
  { type: "ping", id: 2 },
  { type: "pong", id: 2 },
];

const weird: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.string({ maxLength: 50 }),
  fc.integer(),
  fc.double(),
  fc.constantFrom(-1, 0, 2 ** 32, 2 ** 53, Number.MAX_VALUE, "", null, true, [], {}),
  fc.nat({ max: 300_000 }).map((n) => "x".repeat(n)),
);

/** A valid message with one thing wrong (or nothing). */
function mutated(examples: object[]): fc.Arbitrary<unknown> {
  return fc.constantFrom(...examples).chain((base) => {
    const msg = base as Record<string, unknown>;
    const keys = Object.keys(msg);
    return fc.oneof(
      fc.constant(msg),
      fc.constantFrom(...keys).map((k) => Object.fromEntries(Object.entries(msg).filter(([key]) => key !== k))),
      fc.tuple(fc.constantFrom(...keys), weird).map(([k, v]) => ({ ...msg, [k]: v })),
      fc.tuple(fc.string({ maxLength: 10 }), weird).map(([k, v]) => ({ ...msg, [k]: v })),
      fc.string({ maxLength: 12 }).map((type) => ({ ...msg, type })),
      weird.map((event) => ({ ...msg, event })),
    );
  });
}

function textFrames(examples: object[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: mutated(examples).map((m) => JSON.stringify(m) ?? "null") },
    { weight: 1, arbitrary: fc.tuple(mutated(examples), fc.nat()).map(([m, n]) => (JSON.stringify(m) ?? "").slice(0, n % 64)) },
    { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 1, arbitrary: fc.string({ maxLength: 100 }) },
  );
}

const binaryFrames: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.uint8Array({ maxLength: 4096 }),
  fc.tuple(fc.nat(), fc.nat(), fc.uint8Array({ maxLength: 256 })).map(([client, offset, data]) => encodeAgentOutput(client % 4, offset, data)),
  fc.tuple(fc.nat(), fc.nat(), fc.uint8Array({ maxLength: 256 })).map(([client, transfer, data]) => encodeAgentSync(client % 4, transfer % 4, data)),
);

const frames = (examples: object[]): fc.Arbitrary<Array<string | Uint8Array>> =>
  fc.array(fc.oneof({ weight: 3, arbitrary: textFrames(examples) }, { weight: 1, arbitrary: binaryFrames }), { maxLength: 12 });

/** Opens a link, sends the frames, and closes once the server has had them (or has closed it). */
async function throwAt(path: string, token: string, first: string | null, payload: Array<string | Uint8Array>): Promise<void> {
  const ws = new WebSocket(`${wsBase()}${path}`, { headers: { Authorization: `Bearer ${token}` } } as never);
  const closed = new Promise<void>((resolve) => (ws.onclose = () => resolve()));
  const opened = await new Promise<boolean>((resolve) => {
    ws.onopen = () => resolve(true);
    ws.onerror = () => resolve(false);
  });
  if (!opened) return;
  if (first) ws.send(first);
  for (const f of payload) ws.send(f);
  ws.close();
  await closed;
}

async function fuzzSession(): Promise<{ label: string; token: string }> {
  const { label } = await server.owner.create({ command: ["fuzz"] });
  return { label, token: fuzzTokens.get(label) as string };
}

const property = { numRuns: RUNS, plugins: [fc.interruptAfterTimeLimit(BUDGET_MS)] };

describe("fuzzing a live server", () => {
  test("agent endpoint: mutated, random and binary frames", async () => {
    const since = counted().length;
    let session = await fuzzSession();
    let runs = 0;
    const hello = JSON.stringify(AGENT_EXAMPLES[0]);
    await fc.assert(
      fc.asyncProperty(fc.boolean(), frames(AGENT_EXAMPLES), async (sayHello, payload) => {
        // A fresh session now and then: an agent may well end its own with an `exit`.
        if (++runs % 10 === 0) session = await fuzzSession();
        await throwAt("/v1/agent/connect", session.token, sayHello ? hello : null, payload);
      }),
      property,
    );
    await expectHealthy(since);
  }, 20_000);

  test("client endpoint: mutated, random and binary frames", async () => {
    const since = counted().length;
    const sessions = [await fuzzSession(), await fuzzSession()];
    // One session has an agent connected, so input and attaches reach it.
    const agent = new WebSocket(`${wsBase()}/v1/agent/connect`, { headers: { Authorization: `Bearer ${sessions[0]?.token}` } } as never);
    await new Promise<void>((resolve) => (agent.onopen = () => resolve()));
    agent.send(JSON.stringify(AGENT_EXAMPLES[0]));
    await fc.assert(
      fc.asyncProperty(fc.nat(1), fc.option(fc.constantFrom(0, 1)), frames(CLIENT_EXAMPLES), async (which, hello, payload) => {
        const label = sessions[which]?.label as string;
        const first = hello === null ? null : JSON.stringify(CLIENT_EXAMPLES[hello]);
        await throwAt(`/v1/sessions/${label}/attach`, server.ownerToken, first, payload);
      }),
      property,
    );
    agent.close();
    await expectHealthy(since);
  }, 20_000);

  test("HTTP: random methods, paths, headers and bodies at every route", async () => {
    const since = counted().length;
    const { label } = await fuzzSession();
    const segment = fc.oneof(
      fc.constantFrom(label, "brave-tiger-1234", "..", ".", "%", "%ZZ", "%E0%A4%A", "%2F..%2F", "a".repeat(5000), "\u00e9", "null"),
      fc.string({ maxLength: 20 }).map(encodeURIComponent),
    );
    const path = fc.oneof(
      fc.constantFrom("/healthz", "/v1/whoami", "/v1/config", "/v1/sessions", "/v1/uploads", "/v1/agent/connect", "/v1", "/", "/v2/sessions"),
      segment.map((s) => `/v1/sessions/${s}`),
      fc.tuple(segment, fc.constantFrom("stop", "attach", "saves/latest", "saves", "x")).map(([s, tail]) => `/v1/sessions/${s}/${tail}`),
      segment.map((s) => `/v1/blobs/${s}`),
      fc.tuple(segment, segment).map(([a, b]) => `/v1/blobs/${a}.${b}`),
      fc.string({ maxLength: 10 }).map((q) => `/healthz?challenge=${encodeURIComponent(q)}`),
    );
    const body = fc.oneof(
      fc.constant(undefined),
      fc.json({ maxDepth: 3 }),
      mutated([{ command: ["fuzz"], cols: 80, rows: 24 }, { upload: "abcdef12-3456", from: label }, { durationMs: 5_000_000, idleTimeoutMs: 5_000 }]).map(
        (m) => JSON.stringify(m) ?? "",
      ),
      fc.uint8Array({ maxLength: 2048 }),
    );
    const headers = fc.record({
      auth: fc.constantFrom("owner", "none", "junk"),
      type: fc.constantFrom(undefined, "application/json", "text/plain", "application/gzip", "application/json; charset=utf-8"),
    });
    const method = fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS");
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(method, path, body, headers, async (m, p, b, h) => {
        const init: RequestInit = { method: m, headers: {} };
        const hs = init.headers as Record<string, string>;
        if (h.auth === "owner") hs.Authorization = `Bearer ${server.ownerToken}`;
        if (h.auth === "junk") hs.Authorization = "Bearer cat_junk";
        if (h.type) hs["Content-Type"] = h.type;
        if (b !== undefined && m !== "GET" && m !== "HEAD") init.body = b;
        // Never stop the session that must keep streaming.
        if (p.includes(counterLabel)) return;
        const res = await fetch(`${server.url}${p}`, init);
        await res.arrayBuffer();
        statuses.add(res.status);
        expect(`${m} ${p} ${res.status}`).not.toMatch(/ 5\d\d$/);
      }),
      property,
    );
    expect(statuses.size).toBeGreaterThan(3);
    await expectHealthy(since);
  }, 20_000);

  test("the counter streamed throughout", () => {
    expect(stream.gaps).toBe(0);
    // A loaded two-core machine may stall now and then; a stuck relay stalls for good.
    expect(stream.maxSilenceMs).toBeLessThan(5_000);
    expect(problems).toEqual([]);
  });
});
