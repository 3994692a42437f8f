/**
 * A headless terminal (xterm) fed with what a program drew, off the echo path: the agent's mirror
 * of the session's screen (`agent/screen.ts`) and the CLI's mirror of what it drew on the user's
 * terminal (`src/client/local-screen.ts`).
 *
 * Parsing costs far more than moving bytes, so output waits `FEED_DELAY_MS` (a keystroke's echo
 * is never queued behind a parse), then goes to xterm at most `SLICE_BYTES` at a time, the next
 * slice only once xterm has parsed the last (xterm itself refuses data once 50 MB wait
 * unparsed), with a rest after each slice three times as long as its parse: the mirror takes at
 * most a quarter of the process's time, which keeps up with any program's ordinary output.
 * Anyone waiting for the parse (`afterParse`) ends the rests.
 *
 * When output outruns the parser, the overflow policy decides:
 * - `skip` (the agent, which must always have a screen to give): what waits is cut to its last
 *   `keepBytes`; the terminal is reset, put back into the modes the skipped output switched on
 *   (alternate screen, cursor keys…) and fed the tail, which holds far more than a screenful.
 *   Lines of scrollback from within the skipped part are gone.
 * - `let-go` (the CLI, which can ask the session for its screen instead): beyond `maxBytes`
 *   unparsed the mirror stops parsing altogether, so a flood costs nothing here, and is `lost`
 *   until `reset()`.
 */
import { Terminal } from "@xterm/headless";
import { ModeTracker } from "./terminal-modes.ts";

const FEED_DELAY_MS = 20;
/** Bytes handed to xterm per parse. */
const SLICE_BYTES = 64 * 1024;
/** Rest after a slice, as a multiple of the time its parse took. */
const REST_FACTOR = 3;

export type Overflow = { policy: "skip"; keepBytes: number } | { policy: "let-go"; maxBytes: number };

export interface TerminalMirrorOptions {
  cols: number;
  rows: number;
  scrollback: number;
  overflow: Overflow;
  /** Output is kept but not parsed until `start()` (default false). */
  paused?: boolean;
}

interface Waiter {
  /** Called once this many bytes are parsed (`ok`), or when the terminal is replaced first. */
  upTo: number;
  done(ok: boolean): void;
}

export class TerminalMirror {
  private current: Terminal;
  /** Modes as of the end of the output written (the `skip` policy restores them). */
  private readonly modes: ModeTracker | null;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  /** Output was skipped: reset and restore modes before the next slice. */
  private skipped = false;
  /** xterm is parsing a slice (its callback is pending). */
  private inParse = false;
  /** A pump is scheduled (the feed delay, or a rest). */
  private feedTimer: Timer | undefined;
  private waiters: Waiter[] = [];
  private disposed = false;
  /** Output is kept, not parsed, until `start()`. */
  paused: boolean;
  /** Bytes written so far; skipped and let-go bytes included. */
  written = 0;
  /** Bytes written that xterm holds (skipped and let-go ones count once passed). */
  parsed = 0;
  /** The `let-go` policy let go: nothing is parsed until `reset()`. */
  lost = false;
  /** Bytes skipped in floods since the start (for logs and tests). */
  skippedBytes = 0;

  constructor(private readonly opts: TerminalMirrorOptions) {
    this.paused = opts.paused ?? false;
    this.modes = opts.overflow.policy === "skip" ? new ModeTracker() : null;
    this.current = this.newTerminal(opts.cols, opts.rows);
  }

  /** The terminal; `reset()` and a let-go replace it. */
  get term(): Terminal {
    return this.current;
  }

  write(data: Uint8Array | string): void {
    if (this.lost || this.disposed) return;
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    this.written += bytes.length;
    this.modes?.feed(bytes);
    const overflow = this.opts.overflow;
    if (overflow.policy === "let-go" && this.written - this.parsed > overflow.maxBytes) return this.letGo();
    if (overflow.policy === "skip" && this.pendingBytes > overflow.keepBytes) this.trim(overflow.keepBytes);
    if (!this.paused && !this.inParse) this.feedTimer ??= setTimeout(() => this.pump(), FEED_DELAY_MS);
  }

  /** Starts parsing what waits (a paused mirror), after `prefix` (written to xterm first). */
  start(prefix = ""): void {
    if (!this.paused || this.lost) return;
    this.paused = false;
    if (prefix) this.current.write(prefix);
    if (this.pending.length > 0) this.feedTimer ??= setTimeout(() => this.pump(), FEED_DELAY_MS);
  }

  /** `done(true)` once everything written so far is parsed, right then; `done(false)` if the terminal is replaced first. */
  afterParse(done: (ok: boolean) => void): void {
    if (this.lost || this.paused || this.disposed) return done(false);
    this.waiters.push({ upTo: this.written, done });
    // While xterm parses, its callback carries on; otherwise start now (ending any rest).
    if (!this.inParse) this.pump();
  }

  /** A fresh, empty terminal, parsing from here on (not paused, not lost). */
  reset(): void {
    this.replace();
    this.lost = false;
    this.paused = false;
  }

  resize(cols: number, rows: number): void {
    // Applied at once, as a terminal would when its window changes; output still unparsed is
    // drawn at the new size.
    this.current.resize(cols, rows);
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.feedTimer);
    this.cancelWaiters();
    this.current.dispose();
  }

  private newTerminal(cols: number, rows: number): Terminal {
    return new Terminal({ cols, rows, scrollback: this.opts.scrollback, allowProposedApi: true });
  }

  /** Lets go of everything: the terminal's contents are unknown until `reset()`. */
  letGo(): void {
    this.replace();
    this.lost = true;
  }

  /** Drops what waits and the terminal (a new parser: the old one may still hold a backlog it would go on parsing). */
  private replace(): void {
    clearTimeout(this.feedTimer);
    this.feedTimer = undefined;
    this.pending = [];
    this.pendingBytes = 0;
    this.parsed = this.written;
    this.inParse = false;
    this.cancelWaiters();
    const { cols, rows } = this.current;
    this.current.dispose();
    this.current = this.newTerminal(cols, rows);
  }

  private cancelWaiters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.done(false);
  }

  /** Drops the oldest unparsed output beyond `keep`. */
  private trim(keep: number): void {
    while (this.pending.length > 1 && this.pendingBytes - (this.pending[0] as Uint8Array).length >= keep) {
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
    if (this.disposed || this.inParse || this.paused || this.lost) return;
    if (this.pending.length === 0) {
      this.serveWaiters();
      return;
    }
    this.inParse = true;
    const term = this.current;
    if (this.skipped) {
      this.skipped = false;
      term.reset();
      const modes = this.modes?.activeSequence() ?? "";
      if (modes) term.write(modes);
    }
    const slice = this.takeSlice();
    const end = this.written - this.pendingBytes;
    const started = performance.now();
    term.write(slice, () => {
      if (term !== this.current) return; // replaced meanwhile: its waiters were answered
      this.inParse = false;
      this.parsed = end;
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
    return parts.length === 1 ? (parts[0] as Uint8Array) : Buffer.concat(parts);
  }

  /** Answers every waiter whose output is parsed, right now (xterm holds exactly `parsed`). */
  private serveWaiters(): void {
    if (this.waiters.length === 0) return;
    const ready = this.waiters.filter((w) => w.upTo <= this.parsed);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => w.upTo > this.parsed);
    for (const w of ready) w.done(true);
  }
}
