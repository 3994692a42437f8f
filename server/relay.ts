/**
 * The relay: per session, one agent link and any number of client links (one interactive, the
 * rest viewers). PTY output from the agent goes to every synced client; a client that joins or
 * comes back is first caught up by the agent (missed bytes or the screen) and only then gets live
 * output, so nothing is shown twice or skipped. Input goes from the interactive client to the agent.
 *
 * The relay only moves frames. What they mean for the session (hello, saves, exit, a lost agent,
 * activity) it reports through `RelayEvents` to the session's lifecycle (lifecycle.ts). Every
 * frame is parsed here, at the socket edge; a peer that sends `MAX_MALFORMED` bad frames in a row
 * is disconnected with `CLOSE.malformed`.
 */
import type { ServerWebSocket, WebSocketHandler } from "bun";
import type { z } from "zod";
import {
  AgentToServer,
  ClientToServer,
  decodeAgentOutput,
  agentOutputToClient,
  parseMessage,
  PROTOCOL_VERSION,
  agentSyncToClient,
  CattyError,
  CLOSE,
  decodeAgentSync,
  FRAME_SYNC,
  type Attention,
  type ClientMode,
  type SessionStatus,
  type SyncPosition,
  type ServerToAgent,
  type ServerToClient,
} from "../src/protocol/index.ts";
import type { RelayCounts, ServerMetrics } from "./metrics.ts";
import { logContext, type Log } from "../src/lib/log.ts";
import type { ListeningPort } from "../src/protocol/forward.ts";
import { Tunnels, type TunnelData, type TunnelSocket } from "./tunnels.ts";
import { previewSocket, type PreviewData } from "./preview.ts";

interface LinkData {
  sessionId: string;
  label: string;
  /** Malformed frames received in a row. */
  malformed: number;
}

/**
 * A client link that landed on a replica other than the session's relay replica: its frames are
 * passed, unchanged, to and from a link this replica opens to the relay replica (see replicas.ts).
 */
export interface ForwardData extends LinkData {
  kind: "forward";
  /** The relay replica's internal attach URL (ws:) and its signed header. */
  target: string;
  headers: Record<string, string>;
  upstream?: WebSocket;
  /** Frames the client sent before the upstream link opened. */
  queued: Array<string | Buffer>;
  ended?: undefined;
}

export type SocketData =
  | ForwardData
  | TunnelData
  | PreviewData
  | (LinkData & { kind: "agent"; ended?: boolean })
  | (LinkData & {
      kind: "client";
      clientId: number;
      /** Set when the session had ended before the attach: sent on open, then the link closes. */
      ended?: Extract<ServerToClient, { type: "ended" }>;
      /** Opened with a view-only ticket (a browser's "View only"). */
      viewOnly?: boolean;
    });

export type Socket = ServerWebSocket<SocketData>;

const MAX_PENDING_INPUT = 64 * 1024;
/** Malformed frames in a row after which a link is closed (docs/architecture.md §4: an error each, then a close). */
export const MAX_MALFORMED = 5;

interface Client {
  ws: Socket;
  mode: ClientMode;
  /** Caught up and receiving live output. */
  live: boolean;
  /** End offset of the last output this client was sent (null: nothing yet, wants the screen). */
  offset: number | null;
  toldViewOnly: boolean;
  /** Sync-back position as far as this server has relayed it; null when the client did not ask. */
  sync: SyncPosition | null;
  /** The socket dropped a frame (the client fell too far behind): caught up again once it drains. */
  congested: boolean;
  /** Sync transfers the client is receiving, and those broken by a dropped frame (never forwarded again). */
  openTransfers: Set<number>;
  deadTransfers: Set<number>;
  /** After a drop: sync events wait for the agent's `start` answering the re-attach. */
  syncAwaitingStart: boolean;
}

export interface ExitReport {
  code: number;
  reason: string | null;
  screen: string;
  finalSave: string | null;
}

export type AgentControl = Extract<AgentToServer, { type: "save_request" | "save_done" | "restored" | "restore_failed" }>;

export interface AgentWelcome {
  /** Where to restore the workspace from, until it is restored. */
  restore: { url: string; size: number | null } | null;
  /** Set while the session is being ended: the agent is asked (again) to stop, after the welcome. */
  stop: string | null;
  /** The program's extra environment, until the agent says its program has started. */
  env: Record<string, string> | null;
}

/** What the relay reports to the sessions' lifecycle. */
export interface RelayEvents {
  /** The agent said hello (first connect or re-dial). */
  agentHello(sessionId: string, programStarted: boolean): Promise<AgentWelcome>;
  /** Save and restore messages; the answer, if any, goes back to the agent. */
  agentControl(sessionId: string, msg: AgentControl): Promise<ServerToAgent | null>;
  /** The program exited; resolves once it is recorded, with what clients are told. */
  exit(sessionId: string, exit: ExitReport): Promise<{ status: SessionStatus; reason: string | null }>;
  /** The agent link dropped. */
  agentGone(sessionId: string): void;
  /** Input or output went through: the session is not idle. */
  activity(sessionId: string): void;
  /** The agent says whether the program waits for its user. */
  attention(sessionId: string, attention: Attention): void;
  /** Whether another live replica relays the session now (a client waiting here should dial again). */
  servedElsewhere(sessionId: string): Promise<boolean>;
  /** The agent says which TCP ports the session's programs listen on. */
  ports?(sessionId: string, ports: ListeningPort[]): void;
}

class SessionRelay {
  agent: Socket | null = null;
  readonly clients = new Map<number, Client>();
  interactive: number | null = null;
  /** The interactive client's terminal size, re-applied whenever the agent (re)connects. */
  wantSize: { cols: number; rows: number } | null = null;
  /** Interactive clients (by instance) another interactive client replaced: told so if they come back. */
  replaced: string[] = [];
  /** Instance of the latest interactive client. */
  lastInteractive: string | null = null;
  /** When the oldest keystroke not yet followed by output reached the server (for the echo latency). */
  inputAt: number | null = null;
  /** Input typed while the agent was away (starting or re-dialling), delivered when it is back. */
  pendingInput: Buffer[] = [];
  pendingBytes = 0;
  /** Handed files the agent is writing, by transfer id. */
  readonly files = new Map<string, { resolve(path: string): void; reject(err: Error): void; timer: Timer }>();
  constructor(readonly sessionId: string, readonly label: string) {}

  /** Ends every handed file still in flight with `err`. */
  failFiles(err: Error): void {
    for (const f of this.files.values()) {
      clearTimeout(f.timer);
      f.reject(err);
    }
    this.files.clear();
  }
}

/** How long the agent may take to fetch and write one handed file. */
const PUT_FILE_TIMEOUT_MS = 60_000;

const send = (ws: Socket | null, msg: ServerToClient | ServerToAgent): void => {
  if (ws && ws.readyState === 1) ws.send(JSON.stringify(msg));
};

export class Relay {
  private readonly sessions = new Map<string, SessionRelay>();
  private nextClientId = 1;
  /** Port forwards: client links joined to links their session's agent dials for them. */
  readonly tunnels: Tunnels;

  constructor(
    private readonly events: RelayEvents,
    private readonly log: Log,
    private readonly metrics?: Pick<ServerMetrics, "relayBytes" | "keystrokeEcho">,
  ) {
    this.tunnels = new Tunnels({
      log,
      toAgent: (sessionId, msg) => {
        const agent = this.sessions.get(sessionId)?.agent ?? null;
        send(agent, msg);
        return agent !== null;
      },
    });
  }

  /** Links and clients now, for the metrics. */
  counts(): RelayCounts {
    const out: RelayCounts = { agents: 0, clients: { interactive: 0, view: 0 }, forwarded: this.forwards.size };
    for (const s of this.sessions.values()) {
      if (s.agent) out.agents++;
      for (const c of s.clients.values()) out.clients[c.mode]++;
    }
    return out;
  }

  /** `Bun.serve`'s WebSocket handler for both endpoints: agent links and client links. */
  readonly websocket: WebSocketHandler<SocketData> = {
    idleTimeout: 30,
    sendPings: true,
    maxPayloadLength: 16 * 1024 * 1024,
    open: (ws) => {
      if (ws.data.kind === "tunnel") return this.tunnels.open(ws as TunnelSocket);
      if (ws.data.kind === "preview") return previewSocket.open(ws as ServerWebSocket<PreviewData>);
      if (ws.data.kind === "forward") return this.forwardOpen(ws as ServerWebSocket<ForwardData>);
      if (!ws.data.ended) return;
      if (ws.data.kind === "client") ws.send(JSON.stringify(ws.data.ended));
      ws.close(CLOSE.ended, "session ended");
    },
    message: (ws, msg) => {
      if (ws.data.kind === "tunnel") return this.tunnels.message(ws as TunnelSocket, msg);
      if (ws.data.kind === "preview") return previewSocket.message(ws as ServerWebSocket<PreviewData>, msg);
      if (ws.data.kind === "forward") return this.forwardMessage(ws as ServerWebSocket<ForwardData>, msg);
      if (ws.data.ended) return;
      // What a link's messages lead to is logged with its session.
      logContext.run({ session: ws.data.label }, () => {
        if (ws.data.kind === "agent") this.agentMessage(ws, msg);
        else this.clientMessage(ws, msg);
      });
    },
    close: (ws, code, reason) => {
      if (ws.data.kind === "tunnel") return this.tunnels.close(ws as TunnelSocket, code);
      if (ws.data.kind === "preview") return previewSocket.close(ws as ServerWebSocket<PreviewData>, code, reason);
      if (ws.data.kind === "forward") return ws.data.upstream?.close(1000, "client left");
      logContext.run({ session: ws.data.label }, () => {
        if (ws.data.kind === "agent") this.agentClose(ws);
        else this.clientClose(ws);
      });
    },
    drain: (ws) => {
      if (ws.data.kind === "client") this.clientDrain(ws);
    },
  };

  private get(sessionId: string, label: string): SessionRelay {
    let s = this.sessions.get(sessionId);
    if (!s) {
      s = new SessionRelay(sessionId, label);
      this.sessions.set(sessionId, s);
    }
    return s;
  }

  newClientId(): number {
    const id = this.nextClientId;
    this.nextClientId = this.nextClientId >= 0xfffffffe ? 1 : this.nextClientId + 1;
    return id;
  }

  // ── client links forwarded to the relay replica ─────────────────────────────────────────────

  private readonly forwards = new Set<ServerWebSocket<ForwardData>>();

  private forwardOpen(ws: ServerWebSocket<ForwardData>): void {
    const data = ws.data;
    this.forwards.add(ws);
    const up = new WebSocket(data.target, { headers: data.headers } as unknown as string[]);
    // Bun's client hands binary frames over as Buffers with this.
    (up as { binaryType: string }).binaryType = "nodebuffer";
    data.upstream = up;
    up.onopen = () => {
      for (const m of data.queued.splice(0)) up.send(m);
    };
    up.onmessage = (ev) => {
      if (ws.readyState !== 1) return;
      // A frame the client socket cannot take breaks the stream: the client dials again and resumes.
      if (ws.send(ev.data as string | Buffer) === 0) ws.close(CLOSE.restart, "fell behind; dial again");
    };
    let opened = false;
    up.addEventListener("open", () => (opened = true));
    up.onclose = (ev) => {
      this.forwards.delete(ws);
      if (ws.readyState > 1) return;
      // The relay replica is not there (it died, and the others do not know yet): the client
      // dials again in a moment rather than at once, until a live replica relays the session.
      if (!opened) {
        setTimeout(() => ws.readyState === 1 && ws.close(CLOSE.restart, "the relaying replica is not reachable; dial again"), 500);
        return;
      }
      // Codes a peer may send pass through; a link that broke (1005, 1006…) becomes "dial again".
      const code = ev.code === 1000 || ev.code === CLOSE.restart || (ev.code >= 4000 && ev.code < 5000) ? ev.code : CLOSE.restart;
      ws.close(code, code === CLOSE.restart && ev.code !== CLOSE.restart ? "the relaying replica went away; dial again" : ev.reason);
    };
    up.onerror = () => {};
  }

  private forwardMessage(ws: ServerWebSocket<ForwardData>, msg: string | Buffer): void {
    const up = ws.data.upstream;
    if (up?.readyState === WebSocket.OPEN) up.send(msg);
    else if (ws.data.queued.length < 256) ws.data.queued.push(msg);
    else ws.close(CLOSE.restart, "the relaying replica did not answer; dial again");
  }

  /**
   * Another replica now relays the session: its clients here dial again (and are routed there),
   * and a link of its agent that is still open here is stale.
   */
  moved(sessionId: string): void {
    const s = this.sessions.get(sessionId);
    if (!s) return;
    for (const c of s.clients.values()) c.ws.close(CLOSE.restart, "the session moved to another replica; dial again");
    s.clients.clear();
    s.agent?.close(CLOSE.replaced, "the agent dialled another replica");
    s.agent = null;
    s.failFiles(new CattyError("unavailable", "The session machine moved to another replica before it took the file.", "Try again."));
    this.sessions.delete(sessionId);
  }

  /** Closes every link (the server is shutting down): agents and clients dial again. */
  closeAll(): void {
    this.tunnels.closeAll();
    for (const f of this.forwards) f.close(CLOSE.restart, "server shutting down");
    for (const s of this.sessions.values()) {
      for (const c of s.clients.values()) c.ws.close(CLOSE.restart, "server shutting down");
      s.agent?.close(CLOSE.restart, "server shutting down");
    }
  }

  waitingSessions(): string[] {
    return [...this.sessions.values()].filter((s) => !s.agent && s.clients.size > 0).map((s) => s.sessionId);
  }

  agentConnected(sessionId: string): boolean {
    return this.sessions.get(sessionId)?.agent != null;
  }

  /** Asks the agent to end the program. False when no agent is connected. */
  stop(sessionId: string, reason: string): boolean {
    const s = this.sessions.get(sessionId);
    if (!s?.agent) return false;
    send(s.agent, { type: "stop", reason });
    return true;
  }

  /** Types `data` into the program, as a client's keys (`catty send`). False when no agent is connected here. */
  typeInput(sessionId: string, data: Uint8Array): boolean {
    const s = this.sessions.get(sessionId);
    if (!s?.agent) return false;
    this.events.activity(sessionId);
    s.agent.send(data);
    return true;
  }

  /**
   * Asks the agent to fetch `url` and write it as `.catty-uploads/<name>`; resolves to the path
   * the program sees. Fails when no agent is connected, when the link drops first, or after a minute.
   */
  putFile(sessionId: string, file: { name: string; url: string; size: number }): Promise<string> {
    const s = this.sessions.get(sessionId);
    if (!s?.agent) {
      return Promise.reject(new CattyError("unavailable", "The session machine is not connected right now.", "Try again in a moment."));
    }
    const id = crypto.randomUUID();
    const agent = s.agent;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.files.delete(id);
        reject(new CattyError("unavailable", "The session machine did not take the file in time.", "Try again."));
      }, PUT_FILE_TIMEOUT_MS);
      s.files.set(id, { resolve, reject, timer });
      send(agent, { type: "put_file", id, ...file });
    });
  }

  /** Ends every client link of a session that ended without its agent (failed, destroyed). */
  endClients(sessionId: string, msg: ServerToClient): void {
    this.tunnels.ended(sessionId);
    const s = this.sessions.get(sessionId);
    if (!s) return;
    for (const c of s.clients.values()) {
      send(c.ws, msg);
      c.ws.close(CLOSE.ended, "session ended");
    }
    s.failFiles(new CattyError("session_ended", "The session ended before it took the file."));
    this.sessions.delete(sessionId);
  }

  /**
   * Parses a text frame once at the edge and answers pings; null when there is nothing more to
   * do (a ping, a pong, or a malformed frame, which `malformed` counts).
   */
  private parse<S extends z.ZodType<{ type: string }>>(ws: Socket, schema: S, raw: string): Exclude<z.output<S>, { type: "ping" | "pong" }> | null {
    const msg = parseMessage(schema, raw) as z.output<S> | null;
    if (!msg) {
      this.malformed(ws, "a message that is not valid JSON of a known type");
      return null;
    }
    ws.data.malformed = 0;
    if (msg.type === "ping") send(ws, { type: "pong", id: (msg as unknown as { id: number }).id });
    if (msg.type === "ping" || msg.type === "pong") return null;
    return msg as Exclude<z.output<S>, { type: "ping" | "pong" }>;
  }

  /**
   * A frame that does not parse: answered with an error; the link is closed after
   * `MAX_MALFORMED` in a row, with one log line then (not one per frame).
   */
  private malformed(ws: Socket, what: string): void {
    const data = ws.data;
    data.malformed++;
    if (data.malformed > MAX_MALFORMED) return; // closing already
    if (data.malformed < MAX_MALFORMED) {
      send(ws, { type: "error", code: "bad_request", message: `malformed frame: ${what}` });
      return;
    }
    this.log.warn(`closing a ${data.kind} link after ${data.malformed} malformed frames in a row`, { label: data.label, last: what });
    send(ws, {
      type: "error",
      code: "bad_request",
      message: `${data.malformed} malformed frames in a row (the last: ${what}); closing the link`,
    });
    ws.close(CLOSE.malformed, "too many malformed frames");
  }

  // ── agent link ──────────────────────────────────────────────────────────────────────────────

  agentMessage(ws: Socket, raw: string | Buffer): void {
    const data = ws.data;
    if (data.kind !== "agent") return;
    const s = this.get(data.sessionId, data.label);
    if (typeof raw !== "string") {
      const ok = raw[0] === FRAME_SYNC ? this.agentSyncBytes(s, ws, raw) : this.agentOutput(s, ws, raw);
      if (ok) data.malformed = 0;
      else this.malformed(ws, "a binary frame that is neither output nor sync-back bytes");
      return;
    }
    const msg = this.parse(ws, AgentToServer, raw);
    if (!msg || (msg.type !== "hello" && s.agent !== ws)) return;
    switch (msg.type) {
      case "hello":
        this.agentHello(s, ws, msg);
        return;
      case "screen": {
        const c = s.clients.get(msg.clientId);
        if (!c || c.congested) return;
        send(c.ws, { type: "screen", offset: msg.offset, data: msg.data, cols: msg.cols, rows: msg.rows });
        c.offset = msg.offset;
        return;
      }
      case "synced": {
        const c = s.clients.get(msg.clientId);
        if (!c || c.congested) return;
        c.live = true;
        c.offset = msg.offset;
        return;
      }
      case "exit":
        void this.agentExit(s, ws, msg);
        return;
      case "sync": {
        const c = s.clients.get(msg.clientId);
        // While congested nothing goes out: the catch-up after the drain resends from c.sync.
        if (!c?.sync || c.congested) return;
        const e = msg.event;
        if (c.syncAwaitingStart) {
          if (e.kind !== "start") return;
          c.syncAwaitingStart = false;
        }
        if (e.kind === "file_end") {
          if (c.deadTransfers.delete(e.transfer)) return;
          c.openTransfers.delete(e.transfer);
        }
        if (c.ws.readyState !== 1) return;
        if (c.ws.send(JSON.stringify({ type: "sync", event: e })) === 0) return this.congest(c);
        if (e.kind === "file") c.openTransfers.add(e.transfer);
        // The position moves only with what the client was actually sent.
        if (e.kind === "start") c.sync = { epoch: e.epoch, seq: c.sync.epoch === e.epoch ? c.sync.seq : 0 };
        else if (e.kind === "caught_up") c.sync = { ...c.sync, seq: Math.max(c.sync.seq, e.seq) };
        return;
      }
      case "attention": {
        const attention = { state: msg.state, since: msg.since };
        this.events.attention(s.sessionId, attention);
        // Viewers hear of it (the interactive client is the one it waits for).
        for (const c of s.clients.values()) if (c.mode === "view") send(c.ws, { type: "attention", ...attention });
        return;
      }
      case "ports":
        this.events.ports?.(s.sessionId, msg.ports);
        return;
      case "file_put": {
        const f = s.files.get(msg.id);
        if (!f) return;
        s.files.delete(msg.id);
        clearTimeout(f.timer);
        if (msg.path !== null) f.resolve(msg.path);
        else f.reject(new CattyError("unavailable", `The session could not take the file: ${msg.error ?? "no reason given"}.`));
        return;
      }
      case "save_request":
      case "save_done":
      case "restored":
      case "restore_failed":
        void this.events.agentControl(s.sessionId, msg).then(
          (reply) => reply && send(ws, reply),
          (err: unknown) => this.log.error("agent control message failed", { label: s.label, type: msg.type, err }),
        );
        return;
      default: {
        const never: never = msg;
        return never;
      }
    }
  }

  private agentHello(s: SessionRelay, ws: Socket, msg: Extract<AgentToServer, { type: "hello" }>): void {
    if (msg.protocol !== PROTOCOL_VERSION) {
      send(ws, {
        type: "error",
        code: "protocol_mismatch",
        message: `agent speaks protocol ${msg.protocol}, server ${PROTOCOL_VERSION}: update catty-agent`,
      });
      ws.close(CLOSE.protocol, "protocol mismatch");
      return;
    }
    if (s.agent && s.agent !== ws) s.agent.close(CLOSE.replaced, "replaced by a newer agent link");
    s.agent = ws;
    // Input held while the agent was away goes first, before anything typed from now on.
    for (const input of s.pendingInput.splice(0)) ws.send(input);
    s.pendingBytes = 0;
    void this.events.agentHello(s.sessionId, msg.pid !== null).then(
      ({ restore, stop, env }) => {
        if (s.agent !== ws) return;
        send(ws, { type: "welcome", protocol: PROTOCOL_VERSION, label: s.label, restore, env });
        this.resync(s, ws, { cols: msg.cols, rows: msg.rows });
        this.tunnels.agentUp(s.sessionId);
        if (stop !== null) send(ws, { type: "stop", reason: stop });
      },
      (err: unknown) => this.log.error("agent hello failed", { label: s.label, err }),
    );
  }

  /** After an agent (re)connects: deliver held input, apply the size, catch every client up. */
  private resync(s: SessionRelay, ws: Socket, agentSize: { cols: number; rows: number }): void {
    if (s.wantSize && (s.wantSize.cols !== agentSize.cols || s.wantSize.rows !== agentSize.rows)) {
      send(ws, { type: "resize", ...s.wantSize });
    }
    // Whatever was in flight on the old link may be lost: catch every client up again.
    for (const [id, c] of s.clients) {
      c.live = false;
      send(ws, { type: "attach", clientId: id, offset: c.offset, syncBack: c.sync, repaint: false });
    }
    for (const c of s.clients.values()) send(c.ws, { type: "status", message: "" });
  }

  /** Sync-back bytes for one client. False when the frame does not decode. */
  private agentSyncBytes(s: SessionRelay, ws: Socket, raw: Buffer): boolean {
    const frame = decodeAgentSync(raw);
    if (!frame) return false;
    if (s.agent !== ws) return true;
    const c = s.clients.get(frame.clientId);
    if (!c?.sync || c.syncAwaitingStart || c.deadTransfers.has(frame.transfer)) return true;
    if (!c.congested && c.ws.send(agentSyncToClient(raw)) === 0) this.congest(c);
    return true;
  }

  /** A frame was dropped for `c`: stop sending until the socket drains, then catch it up again. */
  private congest(c: Client): void {
    c.congested = true;
    // A transfer that lost a frame must never be completed: its file_end and later bytes are dropped.
    for (const t of c.openTransfers) c.deadTransfers.add(t);
    c.openTransfers.clear();
    c.syncAwaitingStart = c.sync !== null;
    c.live = false;
  }

  /** The client's socket drained after congestion: ask the agent to catch it up from where it is. */
  clientDrain(ws: Socket): void {
    const data = ws.data;
    if (data.kind !== "client") return;
    const s = this.sessions.get(data.sessionId);
    const c = s?.clients.get(data.clientId);
    if (!s || !c?.congested || c.ws !== ws) return;
    c.congested = false;
    send(s.agent, { type: "attach", clientId: data.clientId, offset: c.offset, syncBack: c.sync, repaint: false });
  }

  /** PTY output, for one client (a replay) or every live one. False when the frame does not decode. */
  private agentOutput(s: SessionRelay, ws: Socket, raw: Buffer): boolean {
    const frame = decodeAgentOutput(raw);
    if (!frame) return false;
    if (s.agent !== ws) return true;
    const end = frame.offset + frame.data.length;
    // Decoded above; from here on the frame is the client's (re-headed in place, no copy).
    const out = agentOutputToClient(raw);
    if (frame.clientId !== 0) {
      const c = s.clients.get(frame.clientId);
      if (!c || c.congested) return true;
      if (c.ws.send(out) === 0) this.congest(c);
      else c.offset = end;
      return true;
    }
    this.events.activity(s.sessionId);
    if (s.inputAt !== null) {
      this.metrics?.keystrokeEcho.observe((performance.now() - s.inputAt) / 1000);
      s.inputAt = null;
    }
    let sent = 0;
    for (const c of s.clients.values()) {
      if (!c.live || c.congested) continue;
      if (c.ws.send(out) === 0) this.congest(c);
      else {
        c.offset = end;
        sent += frame.data.length;
      }
    }
    if (sent > 0) this.metrics?.relayBytes.inc({ direction: "to_clients" }, sent);
    return true;
  }

  private async agentExit(s: SessionRelay, ws: Socket, msg: Extract<AgentToServer, { type: "exit" }>): Promise<void> {
    const ended = await this.events.exit(s.sessionId, {
      code: msg.code,
      reason: msg.reason,
      screen: msg.screen,
      finalSave: msg.finalSave,
    });
    this.tunnels.ended(s.sessionId);
    for (const c of s.clients.values()) {
      send(c.ws, { type: "exit", code: msg.code, status: ended.status, reason: ended.reason });
      c.ws.close(1000, "program exited");
    }
    s.clients.clear();
    s.failFiles(new CattyError("session_ended", "The session ended before it took the file."));
    send(ws, { type: "exit_ack" });
    this.sessions.delete(s.sessionId);
  }

  agentClose(ws: Socket): void {
    const data = ws.data;
    const s = this.sessions.get(data.sessionId);
    if (!s || s.agent !== ws) return;
    s.agent = null;
    s.failFiles(new CattyError("unavailable", "The session machine disconnected before it took the file.", "Try again once it is back."));
    for (const c of s.clients.values()) {
      c.live = false;
      send(c.ws, { type: "status", message: "The session machine disconnected; waiting for it to come back…" });
    }
    this.events.agentGone(s.sessionId);
  }

  // ── client links ────────────────────────────────────────────────────────────────────────────

  clientMessage(ws: Socket, raw: string | Buffer): void {
    const data = ws.data;
    if (data.kind !== "client") return;
    const s = this.get(data.sessionId, data.label);
    const me = s.clients.get(data.clientId);
    if (typeof raw !== "string") {
      if (!me) return;
      if (me.mode !== "interactive" || s.interactive !== data.clientId) {
        if (!me.toldViewOnly) send(ws, { type: "view_only" });
        me.toldViewOnly = true;
        return;
      }
      this.events.activity(s.sessionId);
      this.metrics?.relayBytes.inc({ direction: "to_programs" }, raw.length);
      if (s.agent) {
        s.agent.send(raw);
        s.inputAt ??= performance.now();
      } else if (s.pendingBytes + raw.length <= MAX_PENDING_INPUT) {
        s.pendingInput.push(raw);
        s.pendingBytes += raw.length;
      }
      return;
    }
    const msg = this.parse(ws, ClientToServer, raw);
    if (!msg) return;
    if (!me && msg.type !== "hello") {
      send(ws, { type: "error", code: "bad_request", message: "the first message must be hello" });
      ws.close(CLOSE.protocol, "expected hello");
      return;
    }
    switch (msg.type) {
      case "hello":
        if (me) return;
        this.clientHello(s, ws, msg);
        return;
      case "repaint":
        if (!me) return;
        me.live = false;
        send(s.agent, { type: "attach", clientId: data.clientId, offset: null, syncBack: null, repaint: true });
        return;
      case "resize":
        if (s.interactive !== data.clientId) return;
        s.wantSize = { cols: msg.cols, rows: msg.rows };
        send(s.agent, msg);
        return;
      default: {
        const never: never = msg;
        return never;
      }
    }
  }

  private clientHello(s: SessionRelay, ws: Socket, hello: Extract<ClientToServer, { type: "hello" }>): void {
    const data = ws.data as Extract<SocketData, { kind: "client" }>;
    // A link opened with a view-only ticket stays a viewer whatever its hello says.
    const msg = data.viewOnly ? { ...hello, mode: "view" as const } : hello;
    if (msg.protocol !== PROTOCOL_VERSION) {
      send(ws, {
        type: "error",
        code: "protocol_mismatch",
        message: `this catty speaks protocol ${msg.protocol}, the server ${PROTOCOL_VERSION}`,
        hint: "Update catty to the server's version.",
      });
      ws.close(CLOSE.protocol, "protocol mismatch");
      return;
    }
    if (msg.mode === "interactive" && msg.reconnect && msg.instance && s.replaced.includes(msg.instance)) {
      send(ws, { type: "takeover" });
      ws.close(CLOSE.takeover, "taken over by another client");
      return;
    }
    if (msg.mode === "interactive") {
      if (s.lastInteractive && s.lastInteractive !== msg.instance) {
        s.replaced.push(s.lastInteractive);
        if (s.replaced.length > 64) s.replaced.shift();
      }
      s.lastInteractive = msg.instance;
      const old = s.interactive !== null ? s.clients.get(s.interactive) : undefined;
      if (old) {
        send(old.ws, { type: "takeover" });
        old.ws.close(CLOSE.takeover, "taken over by another client");
        s.clients.delete(s.interactive as number);
        send(s.agent, { type: "detach", clientId: s.interactive as number });
      }
      s.interactive = data.clientId;
    }
    // Sync-back writes into the interactive client's directory only.
    const sync = msg.mode === "interactive" ? msg.syncBack : null;
    s.clients.set(data.clientId, {
      ws,
      mode: msg.mode,
      live: false,
      offset: msg.offset,
      toldViewOnly: false,
      sync,
      congested: false,
      openTransfers: new Set(),
      deadTransfers: new Set(),
      syncAwaitingStart: false,
    });
    send(ws, { type: "attached", protocol: PROTOCOL_VERSION, label: s.label, mode: msg.mode });
    if (msg.mode === "interactive") s.wantSize = { cols: msg.cols, rows: msg.rows };
    if (!s.agent) {
      send(ws, { type: "status", message: "Waiting for the session machine to connect…" });
      // Its agent may be on another replica now: then this client dials again, and is routed there.
      void this.events.servedElsewhere(s.sessionId).then(
        (elsewhere) => {
          if (elsewhere && !s.agent && s.clients.get(data.clientId)?.ws === ws) ws.close(CLOSE.restart, "the session is relayed by another replica; dial again");
        },
        (err: unknown) => this.log.warn("could not look up the session's relay replica", { label: s.label, err }),
      );
      return;
    }
    if (msg.mode === "interactive") send(s.agent, { type: "resize", cols: msg.cols, rows: msg.rows });
    send(s.agent, { type: "attach", clientId: data.clientId, offset: msg.offset, syncBack: sync, repaint: false });
  }

  clientClose(ws: Socket): void {
    const data = ws.data;
    if (data.kind !== "client") return;
    const s = this.sessions.get(data.sessionId);
    if (!s) return;
    const c = s.clients.get(data.clientId);
    if (c?.ws !== ws) return;
    s.clients.delete(data.clientId);
    if (s.interactive === data.clientId) s.interactive = null;
    send(s.agent, { type: "detach", clientId: data.clientId });
  }
}
