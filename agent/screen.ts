/**
 * The screen mirror: a headless xterm fed with the PTY output (`src/lib/terminal-mirror.ts`), so a
 * client that is new or too far behind gets the current screen (and scrollback) as one string of
 * escape sequences. When a flood outruns the parser, what waits is cut to its last
 * `BACKLOG_BYTES` (the `skip` policy): the screen then is what a terminal shows after that
 * output, and the ring still holds the bytes themselves for exact replay.
 */
import { SerializeAddon } from "@xterm/addon-serialize";
import { TerminalMirror } from "../src/lib/terminal-mirror.ts";
import type { AgentToServer } from "../src/protocol/index.ts";

/** Unparsed output kept when a flood outruns the parser. */
const BACKLOG_BYTES = 1024 * 1024;

/** The screen as the protocol's `screen` message carries it; `offset` is where it is valid. */
export type ScreenSnapshot = Omit<Extract<AgentToServer, { type: "screen" }>, "type" | "clientId">;

export class ScreenMirror {
  private readonly mirror: TerminalMirror;
  private readonly serializer = new SerializeAddon();
  /** The stream offset of the mirror's first byte (an offset is this plus a count of bytes written). */
  private base = 0;

  constructor(cols: number, rows: number, scrollback = 1000) {
    // The `skip` policy never replaces the terminal: the serializer stays loaded.
    this.mirror = new TerminalMirror({ cols, rows, scrollback, overflow: { policy: "skip", keepBytes: BACKLOG_BYTES } });
    this.mirror.term.loadAddon(this.serializer);
  }

  /** Output; `end` is the stream offset just past it. */
  write(data: Uint8Array, end: number): void {
    this.mirror.write(data);
    this.base = end - this.mirror.written;
  }

  /** Bytes skipped in floods since the start (for logs and tests). */
  get skippedBytes(): number {
    return this.mirror.skippedBytes;
  }

  resize(cols: number, rows: number): void {
    this.mirror.resize(cols, rows);
  }

  get cols(): number {
    return this.mirror.term.cols;
  }

  get rows(): number {
    return this.mirror.term.rows;
  }

  /** The screen once everything written so far is parsed; `offset` is where it is valid. */
  snapshot(opts: { scrollback?: number } = {}): Promise<ScreenSnapshot> {
    return new Promise((resolve) => {
      this.mirror.afterParse((ok) => {
        if (!ok) return; // disposed
        const term = this.mirror.term;
        resolve({
          data: this.serializer.serialize({ scrollback: opts.scrollback ?? 1000 }),
          offset: this.base + this.mirror.parsed,
          cols: term.cols,
          rows: term.rows,
        });
      });
    });
  }

  dispose(): void {
    this.mirror.dispose();
  }
}
