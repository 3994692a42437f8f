/**
 * Malformed WebSocket frames on both endpoints (docs/architecture.md §4): each gets an error message; five in a
 * row close the link with `CLOSE.malformed` and one log line; a good frame in between resets the
 * count. Binary frames from an agent that do not decode count too.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MAX_MALFORMED } from "../../server/relay.ts";
import { CLOSE, parseMessage, PROTOCOL_VERSION, ServerToAgent, ServerToClient } from "../../src/protocol/index.ts";
import { keptLog } from "../helpers/log.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { rogueProvider } from "../helpers/sync-back.ts";
import { waitFor } from "../helpers/wait.ts";

const log = keptLog();
let server: TestServer;
let rogue: ReturnType<typeof rogueProvider>;
let label = "";

beforeAll(async () => {
  server = await startTestServer({ log, wrapProvider: (real) => (rogue = rogueProvider(real)) });
  label = (await server.owner.create({ command: ["sh"] })).label;
});
afterAll(() => server.stop());

interface Link {
  ws: WebSocket;
  texts: string[];
  closed: Promise<{ code: number; reason: string }>;
  isOpen(): boolean;
}

async function link(path: string, token: string): Promise<Link> {
  const ws = new WebSocket(`${server.url.replace(/^http/, "ws")}${path}`, { headers: { Authorization: `Bearer ${token}` } } as never);
  const texts: string[] = [];
  ws.onmessage = (e) => typeof e.data === "string" && texts.push(e.data);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => (ws.onclose = (e) => resolve({ code: e.code, reason: e.reason })));
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error(`could not open ${path}`));
  });
  return { ws, texts, closed, isOpen: () => ws.readyState === WebSocket.OPEN };
}

const errors = (l: Link): string[] =>
  l.texts.flatMap((t) => {
    const m = parseMessage(ServerToClient, t) ?? parseMessage(ServerToAgent, t);
    return m?.type === "error" ? [m.message] : [];
  });

const closingLines = (kind: string): string[] => log.lines.filter((l) => l.includes(`closing a ${kind} link after`));

const JUNK_TEXT = ["not json", "{}", '{"type":"nope"}', '{"type":"ping"}', "[1,2,3]", '{"type":"hello","protocol":"x"}'];

describe("the agent endpoint", () => {
  test("four bad frames get four errors; a good one resets; five in a row close the link, logged once", async () => {
    const agent = await link("/v1/agent/connect", rogue.tokens.get(label) as string);
    agent.ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, offset: 0, cols: 80, rows: 24, pid: null }));
    await waitFor(() => agent.texts.some((t) => t.includes('"welcome"')));
    for (let i = 0; i < MAX_MALFORMED - 1; i++) agent.ws.send(JUNK_TEXT[i] as string);
    agent.ws.send(JSON.stringify({ type: "ping", id: 7 }));
    await waitFor(() => agent.texts.some((t) => t.includes('"pong"')));
    expect(errors(agent)).toHaveLength(MAX_MALFORMED - 1);
    expect(agent.isOpen()).toBe(true);
    const before = log.lines.length;
    // Binary frames that decode as neither output nor sync bytes, then text junk.
    agent.ws.send(new Uint8Array([9, 9, 9]));
    agent.ws.send(new Uint8Array([1, 0, 0]));
    agent.ws.send(new Uint8Array([2]));
    agent.ws.send(new Uint8Array([]));
    agent.ws.send("still not json");
    for (let i = 0; i < 20; i++) agent.ws.send("and more");
    expect(await agent.closed).toEqual({ code: CLOSE.malformed, reason: "too many malformed frames" });
    expect(errors(agent).at(-1)).toMatch(/malformed frames in a row .*closing the link/);
    expect(closingLines("agent")).toHaveLength(1);
    expect(log.lines.length - before).toBe(1);
    // The session is unharmed: its agent may dial in again.
    expect((await server.owner.get(label)).status).toBe("running");
    const again = await link("/v1/agent/connect", rogue.tokens.get(label) as string);
    again.ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, offset: 0, cols: 80, rows: 24, pid: null }));
    await waitFor(() => again.texts.some((t) => t.includes('"welcome"')));
    again.ws.close();
  });
});

describe("the client endpoint", () => {
  test("five bad frames in a row close the link with CLOSE.malformed, logged once", async () => {
    const client = await link(`/v1/sessions/${label}/attach`, server.ownerToken);
    client.ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, mode: "view", offset: null, cols: 80, rows: 24 }));
    await waitFor(() => client.texts.some((t) => t.includes('"attached"')));
    for (let i = 0; i < MAX_MALFORMED - 1; i++) client.ws.send(JUNK_TEXT[i] as string);
    client.ws.send(JSON.stringify({ type: "ping", id: 1 }));
    await waitFor(() => client.texts.some((t) => t.includes('"pong"')));
    expect(client.isOpen()).toBe(true);
    for (let i = 0; i < MAX_MALFORMED + 10; i++) client.ws.send(JSON.stringify({ type: "resize", cols: -1, rows: i }));
    expect(await client.closed).toEqual({ code: CLOSE.malformed, reason: "too many malformed frames" });
    expect(closingLines("client")).toHaveLength(1);
  });

  test("before hello too", async () => {
    const client = await link(`/v1/sessions/${label}/attach`, server.ownerToken);
    for (let i = 0; i < MAX_MALFORMED; i++) client.ws.send("{");
    expect((await client.closed).code).toBe(CLOSE.malformed);
  });
});
