/**
 * The typed reconnecting socket against a real Bun.serve WebSocket server on port 0: typed
 * messages both ways, re-dial after a drop and after failed dials, stop codes, the bounded queue
 * while down, the malformed-frame limit, and the heartbeat giving up a silent peer.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { ServerWebSocket } from "bun";
import { Socket, type DropInfo, type SocketOptions } from "../../src/lib/socket.ts";
import type { Log } from "../../src/lib/log.ts";
import { CLOSE, ClientToServer, ServerToClient } from "../../src/protocol/index.ts";
import { parseMessage } from "../../src/protocol/messages.ts";
import { freePort } from "../helpers/ports.ts";
import { waitFor } from "../helpers/wait.ts";

interface Conn {
  ws: ServerWebSocket<unknown>;
  texts: string[];
  binaries: Uint8Array[];
  closed: { code: number; reason: string } | null;
}

/** A WebSocket server that records every connection and what it got, and answers nothing. */
class Peer {
  readonly conns: Conn[] = [];
  private server: ReturnType<typeof Bun.serve> | null = null;
  auth: string | null = null;

  constructor(public port = 0) {}

  start(): this {
    const byWs = new Map<ServerWebSocket<unknown>, Conn>();
    this.server = Bun.serve({
      hostname: "127.0.0.1",
      port: this.port,
      fetch: (req, server) => {
        this.auth = req.headers.get("authorization");
        return server.upgrade(req, { data: {} }) ? undefined : new Response("no", { status: 400 });
      },
      websocket: {
        open: (ws) => {
          const conn: Conn = { ws, texts: [], binaries: [], closed: null };
          byWs.set(ws, conn);
          this.conns.push(conn);
        },
        message: (ws, msg) => {
          const conn = byWs.get(ws) as Conn;
          if (typeof msg === "string") conn.texts.push(msg);
          else conn.binaries.push(new Uint8Array(msg));
        },
        close: (ws, code, reason) => {
          (byWs.get(ws) as Conn).closed = { code, reason };
        },
      },
    });
    this.port = this.server.port as number;
    return this;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/`;
  }

  last(): Conn {
    const conn = this.conns.at(-1);
    if (!conn) throw new Error("no connection yet");
    return conn;
  }

  stop(): void {
    this.server?.stop(true);
    this.server = null;
  }
}

interface Events {
  opens: number;
  messages: ServerToClient[];
  binaries: Uint8Array[];
  downs: DropInfo[];
}

const peers: Peer[] = [];
const sockets: Array<Socket<ServerToClient, ClientToServer>> = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
  for (const p of peers.splice(0)) p.stop();
});

function peer(port?: number): Peer {
  const p = new Peer(port).start();
  peers.push(p);
  return p;
}

function recordingLog(): Log & { lines: string[] } {
  const lines: string[] = [];
  const at = (msg: string): void => void lines.push(msg);
  return { lines, debug: at, info: at, warn: at, error: at };
}

function socket(
  url: string,
  opts: Partial<SocketOptions<ServerToClient, ClientToServer>> = {},
  onOpen?: (s: Socket<ServerToClient, ClientToServer>) => void,
  acceptBinary: (data: Uint8Array) => boolean = () => true,
): { s: Socket<ServerToClient, ClientToServer>; ev: Events } {
  const ev: Events = { opens: 0, messages: [], binaries: [], downs: [] };
  const s: Socket<ServerToClient, ClientToServer> = new Socket<ServerToClient, ClientToServer>(
    {
      url,
      headers: { Authorization: "Bearer t0ken" },
      schema: ServerToClient,
      log: recordingLog(),
      ping: (id) => ({ type: "ping", id }),
      retry: () => 20,
      ...opts,
    },
    {
      open: () => {
        ev.opens++;
        onOpen?.(s);
      },
      message: (msg) => void ev.messages.push(msg),
      binary: (data) => {
        ev.binaries.push(data);
        return acceptBinary(data);
      },
      down: (info) => void ev.downs.push(info),
    },
  );
  sockets.push(s);
  s.start();
  return { s, ev };
}

const hello: ClientToServer = {
  type: "hello",
  protocol: 1,
  mode: "interactive",
  offset: 0,
  cols: 80,
  rows: 24,
  syncBack: null,
  instance: "i",
  reconnect: false,
};

describe("Socket", () => {
  test("sends typed messages and bytes, parses what comes back, with the given headers", async () => {
    const p = peer();
    const { s, ev } = socket(p.url, {}, (sock) => sock.send(hello));
    await waitFor(() => s.ready, { what: "ready" });
    expect(p.auth).toBe("Bearer t0ken");
    expect(s.sendBinary(new Uint8Array([1, 2, 3]))).toBe(true);
    await waitFor(() => p.last().binaries.length === 1, { what: "bytes at the peer" });
    expect(parseMessage(ClientToServer, p.last().texts[0] as string)).toEqual(hello);
    expect([...(p.last().binaries[0] as Uint8Array)]).toEqual([1, 2, 3]);

    p.last().ws.send(JSON.stringify({ type: "status", message: "hi" }));
    p.last().ws.send(new Uint8Array([9, 8]));
    await waitFor(() => ev.messages.length === 1 && ev.binaries.length === 1, { what: "message and bytes" });
    expect(ev.messages[0]).toEqual({ type: "status", message: "hi" });
    expect([...(ev.binaries[0] as Uint8Array)]).toEqual([9, 8]);
  });

  test("re-dials after the peer drops the link, and says when", async () => {
    const p = peer();
    const { s, ev } = socket(p.url, { retry: ({ wasOpen }) => (wasOpen ? 0 : 50) });
    await waitFor(() => s.ready, { what: "first link" });
    p.last().ws.close(1011, "restarting");
    await waitFor(() => p.conns.length === 2 && s.ready, { what: "second link" });
    expect(ev.opens).toBe(2);
    expect(ev.downs).toEqual([{ code: 1011, reason: "restarting", wasOpen: true, retryInMs: 0 }]);
  });

  test("a url given as a function is asked for before every dial (a one-use ticket); when it fails, that dial failed", async () => {
    const p = peer();
    let asked = 0;
    const { s, ev } = socket(p.url, {
      url: async () => {
        if (++asked === 1) throw new Error("no ticket");
        return `${p.url}?ticket=${asked}`;
      },
      retry: ({ wasOpen }) => (wasOpen ? 0 : 20),
    });
    await waitFor(() => s.ready, { what: "a link on the second ask" });
    expect(ev.downs).toHaveLength(1);
    expect(ev.downs[0]).toMatchObject({ code: 1006, reason: "no ticket", wasOpen: false });
    expect(p.conns).toHaveLength(1);
    p.last().ws.close(1011, "restarting");
    await waitFor(() => p.conns.length === 2 && s.ready, { what: "a link on the third ask" });
    expect(asked).toBe(3);
  });

  test("a url function that answers after close() dials nothing", async () => {
    const p = peer();
    let answer: (url: string) => void = () => {};
    const { s } = socket(p.url, { url: () => new Promise((resolve) => (answer = resolve)) });
    s.close();
    answer(p.url);
    // A dial would be an upgrade at the peer; a ready socket on another peer proves time passed.
    const q = peer();
    const { s: other } = socket(q.url);
    await waitFor(() => other.ready, { what: "another socket's link" });
    expect(p.conns).toHaveLength(0);
  });

  test("keeps dialling while nobody listens, with the schedule's delays, and connects once the peer is up", async () => {
    const port = freePort();
    const asked: number[] = [];
    const { s, ev } = socket(`ws://127.0.0.1:${port}/`, {
      retry: ({ sinceLostMs, previousMs }) => {
        asked.push(sinceLostMs);
        return previousMs === 0 ? 30 : Math.min(previousMs * 2, 120);
      },
      jitter: 0,
    });
    await waitFor(() => ev.downs.length >= 4, { what: "failed dials" });
    expect(ev.downs.slice(0, 4).map((d) => d.retryInMs)).toEqual([30, 60, 120, 120]);
    expect(ev.downs.every((d) => !d.wasOpen)).toBe(true);
    // Time since the loss keeps counting across failed dials.
    expect(asked[3] as number).toBeGreaterThan(asked[0] as number);
    peer(port);
    await waitFor(() => s.ready, { what: "link once the peer is up" });
  });

  test("jitters delays within ±20 %", async () => {
    const port = freePort();
    const { ev } = socket(`ws://127.0.0.1:${port}/`, { retry: () => 50 });
    await waitFor(() => ev.downs.length >= 6, { what: "failed dials" });
    const waits = ev.downs.map((d) => d.retryInMs as number);
    for (const w of waits) expect(w >= 40 && w <= 60).toBe(true);
  });

  test("stops on a stop code: no re-dial", async () => {
    const p = peer();
    const { s, ev } = socket(p.url, { stopOn: [CLOSE.ended, CLOSE.takeover] });
    await waitFor(() => s.ready, { what: "link" });
    p.last().ws.close(CLOSE.takeover, "taken over");
    await waitFor(() => ev.downs.length === 1, { what: "down" });
    expect(ev.downs[0]).toEqual({ code: CLOSE.takeover, reason: "taken over", wasOpen: true, retryInMs: null });
    expect(s.sendBinary(new Uint8Array([1]))).toBe(false);
    expect(s.connected).toBe(false);
  });

  test("without reconnect, the first drop is final", async () => {
    const p = peer();
    const { s, ev } = socket(p.url, { reconnect: false });
    await waitFor(() => s.ready, { what: "link" });
    p.last().ws.close(1001, "going away");
    await waitFor(() => ev.downs.length === 1, { what: "down" });
    expect(ev.downs[0]?.retryInMs).toBeNull();
  });

  test("queues bytes while down (bounded), after the handshake once ready, in order", async () => {
    const p = peer();
    // The re-dial waits long enough for the checks made while down.
    const { s, ev } = socket(p.url, { awaitReady: true, queueBytes: 10, retry: () => 1_000 }, (sock) => sock.send(hello));
    expect(s.sendBinary(new Uint8Array([1, 2, 3, 4]))).toBe(true);
    expect(s.sendBinary(new Uint8Array([5, 6, 7, 8]))).toBe(true);
    expect(s.sendBinary(new Uint8Array([9, 10, 11]))).toBe(false); // over 10 bytes: dropped
    expect(s.sendBinary(new Uint8Array([12, 13]))).toBe(true);
    await waitFor(() => ev.opens === 1, { what: "open" });
    // Open but not ready: bytes still wait, control messages go.
    expect(s.ready).toBe(false);
    expect(s.send({ type: "repaint" })).toBe(true);
    await waitFor(() => p.last().texts.length === 2, { what: "hello and repaint" });
    expect(p.last().binaries).toEqual([]);
    s.markReady();
    await waitFor(() => p.last().binaries.length === 3, { what: "queued bytes" });
    expect(p.last().binaries.map((b) => [...b])).toEqual([[1, 2, 3, 4], [5, 6, 7, 8], [12, 13]]);
    expect(JSON.parse(p.last().texts[0] as string).type).toBe("hello");

    // Down again: queued again, flushed on the next ready link.
    p.last().ws.close(1011, "bye");
    await waitFor(() => ev.downs.length === 1, { what: "down" });
    expect(s.ready).toBe(false);
    expect(s.send({ type: "repaint" })).toBe(false); // control messages are not kept
    expect(s.sendBinary(new Uint8Array([42]))).toBe(true);
    await waitFor(() => ev.opens === 2, { what: "re-open" });
    s.markReady();
    await waitFor(() => p.last().binaries.length === 1, { what: "bytes on the new link" });
    expect([...(p.last().binaries[0] as Uint8Array)]).toEqual([42]);
  });

  test("closes with CLOSE.malformed after 5 malformed frames in a row, logging once", async () => {
    const p = peer();
    const log = recordingLog();
    const { s, ev } = socket(p.url, { log, stopOn: [CLOSE.malformed] });
    await waitFor(() => s.ready, { what: "link" });
    const conn = p.last();
    // Interleaved with good frames it is tolerated.
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 4; i++) conn.ws.send(i % 2 ? "not json" : JSON.stringify({ type: "nope" }));
      conn.ws.send(JSON.stringify({ type: "pong", id: round }));
    }
    await waitFor(() => ev.messages.length === 3, { what: "the good frames" });
    expect(conn.closed).toBeNull();
    for (let i = 0; i < 5; i++) conn.ws.send(`{"type":"status","message":${i}}`);
    await waitFor(() => conn.closed, { what: "the close" });
    expect(conn.closed?.code).toBe(CLOSE.malformed);
    expect(ev.downs.map((d) => d.code)).toEqual([CLOSE.malformed]);
    expect(log.lines.filter((l) => l.includes("malformed"))).toHaveLength(1);
  });

  test("binary frames the owner rejects count toward the same limit; good ones break the run", async () => {
    const p = peer();
    // This owner takes binary frames that start with 1.
    const { s, ev } = socket(p.url, { maxMalformed: 3 }, undefined, (d) => d[0] === 1);
    await waitFor(() => s.ready, { what: "link" });
    const conn = p.last();
    for (const first of [0, 0, 1, 0, 0, 1]) conn.ws.send(new Uint8Array([first]));
    await waitFor(() => ev.binaries.length === 6, { what: "six frames" });
    expect(conn.closed).toBeNull();
    for (let i = 0; i < 3; i++) conn.ws.send(new Uint8Array([7]));
    await waitFor(() => conn.closed, { what: "the close" });
    expect(conn.closed?.code).toBe(CLOSE.malformed);
    // Not a stop code here: it dials again.
    await waitFor(() => p.conns.length === 2 && s.ready, { what: "re-dial" });
  });

  test("pings on the heartbeat and gives up a silent peer, then re-dials", async () => {
    const p = peer();
    const { s, ev } = socket(p.url, { heartbeatMs: 40, deadAfterMs: 200 });
    await waitFor(() => s.ready, { what: "link" });
    const first = p.last();
    await waitFor(() => first.texts.length >= 2, { what: "pings" });
    expect(parseMessage(ClientToServer, first.texts[0] as string)).toEqual({ type: "ping", id: 1 });
    // The peer never answers: dropped as dead, and dialled again.
    await waitFor(() => ev.downs.length >= 1, { what: "dead-peer drop", timeoutMs: 3_000 });
    expect(ev.downs[0]?.code).toBe(CLOSE.deadPeer);
    await waitFor(() => p.conns.length >= 2, { what: "re-dial" });
  });

  test("a peer that talks is not dead", async () => {
    const p = peer();
    const { s, ev } = socket(p.url, { heartbeatMs: 40, deadAfterMs: 200 });
    await waitFor(() => s.ready, { what: "link" });
    const conn = p.last();
    const talk = setInterval(() => conn.ws.send(JSON.stringify({ type: "pong", id: 0 })), 30);
    try {
      await waitFor(() => conn.texts.length >= 15, { what: "600 ms of pings" });
    } finally {
      clearInterval(talk);
    }
    expect(ev.downs).toEqual([]);
  });

  test("close() stops for good and reports nothing", async () => {
    const p = peer();
    const { s, ev } = socket(p.url);
    await waitFor(() => s.ready, { what: "link" });
    s.close();
    await waitFor(() => p.last().closed, { what: "close at the peer" });
    expect(p.last().closed?.code).toBe(1000);
    expect(ev.downs).toEqual([]);
    expect(s.send({ type: "repaint" })).toBe(false);
  });
});
