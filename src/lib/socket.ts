/**
 * A typed, reconnecting WebSocket: the one link implementation behind the CLI's session link, the
 * agent's link to the server and the dashboard's attach link in the browser. It is generic over
 * the two message unions of a link — `Socket<ServerToClient, ClientToServer>` — so a peer can only
 * send what the protocol allows, and incoming text is parsed once, here, with the protocol's zod
 * schema.
 *
 * Lifecycle. `start()` dials (a `url` given as a function is asked for before every dial — a
 * browser's one-use ticket — and when it fails, that dial failed). Each time a link opens, `open()`
 * runs first: the owner sends its handshake then (it goes out before anything queued). The link
 * is *ready* right after `open()`, or — with `awaitReady` — once the owner calls `markReady()`
 * (when the peer has accepted the handshake). When a link drops, the socket dials again after
 * `retry()`'s delay, jittered, unless the close code is in `stopOn`, `reconnect` is off, or the
 * owner called `close()`; `down()` tells the owner which it is.
 *
 * Buffering. `send(msg)` sends a control message on the current link, or drops it (returns false)
 * when there is none: control messages describe the link's present state, and the owner's
 * handshake re-establishes that state on every new link. `sendBinary(bytes)` sends at once when
 * the link is ready; otherwise it queues up to `queueBytes` (default 0: nothing is queued) and
 * flushes the queue, in order, as soon as a link is ready. What does not fit is dropped.
 *
 * Heartbeat. Every `heartbeatMs` (5 s) the socket sends `ping(id)`; a link that has received no
 * frame at all for `deadAfterMs` (20 s) is given up at once (no closing handshake with a dead
 * peer) and re-dialled.
 *
 * Malformed input. Text that is not JSON or not a message of the union is dropped; after
 * `maxMalformed` (5) such frames in a row the link is closed with `CLOSE.malformed` and one log
 * line. A binary frame the owner's `binary()` rejects (returns false) counts the same.
 */
import type { z } from "zod";
import { CLOSE } from "../protocol/close.ts";
import { parseMessage } from "../protocol/messages.ts";

/** What the socket logs (a `Log`, or a browser's `console`). */
export interface SocketLog {
  warn(msg: string, extra?: Record<string, unknown>): void;
}

export interface DropInfo {
  code: number;
  reason: string;
  /** Whether the link that dropped had opened (false: the dial itself failed). */
  wasOpen: boolean;
  /** When the next dial is, or null: the socket has stopped for good. */
  retryInMs: number | null;
}

export interface SocketHandlers<In> {
  /** A link opened: send the handshake now. */
  open(): void;
  /** A text frame, parsed; `text` is the frame as received. */
  message(msg: In, text: string): void;
  /**
   * A binary frame (its buffer is the owner's to keep). Return false when the frame is malformed:
   * it counts toward the malformed-frame limit, as bad text does.
   */
  binary(data: Uint8Array): boolean | void;
  /** The link dropped or the dial failed (never after the owner's own `close()`). */
  down(info: DropInfo): void;
}

/** Where a retry schedule stands when it is asked for the next delay. */
export interface RetryState {
  /** Since the link was lost (or since the first dial). */
  sinceLostMs: number;
  /** The previous delay (unjittered); 0 before the first. */
  previousMs: number;
  /** Whether the link that just dropped had opened. */
  wasOpen: boolean;
}

export interface SocketOptions<In, Out> {
  /** Where to dial; a function is asked again before every dial. */
  url: string | (() => Promise<string>);
  /** Sent with the upgrade request (Bun's WebSocket client; browsers cannot set headers). */
  headers?: Record<string, string>;
  /** The schema of the incoming union. */
  schema: z.ZodType<In>;
  log: SocketLog;
  /** The ping message the heartbeat sends. */
  ping(id: number): Out;
  /** The delay before the next dial (the socket adds ±`jitter`). */
  retry(state: RetryState): number;
  /** Re-dial after a drop (default true). */
  reconnect?: boolean;
  /** Close codes after which the socket stops instead of re-dialling (default: `CLOSE.ended`). */
  stopOn?: readonly number[];
  /** Ready only when the owner calls `ready()` (default: ready as soon as `open()` returns). */
  awaitReady?: boolean;
  /** Bytes of binary data kept while not ready (default 0). */
  queueBytes?: number;
  /** Default 5 000. */
  heartbeatMs?: number;
  /** Default 20 000. */
  deadAfterMs?: number;
  /** Malformed frames in a row that close the link (default 5). */
  maxMalformed?: number;
  /** Relative jitter of retry delays (default 0.2: ±20 %). */
  jitter?: number;
}

const HEARTBEAT_MS = 5_000;
const DEAD_AFTER_MS = 20_000;
const MAX_MALFORMED = 5;

export class Socket<In, Out> {
  private ws: WebSocket | null = null;
  private isReady = false;
  private stopped = false;
  private started = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  /** A frame arrived since the last heartbeat tick. */
  private heard = false;
  private lastHeard = 0;
  private pingId = 0;
  private lostAt = 0;
  private previousDelay = 0;
  private malformedRun = 0;
  private firstMalformed = "";
  private queue: Uint8Array[] = [];
  private queued = 0;
  private readonly stopOn: readonly number[];
  /** The URL for logs, without its query (which may carry a ticket). */
  private where = "";

  constructor(
    private readonly opts: SocketOptions<In, Out>,
    private readonly h: SocketHandlers<In>,
  ) {
    this.stopOn = opts.stopOn ?? [CLOSE.ended];
  }

  /** Dials (once; later calls do nothing). */
  start(): this {
    if (this.started || this.stopped) return this;
    this.started = true;
    this.lostAt = Date.now();
    this.dial();
    return this;
  }

  /** A link is open (handshake may be in progress). */
  get connected(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** A link is open and ready for data. */
  get ready(): boolean {
    return this.isReady;
  }

  /** Bytes handed to the current link but not yet sent (for flow control). */
  get buffered(): number {
    return this.ws?.bufferedAmount ?? 0;
  }

  /** Sends a control message on the current link; false when there is none. */
  /** Sends a heartbeat ping now, outside the beat (a round trip measured at once); false when not open. */
  ping(): boolean {
    return this.send(this.opts.ping(++this.pingId));
  }

  send(msg: Out): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  /** Sends bytes once the link is ready, queueing (bounded) until then; false when dropped. */
  sendBinary(data: Uint8Array): boolean {
    const ws = this.ws;
    if (this.isReady && ws && ws.readyState === WebSocket.OPEN) {
      ws.send(data);
      return true;
    }
    const max = this.opts.queueBytes ?? 0;
    if (this.stopped || this.queued + data.length > max) return false;
    // A copy: the caller may reuse its buffer before the link is back.
    this.queue.push(data.slice());
    this.queued += data.length;
    return true;
  }

  /** The peer accepted the handshake (with `awaitReady`): queued bytes go out. */
  markReady(): void {
    const ws = this.ws;
    if (this.isReady || !ws || ws.readyState !== WebSocket.OPEN) return;
    this.isReady = true;
    for (const data of this.queue) ws.send(data);
    this.queue = [];
    this.queued = 0;
  }

  /** Counts a frame the owner could not use toward the malformed-frame limit. */
  malformed(sample: string): void {
    if (this.malformedRun++ === 0) this.firstMalformed = sample.slice(0, 200);
    const max = this.opts.maxMalformed ?? MAX_MALFORMED;
    if (this.malformedRun < max) return;
    const ws = this.ws;
    this.opts.log.warn(`closing the link: ${this.malformedRun} malformed frames in a row`, {
      url: this.where,
      first: this.firstMalformed,
    });
    this.malformedRun = 0;
    if (ws) this.drop(ws, CLOSE.malformed, "malformed frames");
  }

  /** Closes for good: no re-dial, nothing more is sent or reported. */
  close(code = 1000, reason = "done"): void {
    if (this.stopped) return;
    this.stopped = true;
    this.isReady = false;
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeat);
    this.queue = [];
    this.queued = 0;
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(code, reason);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private dial(): void {
    if (this.stopped) return;
    const url = this.opts.url;
    if (typeof url === "string") return this.connect(url);
    url().then(
      (u) => {
        if (!this.stopped) this.connect(u);
      },
      (err: unknown) => {
        if (!this.stopped) this.lost(1006, err instanceof Error ? err.message : String(err), false);
      },
    );
  }

  private connect(url: string): void {
    this.where = url.split("?")[0] as string;
    // Headers are Bun's extension; browsers take none (they authenticate with a ticket in the URL).
    const headers = this.opts.headers;
    const ws = headers ? new WebSocket(url, { headers } as never) : new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let wasOpen = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      wasOpen = true;
      this.malformedRun = 0;
      this.heard = true;
      this.lastHeard = Date.now();
      this.startHeartbeat(ws);
      this.h.open();
      if (!this.opts.awaitReady) this.markReady();
    };
    ws.onmessage = (e) => {
      this.heard = true;
      const data = e.data;
      if (typeof data !== "string") {
        if (this.h.binary(new Uint8Array(data as ArrayBuffer)) === false) this.malformed("(binary frame)");
        else this.malformedRun = 0;
        return;
      }
      const msg = parseMessage(this.opts.schema, data);
      if (msg === null) return this.malformed(data);
      this.malformedRun = 0;
      this.h.message(msg, data);
    };
    ws.onerror = () => {
      // onclose follows.
    };
    ws.onclose = (e) => {
      if (this.ws === ws) this.lost(e.code, e.reason, wasOpen);
    };
  }

  private startHeartbeat(ws: WebSocket): void {
    clearInterval(this.heartbeat);
    const every = this.opts.heartbeatMs ?? HEARTBEAT_MS;
    const deadAfter = this.opts.deadAfterMs ?? DEAD_AFTER_MS;
    this.heartbeat = setInterval(() => {
      if (this.ws !== ws) return;
      const now = Date.now();
      if (this.heard) {
        this.heard = false;
        this.lastHeard = now;
      } else if (now - this.lastHeard >= deadAfter) {
        this.opts.log.warn("peer silent for too long; dropping the link", { url: this.where, silentMs: now - this.lastHeard });
        this.drop(ws, CLOSE.deadPeer, "dead peer");
        return;
      }
      this.send(this.opts.ping(++this.pingId));
    }, every);
  }

  /** Gives a link up at once, without waiting for the peer's closing handshake. */
  private drop(ws: WebSocket, code: number, reason: string): void {
    if (this.ws !== ws) return;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
    this.lost(code, reason, true);
  }

  private lost(code: number, reason: string, wasOpen: boolean): void {
    this.ws = null;
    this.isReady = false;
    clearInterval(this.heartbeat);
    if (this.stopped) return;
    const now = Date.now();
    if (wasOpen) {
      this.lostAt = now;
      this.previousDelay = 0;
    }
    const stop = !(this.opts.reconnect ?? true) || this.stopOn.includes(code);
    if (stop) {
      this.stopped = true;
      this.queue = [];
      this.queued = 0;
      this.h.down({ code, reason, wasOpen, retryInMs: null });
      return;
    }
    const delay = this.opts.retry({ sinceLostMs: now - this.lostAt, previousMs: this.previousDelay, wasOpen });
    this.previousDelay = delay;
    const spread = this.opts.jitter ?? 0.2;
    const wait = Math.max(0, Math.round(delay * (1 - spread + Math.random() * 2 * spread)));
    this.h.down({ code, reason, wasOpen, retryInMs: wait });
    // The owner may have closed the socket from down().
    if (!this.stopped) this.retryTimer = setTimeout(() => this.dial(), wait);
  }
}
