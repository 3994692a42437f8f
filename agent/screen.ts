/**
 * The screen mirror: a headless xterm fed with every byte of PTY output, so a client that is new
 * or too far behind gets the current screen (and scrollback) as one string of escape sequences.
 */
import { SerializeAddon } from "@xterm/addon-serialize";
import { Terminal } from "@xterm/headless";

export class ScreenMirror {
  private readonly term: Terminal;
  private readonly serializer = new SerializeAddon();
  /** Offset of the output the mirror has been fed up to. */
  private fed = 0;

  constructor(cols: number, rows: number, scrollback = 1000) {
    this.term = new Terminal({ cols, rows, scrollback, allowProposedApi: true });
    this.term.loadAddon(this.serializer);
  }

  write(data: Uint8Array, end: number): void {
    this.term.write(data);
    this.fed = end;
  }

  resize(cols: number, rows: number): void {
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
    this.term.dispose();
  }
}
