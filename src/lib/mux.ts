/**
 * The pumping of a port forward: numbered TCP streams over one link, with per-stream and
 * per-link flow control, half-close, and resumption across a dropped link (the wire format is
 * `src/protocol/forward.ts`). Used by the CLI's `catty forward` (the opener) and by the agent (the
 * acceptor); the server in between only passes frames.
 *
 * Flow control. A sender may have at most `MUX_WINDOW` bytes of a stream in flight — sent but not
 * yet written out by the receiver, who says how far it got with ACK — and at most
 * `MUX_LINK_WINDOW` over all streams, which bounds what the server holds for a slow peer. A
 * stream's writer is told to wait (`write` returns false, then `onDrain`) once a window's worth
 * waits to be acknowledged, so a fast source never outruns a slow sink and memory stays flat.
 *
 * Resumption. Bytes stay with the sender until the receiver acknowledges them, so the in-flight
 * window is also the resend buffer: when a link drops and a new one opens, each side's `hello`
 * says how much of each stream it received, and the other sends again from there. A stream one
 * side no longer knows is reset on the other (or closed, when it had finished both ways).
 *
 * Untrusted input: every frame is checked (`decodeMuxFrame`); a peer that breaks the rules —
 * data beyond its window, a stream id it may not use — is reported through `onViolation`, and
 * the owner counts it toward closing the link.
 */
import type { Socket as NetSocket } from "node:net";
import {
  decodeMuxFrame,
  encodeMuxFrame,
  FORWARD_PROTOCOL,
  MUX_ACK,
  MUX_DATA,
  MUX_FIN,
  MUX_LINK_WINDOW,
  MUX_MAX_DATA,
  MUX_MAX_STREAMS,
  MUX_OPEN,
  MUX_OPENED,
  MUX_RESET,
  MUX_WINDOW,
  type ForwardMessage,
  type MuxFrame,
  type StreamState,
} from "../protocol/forward.ts";

type Hello = Extract<ForwardMessage, { type: "hello" }>;

/** Where frames go: the current link. */
export interface MuxTransport {
  send(frame: Uint8Array): void;
  hello(msg: Hello): void;
}

export interface MuxOptions {
  role: "opener" | "acceptor";
  /** Acceptor: the peer opened a stream; `accept()` it once connected, or `reset()` it. */
  onStream?(stream: MuxStream): void;
  /** The peer broke the protocol (the owner counts it toward closing the link). */
  onViolation?(what: string): void;
  /** Ports listed in the opener's hello. */
  ports?: number[];
  /** Per-stream window (tests make it small). */
  window?: number;
  linkWindow?: number;
}

const ACK_DELAY_MS = 5;

export class MuxStream {
  /** Bytes the peer sent us, delivered to `onData`. */
  received = 0;
  /** Bytes we wrote out (the app says so with `consumed`), and the last such count we told the peer. */
  private consumedBytes = 0;
  advertised = 0;
  /** The peer's FIN arrived (delivered to `onEnd`), and whether we told the peer so. */
  gotFin = false;
  advertisedFin = false;
  /** Send side: bytes the app gave, bytes sent on the current link, bytes the peer wrote out. */
  written = 0;
  sendPos = 0;
  acked = 0;
  /** Data not yet acknowledged: `retained[0]` starts at `retainedStart`. */
  private retained: Uint8Array[] = [];
  private retainedStart = 0;
  private cursorIdx = 0;
  private cursorOff = 0;
  /** The app ended its side; the FIN went out on the current link; the peer took it. */
  wantFin = false;
  sentFin = false;
  finAcked = false;
  /** Opener: waiting for OPENED; (re)send OPEN on the next link. Acceptor: connected. */
  opening: boolean;
  needOpen: boolean;
  accepted = false;
  closed = false;
  private waiting = false;

  onData: (data: Uint8Array) => void = () => {};
  /** The peer ended its side (half-close). */
  onEnd: () => void = () => {};
  /** Writing may go on. */
  onDrain: () => void = () => {};
  /** The stream is over: `null` when it finished both ways, else why it was reset. */
  onClose: (error: string | null) => void = () => {};
  /** Opener: the session's port accepted the connection. */
  onOpened: () => void = () => {};

  constructor(
    private readonly mux: Mux,
    readonly id: number,
    readonly port: number,
    opener: boolean,
  ) {
    this.opening = opener;
    this.needOpen = opener;
  }

  /** Queues bytes for the peer; false: a window's worth waits already, hold off until `onDrain`. */
  write(data: Uint8Array): boolean {
    if (this.closed || this.wantFin || data.length === 0) return !this.closed;
    this.retained.push(data);
    this.written += data.length;
    this.mux.pump();
    const ok = this.written - this.acked < this.mux.window;
    if (!ok) this.waiting = true;
    return ok;
  }

  /** Nothing more from this side (the peer's reader sees the end; it may still send). */
  end(): void {
    if (this.closed || this.wantFin) return;
    this.wantFin = true;
    this.mux.pump();
  }

  /** `n` bytes handed to `onData` were written out: the peer may send that much more. */
  consumed(n: number): void {
    if (this.closed) return;
    this.consumedBytes += n;
    this.mux.ackLater(this, this.consumedBytes - this.advertised >= this.mux.window / 4);
  }

  /** Acceptor: connected to the session's port. */
  accept(): void {
    if (this.closed || this.accepted) return;
    this.accepted = true;
    this.mux.sendFrame({ kind: MUX_OPENED, id: this.id });
  }

  /** Ends the stream at once, both ways, telling the peer why. */
  reset(reason: string): void {
    if (this.closed) return;
    this.mux.sendFrame({ kind: MUX_RESET, id: this.id, reason });
    this.mux.remove(this, reason);
  }

  get consumedCount(): number {
    return this.consumedBytes;
  }

  /** Bytes sent but not acknowledged (counted against the link's window). */
  get inFlight(): number {
    return this.sendPos - this.acked;
  }

  state(): StreamState {
    return { id: this.id, received: this.received, fin: this.gotFin };
  }

  /** The next piece to send, at most `max` bytes, or null. */
  nextChunk(max: number): Uint8Array | null {
    const room = Math.min(max, MUX_MAX_DATA, this.acked + this.mux.window - this.sendPos, this.written - this.sendPos);
    if (room <= 0) return null;
    const chunk = this.retained[this.cursorIdx];
    if (!chunk) return null;
    const piece = chunk.subarray(this.cursorOff, this.cursorOff + room);
    this.cursorOff += piece.length;
    if (this.cursorOff >= chunk.length) {
      this.cursorIdx++;
      this.cursorOff = 0;
    }
    this.sendPos += piece.length;
    return piece;
  }

  /** The peer wrote out `consumed` bytes: they need not be kept any more. */
  ack(consumed: number, fin: boolean): boolean {
    if (consumed < this.acked || consumed > this.sendPos) return false;
    this.acked = consumed;
    while (this.retained.length > 0 && this.retainedStart + (this.retained[0] as Uint8Array).length <= this.acked) {
      this.retainedStart += (this.retained.shift() as Uint8Array).length;
      this.cursorIdx--;
    }
    if (fin && this.sentFin) this.finAcked = true;
    if (this.waiting && this.written - this.acked < this.mux.window) {
      this.waiting = false;
      this.onDrain();
    }
    return true;
  }

  /** A new link: send again from what the peer says it received. False when that cannot be. */
  rewind(peer: StreamState | undefined): boolean {
    const from = peer?.received ?? 0;
    if (from < this.retainedStart || from > this.sendPos) return false;
    this.sendPos = from;
    let at = this.retainedStart;
    this.cursorIdx = 0;
    this.cursorOff = 0;
    for (const chunk of this.retained) {
      if (at + chunk.length > from) break;
      at += chunk.length;
      this.cursorIdx++;
    }
    this.cursorOff = from - at;
    // The peer's hello says whether it has our FIN; if not, it goes again after the data.
    if (peer?.fin && this.wantFin) this.sentFin = this.finAcked = true;
    else if (!this.finAcked) this.sentFin = false;
    this.advertised = -1;
    this.advertisedFin = false;
    return true;
  }

  get done(): boolean {
    return this.finAcked && this.acked === this.written && this.gotFin;
  }

  get ackDue(): boolean {
    return this.consumedBytes !== this.advertised || this.gotFin !== this.advertisedFin;
  }

  markAdvertised(): void {
    this.advertised = this.consumedBytes;
    this.advertisedFin = this.gotFin;
  }
}

export class Mux {
  readonly streams = new Map<number, MuxStream>();
  readonly window: number;
  private readonly linkWindow: number;
  private link: MuxTransport | null = null;
  /** The peer's hello arrived on the current link: frames may flow. */
  private peerReady = false;
  private nextId = 1;
  /** Acceptor: the highest stream id the peer opened (ids are never reused). */
  private highestId = 0;
  private pumping = false;
  private readonly acks = new Set<MuxStream>();
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  constructor(private readonly opts: MuxOptions) {
    this.window = opts.window ?? MUX_WINDOW;
    this.linkWindow = opts.linkWindow ?? MUX_LINK_WINDOW;
  }

  /** A link opened: our hello goes out; nothing else until the peer's hello. */
  attach(link: MuxTransport): void {
    this.link = link;
    this.peerReady = false;
    link.hello({ type: "hello", protocol: FORWARD_PROTOCOL, streams: [...this.streams.values()].map((s) => s.state()), ports: this.opts.ports ?? [] });
  }

  /** The link dropped: streams wait (their sockets stay open) for the next one. */
  detach(): void {
    this.link = null;
    this.peerReady = false;
  }

  get ready(): boolean {
    return this.peerReady;
  }

  /** The peer's hello: resume each stream where the peer stands. */
  hello(msg: Hello): void {
    if (!this.link) return;
    if (msg.protocol !== FORWARD_PROTOCOL) {
      this.opts.onViolation?.(`the peer speaks forward protocol ${msg.protocol}, this side ${FORWARD_PROTOCOL}`);
      return;
    }
    const peer = new Map(msg.streams.map((s) => [s.id, s]));
    for (const s of [...this.streams.values()]) {
      const p = peer.get(s.id);
      if (!p) {
        if (s.opening && this.opts.role === "opener") {
          // The peer never got the OPEN: open again, from the first byte.
          s.needOpen = true;
          s.rewind(undefined);
        } else if (s.gotFin && s.sentFin) this.remove(s, null);
        else this.remove(s, "the other side lost this connection");
        continue;
      }
      if (!s.rewind(p)) this.resetLocal(s, "the other side's position is not one this side can resume from");
    }
    this.peerReady = true;
    // Connected streams whose OPENED may have been lost, and every ACK, again.
    for (const s of this.streams.values()) {
      if (this.opts.role === "acceptor" && s.accepted) this.sendFrame({ kind: MUX_OPENED, id: s.id });
      if (!s.needOpen) this.acks.add(s);
    }
    this.pump();
    this.flushAcks();
  }

  /** A stream to the session's `port` (opener). */
  open(port: number): MuxStream {
    if (this.opts.role !== "opener") throw new Error("only the opener opens streams");
    const s = new MuxStream(this, this.nextId++, port, true);
    this.streams.set(s.id, s);
    this.pump();
    return s;
  }

  /** A binary frame from the peer; false when it is not a frame at all. */
  frame(raw: Uint8Array): boolean {
    const f = decodeMuxFrame(raw);
    if (!f) return false;
    if (!this.peerReady) {
      this.opts.onViolation?.("a stream frame before the hello");
      return true;
    }
    this.handle(f);
    return true;
  }

  private handle(f: MuxFrame): void {
    if (f.kind === MUX_OPEN) return this.peerOpen(f.id, f.port);
    const s = this.streams.get(f.id);
    if (!s) {
      // Frames for a stream just ended here are late, not wrong; ids never used are.
      const used = this.opts.role === "opener" ? f.id < this.nextId : f.id <= this.highestId;
      if (!used) this.opts.onViolation?.(`a frame for stream ${f.id}, which was never opened`);
      return;
    }
    switch (f.kind) {
      case MUX_OPENED:
        if (this.opts.role !== "opener") return this.opts.onViolation?.("OPENED from the opener");
        if (s.opening) {
          s.opening = false;
          s.onOpened();
        }
        return;
      case MUX_RESET:
        this.remove(s, f.reason || "reset by the other side");
        return;
      case MUX_DATA:
        if (s.gotFin || s.received + f.data.length > s.consumedCount + this.window) {
          this.resetLocal(s, s.gotFin ? "data after the end of the stream" : "the other side sent more than its window");
          this.opts.onViolation?.("data beyond the stream's window");
          return;
        }
        s.received += f.data.length;
        s.onData(f.data);
        return;
      case MUX_ACK:
        if (!s.ack(f.consumed, f.fin)) {
          this.resetLocal(s, "an acknowledgement of bytes never sent");
          this.opts.onViolation?.("an ACK beyond what was sent");
          return;
        }
        this.finishIfDone(s);
        this.pump();
        return;
      case MUX_FIN:
        if (s.gotFin) return;
        s.gotFin = true;
        s.onEnd();
        this.ackLater(s, true);
        this.finishIfDone(s);
        return;
    }
  }

  private peerOpen(id: number, port: number): void {
    if (this.opts.role !== "acceptor" || id <= this.highestId) {
      this.opts.onViolation?.(this.opts.role === "acceptor" ? `stream ${id} opened twice` : "OPEN from the acceptor");
      return;
    }
    this.highestId = id;
    if (this.streams.size >= MUX_MAX_STREAMS) {
      this.sendFrame({ kind: MUX_RESET, id, reason: `too many connections on this forward (${MUX_MAX_STREAMS})` });
      return;
    }
    const s = new MuxStream(this, id, port, false);
    this.streams.set(id, s);
    this.opts.onStream?.(s);
  }

  sendFrame(f: MuxFrame): void {
    if (this.link && this.peerReady) this.link.send(encodeMuxFrame(f));
  }

  /** Sends what the windows allow, one piece per stream in turn. */
  pump(): void {
    if (this.pumping || !this.link || !this.peerReady) return;
    this.pumping = true;
    try {
      let inFlight = 0;
      for (const s of this.streams.values()) inFlight += s.inFlight;
      for (let progress = true; progress; ) {
        progress = false;
        for (const s of this.streams.values()) {
          if (!this.link || !this.peerReady) return;
          if (s.needOpen) {
            s.needOpen = false;
            this.link.send(encodeMuxFrame({ kind: MUX_OPEN, id: s.id, port: s.port }));
          }
          const piece = s.nextChunk(this.linkWindow - inFlight);
          if (piece) {
            inFlight += piece.length;
            this.link.send(encodeMuxFrame({ kind: MUX_DATA, id: s.id, data: piece }));
            progress = true;
          } else if (s.wantFin && !s.sentFin && s.sendPos === s.written) {
            s.sentFin = true;
            this.link.send(encodeMuxFrame({ kind: MUX_FIN, id: s.id }));
          }
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Tells the peer how far a stream was written out: now, or after a moment (batched). */
  ackLater(s: MuxStream, now: boolean): void {
    this.acks.add(s);
    if (now) return this.flushAcks();
    this.ackTimer ??= setTimeout(() => this.flushAcks(), ACK_DELAY_MS);
  }

  private flushAcks(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (!this.link || !this.peerReady) return;
    for (const s of this.acks) {
      if (s.closed || !s.ackDue) continue;
      s.markAdvertised();
      this.link.send(encodeMuxFrame({ kind: MUX_ACK, id: s.id, consumed: s.consumedCount, fin: s.gotFin }));
      this.finishIfDone(s);
    }
    this.acks.clear();
  }

  private finishIfDone(s: MuxStream): void {
    if (s.done && !s.ackDue) this.remove(s, null);
  }

  /** Ends a stream here and tells the peer. */
  private resetLocal(s: MuxStream, reason: string): void {
    s.reset(reason);
  }

  remove(s: MuxStream, error: string | null): void {
    if (s.closed) return;
    s.closed = true;
    this.streams.delete(s.id);
    this.acks.delete(s);
    s.onClose(error);
  }

  /** Ends every stream (the forward is over). */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.ackTimer);
    for (const s of [...this.streams.values()]) s.reset(reason);
    this.link = null;
  }
}

/**
 * Joins a stream and a TCP socket (made with `allowHalfOpen`): bytes both ways with back-pressure
 * (the socket is paused while the stream's window is full; the peer may send more only once the
 * socket took the bytes), each side's end passed on as a half-close, errors as a reset.
 */
export function pipeSocket(stream: MuxStream, socket: NetSocket): void {
  let over = false;
  socket.on("data", (chunk: Buffer) => {
    if (!stream.write(chunk)) socket.pause();
  });
  stream.onDrain = () => socket.resume();
  socket.on("end", () => stream.end());
  // Bytes the socket took while under its high-water mark count as written out at once; beyond
  // it, once it drains (so the peer's window tracks what the socket really holds).
  let held = 0;
  socket.on("drain", () => {
    const n = held;
    held = 0;
    if (n > 0) stream.consumed(n);
  });
  stream.onData = (data) => {
    if (socket.write(data) && held === 0) stream.consumed(data.length);
    else held += data.length;
  };
  stream.onEnd = () => socket.end();
  stream.onClose = (error) => {
    over = true;
    if (error !== null) socket.destroy();
    else if (!socket.destroyed) socket.end();
  };
  socket.on("error", (err) => stream.reset(err.message));
  socket.on("close", () => {
    // Closed after both halves ended: the stream finishes once the peer has acknowledged all.
    if (!over && !(stream.gotFin && stream.wantFin)) stream.reset("the connection closed");
  });
}
