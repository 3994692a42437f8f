/**
 * The screen mirror: a headless xterm fed with the PTY output, so a client that is new or too far
 * behind gets the current screen (and scrollback) as one string of escape sequences.
 *
 * Parsing costs far more than moving bytes, so the mirror is fed off the echo path and in
 * bounded slices: output waits `FEED_DELAY_MS` (so a keystroke's echo is never queued behind a
 * parse), then goes to xterm at most `SLICE_BYTES` at a time, the next slice only once xterm has
 * parsed the last (xterm itself refuses data once 50 MB wait unparsed), and with a rest after each
 * slice three times as long as its parse: the mirror takes at most a quarter of the agent's time,
 * which keeps up with any program's ordinary output, while a flood's bytes go to the clients
 * instead of into a parser whose work the next screenful undoes. Anyone waiting for a snapshot
 * ends the rests. When a flood outruns the parser, what waits is cut to its last `BACKLOG_BYTES`: the terminal is reset, put back into the
 * modes the skipped output switched on (alternate screen, cursor keys…), and fed the tail, which
 * holds far more than a screenful. The screen then is what a terminal shows after that output;
 * lines of scrollback from within the skipped part are gone, and the ring still holds the bytes
 * themselves for exact replay.
 */
import { SerializeAddon } from "@xterm/addon-serialize";
import { Terminal } from "@xterm/headless";
import { ModeTracker } from "../src/lib/terminal-modes.ts";
import type { AgentToServer } from "../src/protocol/index.ts";

const FEED_DELAY_MS = 20;
/** Bytes handed to xterm per parse. */
const SLICE_BYTES = 64 * 1024;
/** Unparsed output kept when a flood outruns the parser. */
const BACKLOG_BYTES = 1024 * 1024;
/** Rest after a slice, as a multiple of the time its parse took. */
const REST_FACTOR = 3;

/** The screen as the protocol's `screen` message carries it; `offset` is where it is valid. */
export type ScreenSnapshot = Omit<Extract<AgentToServer, { type: "screen" }>, "type" | "clientId">;

interface Waiter {
  /** Serialize once everything up to this offset is parsed. */
  upTo: number;
  scrollback: number;
  resolve(snap: ScreenSnapshot): void;
}

export class ScreenMirror {
  private readonly term: Terminal;
  private readonly serializer = new SerializeAddon();
  /** Modes as of the end of the output handed to the mirror, to restore after a skip. */
  private readonly modes = new ModeTracker();
  /** Offset of the output xterm has parsed up to. */
  private fed = 0;
  /** Output not yet handed to xterm, and the offset at its end. */
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private pendingEnd = 0;
  /** Output was skipped: reset and restore modes before the next slice. */
  private skipped = false;
  /** xterm is parsing a slice (its callback is pending). */
  private inParse = false;
  /** A pump is scheduled (the feed delay, or a rest). */
  private feedTimer: Timer | undefined;
  private waiters: Waiter[] = [];
  private disposed = false;
  /** Bytes skipped in floods since the start (for logs and tests). */
  skippedBytes = 0;

  constructor(cols: number, rows: number, scrollback = 1000) {
    this.term = new Terminal({ cols, rows, scrollback, allowProposedApi: true });
    this.term.loadAddon(this.serializer);
  }

  write(data: Uint8Array, end: number): void {
    this.pending.push(data);
    this.pendingBytes += data.length;
    this.pendingEnd = end;
    this.modes.feed(data);
    if (this.pendingBytes > BACKLOG_BYTES) this.trim();
    if (!this.inParse) this.feedTimer ??= setTimeout(() => this.pump(), FEED_DELAY_MS);
  }

  /** Drops the oldest unparsed output beyond the backlog. */
  private trim(): void {
    while (this.pending.length > 1 && this.pendingBytes - (this.pending[0] as Uint8Array).length >= BACKLOG_BYTES) {
      const dropped = this.pending.shift() as Uint8Array;
      this.pendingBytes -= dropped.length;
      this.skippedBytes += dropped.length;
      this.skipped = true;
    }
  }

  /** Hands xterm the next slice; what comes after depends on what waits once it is parsed. */
  private pump(): void {
    clearTimeout(this.feedTimer);
    this.feedTimer = undefined;
    if (this.disposed || this.inParse) return;
    if (this.pending.length === 0) {
      this.serveWaiters();
      return;
    }
    this.inParse = true;
    let prefix = "";
    if (this.skipped) {
      this.skipped = false;
      this.term.reset();
      prefix = this.modes.activeSequence();
    }
    const slice = this.takeSlice();
    const end = this.pendingEnd - this.pendingBytes;
    const started = performance.now();
    if (prefix) this.term.write(prefix);
    this.term.write(slice, () => {
      this.inParse = false;
      this.fed = end;
      this.serveWaiters();
      if (this.pending.length === 0 || this.disposed) return;
      if (this.waiters.length > 0) return this.pump();
      const rest = Math.max(1, (performance.now() - started) * REST_FACTOR);
      this.feedTimer = setTimeout(() => this.pump(), rest);
    });
  }

  /** Up to `SLICE_BYTES` from the head of what waits. */
  private takeSlice(): Uint8Array {
    const first = this.pending[0] as Uint8Array;
    if (first.length > SLICE_BYTES) {
      this.pending[0] = first.subarray(SLICE_BYTES);
      this.pendingBytes -= SLICE_BYTES;
      return first.subarray(0, SLICE_BYTES);
    }
    const parts: Uint8Array[] = [];
    let size = 0;
    while (this.pending.length > 0 && size + (this.pending[0] as Uint8Array).length <= SLICE_BYTES) {
      const part = this.pending.shift() as Uint8Array;
      parts.push(part);
      size += part.length;
    }
    this.pendingBytes -= size;
    if (parts.length === 1) return parts[0] as Uint8Array;
    const out = new Uint8Array(size);
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  /** Serializes for every waiter whose output is parsed, right now (xterm holds exactly `fed`). */
  private serveWaiters(): void {
    if (this.waiters.length === 0) return;
    const ready = this.waiters.filter((w) => w.upTo <= this.fed);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => w.upTo > this.fed);
    for (const w of ready) {
      w.resolve({
        data: this.serializer.serialize({ scrollback: w.scrollback }),
        offset: this.fed,
        cols: this.term.cols,
        rows: this.term.rows,
      });
    }
  }

  resize(cols: number, rows: number): void {
    // Applied at once, as a terminal would when its window changes; output still unparsed is
    // drawn at the new size.
    this.term.resize(cols, rows);
  }

  get cols(): number {
    return this.term.cols;
  }

  get rows(): number {
    return this.term.rows;
  }

  /** The screen once everything written so far is parsed; `offset` is where it is valid. */
  snapshot(opts: { scrollback?: number } = {}): Promise<ScreenSnapshot> {
    return new Promise((resolve) => {
      this.waiters.push({ upTo: this.pendingEnd, scrollback: opts.scrollback ?? 1000, resolve });
      // While xterm parses, its callback carries on; otherwise start now (ending any rest).
      if (!this.inParse) this.pump();
    });
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.feedTimer);
    this.term.dispose();
  }
}
