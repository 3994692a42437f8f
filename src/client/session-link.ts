/**
 * A client's link to one session: attaches over the typed reconnecting socket (`lib/socket.ts`),
 * keeps the output offset so that a re-attach resumes exactly where it left off (no byte twice,
 * none skipped), and — unless told not to — reconnects by itself with backoff for as long as the
 * session runs. Input typed while the link is down (up to 64 KB) is sent once it is back.
 */
import {
  CattyError,
  CLOSE,
  decodeClientOutput,
  decodeClientSync,
  FRAME_SYNC,
  PROTOCOL_VERSION,
  ServerToClient,
  type Attention,
  type ClientToServer,
  type ClientMode,
  type SessionStatus,
  type SyncEvent,
  type SyncPosition,
} from "../protocol/index.ts";
import type { Log } from "../lib/log.ts";
import { printable } from "./terminal-text.ts";
import { Socket, type DropInfo } from "../lib/socket.ts";
import { newOutput } from "../lib/output-offset.ts";

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
  /** A round trip measured by the heartbeat (ping to pong), in ms. */
  rtt?(ms: number): void;
  /** The link is down and being dialled again (input is held meanwhile). */
  lost?(): void;
  viewOnly?(): void;
  /** Sync-back: an event, and file bytes of a transfer. */
  sync?(event: SyncEvent): void;
  /** Viewers: the program's attention state changed. */
  attention?(attention: Attention): void;
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

/** Keystrokes kept while the link is down, sent once it is back. */
const MAX_PENDING_INPUT = 64 * 1024;

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
  readonly outcome: Promise<Outcome>;
  private readonly socket: Socket<ServerToClient, ClientToServer>;
  private done = false;
  private settle: (o: Outcome) => void = () => {};
  /** Same on every reconnect, so the server can tell a comeback from a new client. */
  private readonly instance = crypto.randomUUID();
  private everAttached = false;
  /** When each heartbeat ping went, by id, until its pong. */
  private readonly pings = new Map<number, number>();
  /** The latest round trip (ms); null until the first pong. */
  rttMs: number | null = null;

  constructor(private readonly opts: SessionLinkOptions, private readonly ev: LinkEvents) {
    this.offset = opts.offset;
    this.outcome = new Promise((resolve) => (this.settle = resolve));
    const cap = opts.maxBackoffMs ?? 10_000;
    this.socket = new Socket<ServerToClient, ClientToServer>(
      {
        url: opts.url,
        headers: { Authorization: `Bearer ${opts.token}` },
        schema: ServerToClient,
        log: opts.log,
        ping: (id) => {
          // The heartbeat measures the round trip as it goes (a lost pong's entry goes with the next ones).
          if (this.pings.size > 8) this.pings.clear();
          this.pings.set(id, performance.now());
          return { type: "ping", id };
        },
        // A link that was up is re-dialled at once; failed dials follow `retryDelay`.
        retry: ({ sinceLostMs, previousMs, wasOpen }) => (wasOpen ? 0 : retryDelay(sinceLostMs, previousMs, cap)),
        reconnect: opts.autoReconnect,
        stopOn: [CLOSE.ended, CLOSE.takeover, CLOSE.protocol, CLOSE.malformed],
        // Input waits for `attached`: the server takes it only from an accepted client.
        awaitReady: true,
        queueBytes: MAX_PENDING_INPUT,
      },
      {
        open: () => this.hello(),
        message: (msg) => this.onMessage(msg),
        binary: (frame) => this.onBinary(frame),
        down: (info) => this.onDown(info),
      },
    );
  }

  start(): Promise<Outcome> {
    this.socket.start();
    return this.outcome;
  }

  /** Input for the program: sent now when attached, else kept (up to 64 KB) until attached. */
  send(data: Uint8Array): void {
    this.socket.sendBinary(data);
  }

  /** Asks for the whole screen again. */
  repaint(): void {
    this.socket.send({ type: "repaint" });
  }

  resize(cols: number, rows: number): void {
    this.socket.send({ type: "resize", cols, rows });
  }

  /** Detach: close without ending anything on the server. */
  close(): void {
    this.finish({ kind: "closed" });
  }

  private finish(outcome: Outcome): void {
    if (this.done) return;
    this.done = true;
    this.socket.close(1000, "client done");
    this.settle(outcome);
  }

  private hello(): void {
    const { cols, rows } = this.opts.size();
    this.socket.send({
      type: "hello",
      protocol: PROTOCOL_VERSION,
      mode: this.opts.mode,
      offset: this.offset,
      cols,
      rows,
      syncBack: this.opts.syncPosition?.() ?? null,
      instance: this.instance,
      reconnect: this.everAttached,
    });
  }

  private onDown(info: DropInfo): void {
    if (this.done) return;
    switch (info.code) {
      case CLOSE.takeover:
        return this.finish({ kind: "takeover" });
      case CLOSE.protocol:
        return this.finish({ kind: "error", error: new CattyError("protocol_mismatch", printable(info.reason) || "protocol mismatch") });
      case CLOSE.ended:
        // The server says why in a message before it closes; this is in case that never came.
        return this.finish({ kind: "error", error: new CattyError("unavailable", "The session has ended.") });
      case CLOSE.malformed:
        return this.finish({
          kind: "error",
          error: new CattyError(
            "protocol_mismatch",
            "The server kept sending messages this catty cannot read, so the link was closed.",
            "Check that catty and the server are the same version (`catty --version`), then reconnect with `catty connect`.",
          ),
        });
    }
    if (info.retryInMs === null) {
      return this.finish({
        kind: "error",
        error: new CattyError(
          "unavailable",
          info.wasOpen ? "The connection to the server was lost." : `Could not connect to ${this.opts.url}.`,
          "Reconnect with `catty connect`.",
        ),
      });
    }
    this.ev.lost?.();
    const wait = info.retryInMs;
    this.ev.status(wait >= 1000 ? `Connection lost; reconnecting in ${Math.round(wait / 1000)}s…` : "Connection lost; reconnecting…");
  }

  private onBinary(frame: Uint8Array): boolean {
    if (frame[0] === FRAME_SYNC) {
      const sync = decodeClientSync(frame);
      if (!sync) return false;
      this.ev.syncBytes?.(sync.transfer, sync.data);
      return true;
    }
    const out = decodeClientOutput(frame);
    if (!out) return false;
    const fresh = newOutput(this.offset, out.offset, out.data);
    if (!fresh) return true; // already have it
    if (fresh.gap) {
      // Should not happen; if it does, the screen is redrawn from the agent's mirror.
      this.opts.log.warn("gap in output stream; asking for the screen", { have: this.offset, got: out.offset });
      this.repaint();
    }
    this.offset = fresh.end;
    this.ev.output(fresh.data);
    return true;
  }

  private onMessage(msg: ServerToClient): void {
    switch (msg.type) {
      case "attached":
        this.everAttached = true;
        this.socket.markReady();
        // The round trip, measured at once (the heartbeat goes on measuring it every beat).
        this.socket.ping();
        this.ev.attached?.();
        return;
      case "status":
        this.ev.status(printable(msg.message));
        return;
      case "screen":
        this.offset = msg.offset;
        this.ev.screen(msg.data, msg.cols, msg.rows);
        return;
      case "exit":
        this.finish({ kind: "exit", code: msg.code, status: msg.status, reason: msg.reason === null ? null : printable(msg.reason) });
        return;
      case "ended":
        // The screen is the program's, drawn as such; the reason is text to print.
        this.finish({ kind: "ended", status: msg.status, exitCode: msg.exitCode, reason: msg.reason === null ? null : printable(msg.reason), screen: msg.screen });
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
      case "attention":
        this.ev.attention?.({ state: msg.state, since: msg.since });
        return;
      case "ping":
        this.socket.send({ type: "pong", id: msg.id });
        return;
      case "pong": {
        const sent = this.pings.get(msg.id);
        if (sent === undefined) return;
        this.pings.delete(msg.id);
        this.rttMs = performance.now() - sent;
        this.ev.rtt?.(this.rttMs);
        return;
      }
      case "error":
        this.finish({ kind: "error", error: new CattyError(msg.code, printable(msg.message), msg.hint === undefined ? undefined : printable(msg.hint)) });
        return;
      default: {
        const never: never = msg;
        return never;
      }
    }
  }
}
