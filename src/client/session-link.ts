/**
 * A client's link to one session: attaches over WebSocket, keeps the output offset so that a
 * re-attach resumes exactly where it left off (no byte twice, none skipped), and — unless told
 * not to — reconnects by itself with backoff for as long as the session runs.
 */
import {
  CattyError,
  CLOSE,
  decodeClientOutput,
  decodeClientSync,
  FRAME_SYNC,
  parseMessage,
  PROTOCOL_VERSION,
  ServerToClient,
  type ClientMode,
  type SessionStatus,
  type SyncEvent,
  type SyncPosition,
} from "../protocol/index.ts";
import type { Log } from "../lib/log.ts";

export type Outcome =
  | { kind: "exit"; code: number; status: SessionStatus; reason: string | null }
  | { kind: "ended"; status: SessionStatus; exitCode: number | null; reason: string | null; screen: string | null }
  | { kind: "takeover" }
  | { kind: "closed" }
  | { kind: "error"; error: CattyError };

export interface LinkEvents {
  /** Output bytes, in order, each exactly once. */
  output(data: Uint8Array): void;
  /** A full screen to paint (new client, or too far behind for a replay). */
  screen(data: string, cols: number, rows: number): void;
  /** A one-line status to show; "" clears it. */
  status(message: string): void;
  /** The link is attached (after each (re)connect). */
  attached?(): void;
  viewOnly?(): void;
  /** Sync-back: an event, and file bytes of a transfer. */
  sync?(event: SyncEvent): void;
  syncBytes?(transfer: number, data: Uint8Array): void;
}

export interface SessionLinkOptions {
  url: string;
  token: string;
  mode: ClientMode;
  /** Offset to resume from: 0 for everything since the start, null for the current screen. */
  offset: number | null;
  size(): { cols: number; rows: number };
  autoReconnect: boolean;
  log: Log;
  /** Backoff cap between reconnect attempts. */
  maxBackoffMs?: number;
  /** Where sync-back stands, asked on every (re)attach; absent or null: no sync-back. */
  syncPosition?(): SyncPosition | null;
}

/** Pings every 5 s; a link silent for 20 s is dead (well within the 30 s promised). */
const HEARTBEAT_MS = 5_000;
/** Keystrokes kept while the link is down, sent once it is back. */
const MAX_PENDING_INPUT = 64 * 1024;
const DEAD_AFTER_MS = 20_000;

/**
 * How long to wait before the next attempt: quick retries for a short blip (the usual case:
 * Wi-Fi hiccup, server restart), then exponential backoff up to the cap for a long outage.
 */
export function retryDelay(sinceLostMs: number, previousMs: number, capMs: number): number {
  if (sinceLostMs < 3_000) return 100;
  if (sinceLostMs < 10_000) return 250;
  return Math.min(Math.max(previousMs * 2, 500), capMs);
}

export class SessionLink {
  /** End offset of the output received so far (null until the first output or screen). */
  offset: number | null;
  private ws: WebSocket | null = null;
  private done = false;
  private settle: (o: Outcome) => void = () => {};
  readonly outcome: Promise<Outcome>;
  private heartbeat: Timer | undefined;
  private lastHeard = Date.now();
  private pingId = 0;
  private retryTimer: Timer | undefined;
  private dropLink: () => void = () => {};
  /** When the link was last lost (or first tried). */
  private lostAt = 0;
  /** Input typed while not attached (before the first attach, or during a reconnect). */
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private attached = false;
  /** Same on every reconnect, so the server can tell a comeback from a new client. */
  private readonly instance = crypto.randomUUID();
  private everAttached = false;

  constructor(private readonly opts: SessionLinkOptions, private readonly ev: LinkEvents) {
    this.offset = opts.offset;
    this.outcome = new Promise((resolve) => (this.settle = resolve));
  }

  start(): Promise<Outcome> {
    this.lostAt = Date.now();
    this.connect(100);
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
    return this.outcome;
  }

  send(data: Uint8Array): void {
    if (this.attached && this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(data);
      return;
    }
    if (this.pendingBytes + data.length > MAX_PENDING_INPUT) return;
    this.pending.push(data);
    this.pendingBytes += data.length;
  }

  /** Asks for the whole screen again (after the client drew over it). */
  repaint(): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "repaint" }));
  }

  resize(cols: number, rows: number): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "resize", cols, rows }));
  }

  /** Detach: close without ending anything on the server. */
  close(): void {
    this.finish({ kind: "closed" });
  }

  private finish(outcome: Outcome): void {
    if (this.done) return;
    this.done = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "client done");
    this.settle(outcome);
  }

  private beat(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastHeard > DEAD_AFTER_MS) {
      this.opts.log.warn("server silent for too long; dropping the link");
      this.dropLink();
      return;
    }
    ws.send(JSON.stringify({ type: "ping", id: ++this.pingId }));
  }

  private connect(backoff: number): void {
    if (this.done) return;
    const ws = new WebSocket(this.opts.url, { headers: { Authorization: `Bearer ${this.opts.token}` } } as never);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.lastHeard = Date.now();
      const { cols, rows } = this.opts.size();
      const syncBack = this.opts.syncPosition?.() ?? null;
      ws.send(
        JSON.stringify({
          type: "hello",
          protocol: PROTOCOL_VERSION,
          mode: this.opts.mode,
          offset: this.offset,
          cols,
          rows,
          syncBack,
          instance: this.instance,
          reconnect: this.everAttached,
        }),
      );
    };
    ws.onmessage = (e) => {
      this.lastHeard = Date.now();
      if (typeof e.data === "string") return this.onText(e.data);
      const frame = new Uint8Array(e.data as ArrayBuffer);
      if (frame[0] === FRAME_SYNC) {
        const sync = decodeClientSync(frame);
        if (sync) this.ev.syncBytes?.(sync.transfer, sync.data);
      } else this.onOutput(frame);
    };
    ws.onerror = () => {
      // onclose follows.
    };
    const onClose = (e: { code: number; reason: string }): void => {
      if (this.ws !== ws || this.done) return;
      this.ws = null;
      this.attached = false;
      if (e.code === CLOSE.takeover) return this.finish({ kind: "takeover" });
      if (e.code === CLOSE.protocol) {
        return this.finish({ kind: "error", error: new CattyError("protocol_mismatch", e.reason || "protocol mismatch") });
      }
      if (e.code === CLOSE.ended) return; // the "ended" message already settled it
      if (!this.opts.autoReconnect) {
        return this.finish({
          kind: "error",
          error: new CattyError(
            "unavailable",
            opened ? "The connection to the server was lost." : `Could not connect to ${this.opts.url}.`,
            "Reconnect with `catty connect`.",
          ),
        });
      }
      if (opened) this.lostAt = Date.now();
      const wait = opened ? 0 : retryDelay(Date.now() - this.lostAt, backoff, this.opts.maxBackoffMs ?? 10_000);
      const next = wait;
      this.ev.status(
        wait >= 1000 ? `Connection lost; reconnecting in ${Math.round(wait / 1000)}s…` : "Connection lost; reconnecting…",
      );
      this.retryTimer = setTimeout(() => this.connect(next), wait);
    };
    ws.onclose = onClose;
    // A peer that went silent gets no closing handshake: the link is given up at once.
    this.dropLink = () => {
      ws.onclose = null;
      ws.close(4000, "dead peer");
      onClose({ code: 4000, reason: "dead peer" });
    };
  }

  private onOutput(frame: Uint8Array): void {
    const out = decodeClientOutput(frame);
    if (!out) return;
    const end = out.offset + out.data.length;
    let data = out.data;
    if (this.offset !== null) {
      if (end <= this.offset) return; // already have it
      if (out.offset < this.offset) data = data.subarray(this.offset - out.offset);
      else if (out.offset > this.offset) {
        // Should not happen; if it does, the screen is redrawn from the agent's mirror.
        this.opts.log.warn("gap in output stream; asking for the screen", { have: this.offset, got: out.offset });
        this.repaint();
      }
    }
    this.offset = end;
    this.ev.output(data);
  }

  private onText(text: string): void {
    const msg = parseMessage(ServerToClient, text);
    if (!msg) {
      this.opts.log.warn("malformed message from server", { text: text.slice(0, 200) });
      return;
    }
    switch (msg.type) {
      case "attached":
        this.attached = true;
        this.everAttached = true;
        for (const data of this.pending.splice(0)) this.ws?.send(data);
        this.pendingBytes = 0;
        this.ev.attached?.();
        return;
      case "status":
        this.ev.status(msg.message);
        return;
      case "screen":
        this.offset = msg.offset;
        this.ev.screen(msg.data, msg.cols, msg.rows);
        return;
      case "exit":
        this.finish({ kind: "exit", code: msg.code, status: msg.status, reason: msg.reason });
        return;
      case "ended":
        this.finish({ kind: "ended", status: msg.status, exitCode: msg.exitCode, reason: msg.reason, screen: msg.screen });
        return;
      case "takeover":
        this.finish({ kind: "takeover" });
        return;
      case "view_only":
        this.ev.viewOnly?.();
        return;
      case "sync":
        this.ev.sync?.(msg.event);
        return;
      case "ping":
        this.ws?.send(JSON.stringify({ type: "pong", id: msg.id }));
        return;
      case "pong":
        return;
      case "error":
        this.finish({ kind: "error", error: new CattyError(msg.code, msg.message, msg.hint) });
        return;
      default: {
        const never: never = msg;
        return never;
      }
    }
  }
}
