/**
 * Port forwards through the server: it pairs a client's forward link
 * (`/v1/sessions/<label>/forward?id=`) with the link the session's agent dials for it when asked
 * (`/v1/agent/forward?id=`), and passes frames between the two unchanged. The streams, their
 * windows and their resumption are the two ends' business (src/lib/mux.ts); here each frame is
 * only checked at the edge (a peer that keeps sending garbage is disconnected) and pings are
 * answered. When either half drops, the other is closed too, and the client dials again with the
 * same id: the agent has kept the forward's connections, and the new pair resumes them.
 *
 * Flow control needs nothing here: each end may have at most `MUX_LINK_WINDOW` bytes in flight,
 * which is all this server ever holds for a slow reader.
 */
import type { ServerWebSocket } from "bun";
import { CLOSE, decodeMuxFrame, ForwardMessage, parseMessage, type ServerToAgent } from "../src/protocol/index.ts";
import type { Log } from "../src/lib/log.ts";
import { Mux, type MuxStream } from "../src/lib/mux.ts";
import { MAX_MALFORMED } from "./relay.ts";

export interface TunnelData {
  kind: "tunnel";
  side: "client" | "agent";
  sessionId: string;
  label: string;
  forwardId: string;
  malformed: number;
  peer: ServerWebSocket<TunnelData> | null;
  /** Frames a client sent before the agent's half was there (its hello). */
  queued: Array<string | Buffer>;
  /** The client's forwarded ports (from its hello) and since when, for the session's listing. */
  ports: number[];
  since: string;
  ended?: undefined;
}

export type TunnelSocket = ServerWebSocket<TunnelData>;

/** How long a client's half waits for the agent's before it is told to dial again. */
const PAIR_TIMEOUT_MS = 30_000;
const MAX_QUEUED = 16;
/** Forwards one session may have open at once (each costs the agent a link). */
export const MAX_FORWARDS = 64;

export interface ForwardInfo {
  ports: number[];
  since: string;
}

export class Tunnels {
  /** Client halves by session, then forward id. */
  private readonly clients = new Map<string, Map<string, TunnelSocket>>();
  /** The server's own forward to each session (preview links): its streams and the agent's half. */
  private readonly locals = new Map<string, { id: string; mux: Mux; agent: TunnelSocket | null }>();

  constructor(
    private readonly deps: {
      log: Log;
      /** Sends a message on the session's agent link; false when the agent is not connected. */
      toAgent(sessionId: string, msg: ServerToAgent): boolean;
    },
  ) {}

  open(ws: TunnelSocket): void {
    const d = ws.data;
    if (d.side === "agent") return this.pair(ws);
    let forwards = this.clients.get(d.sessionId);
    if (!forwards) this.clients.set(d.sessionId, (forwards = new Map()));
    const old = forwards.get(d.forwardId);
    if (!old && forwards.size >= MAX_FORWARDS) {
      ws.send(JSON.stringify({ type: "error", code: "too_many_requests", message: `Session ${d.label} has ${MAX_FORWARDS} forwards open already; stop one first.` }));
      ws.close(CLOSE.protocol, "too many forwards");
      return;
    }
    forwards.set(d.forwardId, ws);
    if (old && old !== ws) old.close(CLOSE.replaced, "replaced by a newer link of the same forward");
    this.deps.toAgent(d.sessionId, { type: "forward", id: d.forwardId });
    setTimeout(() => {
      if (ws.readyState === 1 && !ws.data.peer) ws.close(CLOSE.restart, "the session machine did not answer for this forward; dial again");
    }, PAIR_TIMEOUT_MS);
  }

  /**
   * A stream to the session's `port` on the server's own forward (preview links); null when the
   * session's agent is not connected. It waits, as a client's would, while the agent's half dials.
   */
  localStream(sessionId: string, port: number): MuxStream | null {
    let l = this.locals.get(sessionId);
    if (!l) {
      const entry = {
        id: Buffer.from(crypto.getRandomValues(new Uint8Array(18))).toString("base64url"),
        mux: new Mux({ role: "opener", onViolation: (what) => this.malformed(entry.agent, what) }),
        agent: null as TunnelSocket | null,
      };
      l = entry;
      this.locals.set(sessionId, l);
    }
    if (!l.agent && !this.deps.toAgent(sessionId, { type: "forward", id: l.id })) return null;
    return l.mux.open(port);
  }

  /** The agent's half: joined to the client's waiting for it. */
  private pair(agent: TunnelSocket): void {
    const d = agent.data;
    const local = this.locals.get(d.sessionId);
    if (local?.id === d.forwardId) {
      local.agent?.close(CLOSE.replaced, "replaced");
      local.agent = agent;
      local.mux.attach({ send: (b) => void agent.send(b), hello: (h) => void agent.send(JSON.stringify(h)) });
      return;
    }
    const client = this.clients.get(d.sessionId)?.get(d.forwardId);
    if (!client || client.readyState !== 1 || client.data.peer) {
      agent.close(1000, "no one is waiting for this forward");
      return;
    }
    client.data.peer = agent;
    d.peer = client;
    for (const m of client.data.queued.splice(0)) agent.send(m);
  }

  /** The agent (re)connected: it is asked for every forward waiting for it. */
  agentUp(sessionId: string): void {
    for (const [id, ws] of this.clients.get(sessionId) ?? []) {
      if (!ws.data.peer) this.deps.toAgent(sessionId, { type: "forward", id });
    }
    const local = this.locals.get(sessionId);
    if (local && !local.agent && local.mux.streams.size > 0) this.deps.toAgent(sessionId, { type: "forward", id: local.id });
  }

  message(ws: TunnelSocket, raw: string | Buffer): void {
    const d = ws.data;
    if (typeof raw !== "string") {
      if (!decodeMuxFrame(raw)) return this.malformed(ws, "a binary frame that is not a stream frame");
    } else {
      const msg = parseMessage(ForwardMessage, raw);
      if (!msg) return this.malformed(ws, "a message that is not valid JSON of a known type");
      if (msg.type === "ping") {
        ws.send(JSON.stringify({ type: "pong", id: msg.id }));
        d.malformed = 0;
        return;
      }
      if (msg.type === "pong") return;
      if (msg.type === "hello" && d.side === "client") d.ports = msg.ports;
      const local = this.localOf(ws);
      if (local) {
        d.malformed = 0;
        if (msg.type === "hello") local.mux.hello(msg);
        return;
      }
    }
    const local = this.localOf(ws);
    if (local && typeof raw !== "string") {
      d.malformed = 0;
      local.mux.frame(raw);
      return;
    }
    d.malformed = 0;
    const peer = d.peer;
    if (peer) {
      // Never more than the ends' windows is in flight, so a dropped frame means a broken peer.
      if (peer.readyState === 1 && peer.send(raw) === 0) {
        peer.close(CLOSE.restart, "fell behind; dial again");
        ws.close(CLOSE.restart, "the other side fell behind; dial again");
      }
    } else if (d.side === "client" && d.queued.length < MAX_QUEUED) d.queued.push(raw);
    else ws.close(CLOSE.protocol, "stream frames before the forward was joined");
  }

  private localOf(ws: TunnelSocket): { mux: Mux } | null {
    const local = this.locals.get(ws.data.sessionId);
    return local && local.agent === ws ? local : null;
  }

  private malformed(ws: TunnelSocket | null, what: string): void {
    if (!ws) return;
    const d = ws.data;
    d.malformed++;
    if (d.malformed < MAX_MALFORMED) {
      ws.send(JSON.stringify({ type: "error", code: "bad_request", message: `malformed frame: ${what}` }));
      return;
    }
    this.deps.log.warn(`closing a forward link after ${d.malformed} malformed frames in a row`, { label: d.label, side: d.side, last: what });
    ws.send(JSON.stringify({ type: "error", code: "bad_request", message: `${d.malformed} malformed frames in a row (the last: ${what}); closing the link` }));
    ws.close(CLOSE.malformed, "too many malformed frames");
  }

  close(ws: TunnelSocket, code: number): void {
    const d = ws.data;
    const local = this.locals.get(d.sessionId);
    if (local && local.agent === ws) {
      local.agent = null;
      local.mux.detach();
      // Streams under way wait for the agent's half to come back.
      if (local.mux.streams.size > 0) this.deps.toAgent(d.sessionId, { type: "forward", id: local.id });
      return;
    }
    if (d.side === "client") {
      const forwards = this.clients.get(d.sessionId);
      if (forwards?.get(d.forwardId) === ws) forwards.delete(d.forwardId);
      if (forwards?.size === 0) this.clients.delete(d.sessionId);
    }
    const peer = d.peer;
    d.peer = null;
    if (!peer) return;
    peer.data.peer = null;
    if (peer.readyState > 1) return;
    // The client ended its forward: the agent lets its connections go. Anything else: dial again, resume.
    if (d.side === "client" && code === 1000) peer.close(1000, "the forward ended");
    else peer.close(CLOSE.restart, d.side === "client" ? "the other end of the forward dropped" : "the session machine's link for this forward dropped; dial again");
  }

  /** The forwards running to a session now. */
  list(sessionId: string): ForwardInfo[] {
    return [...(this.clients.get(sessionId)?.values() ?? [])].map((ws) => ({ ports: ws.data.ports, since: ws.data.since }));
  }

  /** The session ended: its forwards end with it. */
  /** Told when a session ended (its preview sockets go). */
  onEnded: (sessionId: string) => void = () => {};

  ended(sessionId: string): void {
    this.onEnded(sessionId);
    this.locals.get(sessionId)?.mux.close("the session ended");
    this.locals.get(sessionId)?.agent?.close(1000, "the session ended");
    this.locals.delete(sessionId);
    for (const ws of this.clients.get(sessionId)?.values() ?? []) ws.close(CLOSE.ended, "session ended");
    this.clients.delete(sessionId);
  }

  closeAll(): void {
    for (const forwards of this.clients.values()) for (const ws of forwards.values()) ws.close(CLOSE.restart, "server shutting down");
  }
}

/** A new forward link's socket data: one half of forward `forwardId` of the session in `row`. */
export function tunnelData(side: TunnelData["side"], row: { id: string; label: string }, forwardId: string): TunnelData {
  return { kind: "tunnel", side, sessionId: row.id, label: row.label, forwardId, malformed: 0, peer: null, queued: [], ports: [], since: new Date().toISOString() };
}
