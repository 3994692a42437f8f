/**
 * The screen mirror: a headless xterm fed with every byte of PTY output, so a client that is new
 * or too far behind gets the current screen (and scrollback) as one string of escape sequences.
 */
import { SerializeAddon } from "@xterm/addon-serialize";
import { Terminal } from "@xterm/headless";

/**
 * How long output waits before the parser sees it. xterm parses on a timer of its own (~1 ms)
 * after every write; while someone types, that parse lands between a keystroke and its echo.
 * Feeding it in batches moves the work off the echo path and parses more bytes per call.
 */
const FEED_DELAY_MS = 20;

export class ScreenMirror {
  private readonly term: Terminal;
  private readonly serializer = new SerializeAddon();
  /** Offset of the output the mirror has been fed up to. */
  private fed = 0;
  private pending: Uint8Array[] = [];
  private pendingEnd = 0;
  private feedTimer: Timer | undefined;

  constructor(cols: number, rows: number, scrollback = 1000) {
    this.term = new Terminal({ cols, rows, scrollback, allowProposedApi: true });
    this.term.loadAddon(this.serializer);
  }

  write(data: Uint8Array, end: number): void {
    this.pending.push(data);
    this.pendingEnd = end;
    this.feedTimer ??= setTimeout(() => this.feed(), FEED_DELAY_MS);
  }

  /** Hands the queued output to the parser. */
  private feed(): void {
    clearTimeout(this.feedTimer);
    this.feedTimer = undefined;
    if (this.pending.length === 0) return;
    for (const data of this.pending) this.term.write(data);
    this.pending = [];
    this.fed = this.pendingEnd;
  }

  resize(cols: number, rows: number): void {
    this.feed();
    this.term.resize(cols, rows);
  }

  get cols(): number {
    return this.term.cols;
  }

  get rows(): number {
    return this.term.rows;
  }

  /** Waits for the parser to catch up, then serializes; `offset` is where the screen is valid. */
  snapshot(opts: { scrollback?: number } = {}): Promise<{ data: string; offset: number; cols: number; rows: number }> {
    this.feed();
    const offset = this.fed;
    return new Promise((resolve) => {
      this.term.write("", () => {
        resolve({
          data: this.serializer.serialize({ scrollback: opts.scrollback ?? 1000 }),
          offset,
          cols: this.term.cols,
          rows: this.term.rows,
        });
      });
    });
  }

  dispose(): void {
    clearTimeout(this.feedTimer);
    this.term.dispose();
  }
}
