/**
 * What an attached client draws on the user's terminal: the session's output and screens, and
 * catty's own one-line notices over the bottom row. It keeps track of the modes the program
 * switched on (`ModeTracker`, undone on exit) and of what it has drawn (`LocalScreen`), so that a
 * notice, once it goes, is replaced by exactly the row it covered — never a repaint of the whole
 * screen, which would erase the lines catty printed before attaching.
 */
import { LocalScreen } from "./local-screen.ts";
import { ModeTracker } from "../lib/terminal-modes.ts";

export interface DisplayOptions {
  out: { write(data: Uint8Array | string): unknown };
  size(): { cols: number; rows: number };
  /** Asks the session for a full screen (when the covered row is not known). */
  repaint(): void;
  /** A problem's status is shown only if it lasts longer than this (default 500 ms). */
  statusDelayMs?: number;
  /** How long a notice stays (default 3 s). */
  noticeMs?: number;
  /** Unparsed output beyond which the local mirror lets go (see `LocalScreen`). */
  maxBacklogBytes?: number;
}

export class Display {
  readonly modes = new ModeTracker();
  private readonly screen: LocalScreen;
  /** The row (0-based) a notice covers now; null when none does. */
  private noticeRow: number | null = null;
  private timer: Timer | undefined;
  /** Output held back while a covered row is put back, so the row is not drawn over newer output. */
  private held: Uint8Array[] | null = null;
  /** Full screens painted so far: a row computed before the latest one is stale. */
  private paints = 0;
  private restoring: Promise<void> = Promise.resolve();

  constructor(private readonly opts: DisplayOptions) {
    const { cols, rows } = opts.size();
    this.screen = new LocalScreen(cols, rows, opts.maxBacklogBytes);
  }

  /** Where the terminal's cursor was before anything was drawn (null: unknown). */
  anchor(position: { row: number; col: number } | null): void {
    if (position) this.screen.anchor(position.row, position.col);
    else this.screen.unanchored();
  }

  /** Program output. */
  output(data: Uint8Array): void {
    if (this.held) {
      this.held.push(data);
      return;
    }
    this.modes.feed(data);
    this.opts.out.write(data);
    this.screen.write(data);
  }

  /** A full screen from the session, drawn from the top-left corner of a cleared terminal. */
  paint(data: string): void {
    this.paints++;
    // Output held back was before this screen, which includes it (or is followed by it again).
    if (this.held) this.held = [];
    this.noticeRow = null;
    // Modes of what was on screen (vim's alternate screen…) are undone first: the new screen
    // switches on its own, and the tracker knows only those from here on.
    this.opts.out.write(`${this.modes.restoreSequence()}\x1b[H\x1b[2J${data}`);
    this.modes.reset();
    this.modes.feed(data);
    this.screen.painted(data);
  }

  /** A problem's status line ("" when it is over), shown only if it lasts. */
  status(message: string): void {
    clearTimeout(this.timer);
    if (!message) return this.clearNotice();
    this.timer = setTimeout(() => this.draw(message), this.opts.statusDelayMs ?? 500);
  }

  /** A notice shown now, for a few seconds. */
  notice(message: string): void {
    clearTimeout(this.timer);
    this.draw(message);
    this.timer = setTimeout(() => this.clearNotice(), this.opts.noticeMs ?? 3_000);
  }

  resize(cols: number, rows: number): void {
    this.screen.resize(cols, rows);
  }

  /** Resolves once no covered row is being put back (for tests). */
  settled(): Promise<void> {
    return this.restoring;
  }

  /** What returns the terminal to its normal state on the way out. */
  restoreSequence(): string {
    return this.modes.restoreSequence();
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.screen.dispose();
  }

  private draw(message: string): void {
    const { cols, rows } = this.opts.size();
    const text = ` catty: ${message} `.slice(0, cols);
    // Save and restore the cursor (and pen) around it, so the program's drawing carries on.
    this.opts.out.write(`\x1b7\x1b[${rows};1H\x1b[0m\x1b[2K\x1b[7m${text}\x1b[0m\x1b8`);
    this.noticeRow = rows - 1;
  }

  private clearNotice(): void {
    clearTimeout(this.timer);
    const y = this.noticeRow;
    if (y === null) return;
    this.noticeRow = null;
    this.restoring = this.restoring.then(() => this.putBack(y));
  }

  /** Draws row `y` again as it was under the notice. */
  private async putBack(y: number): Promise<void> {
    // Covered again meanwhile, or gone with a resize: nothing to put back.
    if (this.noticeRow === y || y >= this.opts.size().rows) return;
    const paint = this.paints;
    this.held = [];
    const row = await this.screen.row(y);
    const held = this.held;
    this.held = null;
    if (paint === this.paints && this.noticeRow !== y) {
      if (row !== null) this.opts.out.write(`\x1b7\x1b[${y + 1};1H\x1b[0m\x1b[2K${row}\x1b8`);
      else {
        // Unknown (no cursor report, or a flood made the mirror let go): erase, and ask the
        // session for its screen.
        this.opts.out.write(`\x1b7\x1b[${y + 1};1H\x1b[2K\x1b8`);
        this.opts.repaint();
      }
    }
    for (const data of held) this.output(data);
  }
}
