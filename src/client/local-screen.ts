/**
 * A headless mirror of what this client has drawn on the user's terminal — not the session's
 * screen: the user's terminal also holds the CLI's own lines, and the session's output starts
 * wherever the cursor was when `catty` attached. `attach.ts` uses it to put back the one row a
 * status notice covered, exactly as it was (characters and colours), instead of asking the agent
 * to repaint the whole screen (which would erase the CLI's lines).
 *
 * The mirror is sized like the local terminal and follows its resizes. It starts at the cursor
 * position the terminal reports (`cursor-report.ts`), or after a full screen paint; until then
 * it is not anchored and has nothing to offer. Output reaches its parser off the echo path
 * (`src/lib/terminal-mirror.ts`). When output outruns the parser by more than `maxBacklogBytes`
 * (a flood), the mirror lets go — it stops parsing, so a flood costs the client nothing here — and
 * `row()` answers null until the next full screen paint anchors it again; the caller then
 * repaints from the agent (after a flood the CLI's lines have scrolled away, so nothing of them
 * is lost).
 */
import type { Terminal } from "@xterm/headless";
import { TerminalMirror } from "../lib/terminal-mirror.ts";
import type { ScreenView } from "../lib/predict.ts";
import { cellSgr, xtermScreen } from "../lib/terminal-cells.ts";

const MAX_BACKLOG_BYTES = 2 * 1024 * 1024;

export class LocalScreen {
  private readonly mirror: TerminalMirror;

  constructor(cols: number, rows: number, maxBacklogBytes = MAX_BACKLOG_BYTES) {
    // Waits for its anchor before parsing; a flood makes it let go (the `let-go` policy).
    this.mirror = new TerminalMirror({ cols, rows, scrollback: 0, overflow: { policy: "let-go", maxBytes: maxBacklogBytes }, paused: true });
  }

  /** Whether `row()` can answer. */
  get anchored(): boolean {
    return !this.waiting && !this.mirror.lost;
  }

  /** The terminal's cursor was at (row, col), 0-based, before anything in the mirror was drawn. */
  anchor(row: number, col: number): void {
    this.mirror.start(`\x1b[${row + 1};${col + 1}H`);
  }

  /** The cursor position is not coming: the mirror waits for a full paint instead. */
  unanchored(): void {
    if (this.waiting) this.mirror.letGo();
  }

  /** Bytes this client wrote to the terminal. */
  write(data: Uint8Array | string): void {
    this.mirror.write(data);
  }

  /** This client cleared the terminal and drew `data` from its top-left corner. */
  painted(data: string): void {
    this.mirror.reset();
    this.mirror.write(data);
  }

  resize(cols: number, rows: number): void {
    this.mirror.resize(cols, rows);
  }

  /**
   * The sequence that draws row `y` (0-based, from the top of the screen) as this client last
   * drew it, from column 0, leaving the cursor after its last cell and the pen reset; null when
   * the mirror is not anchored.
   */
  row(y: number): Promise<string | null> {
    if (!this.anchored) return Promise.resolve(null);
    return new Promise((resolve) => this.mirror.afterParse((ok) => resolve(ok ? serializeRow(this.mirror.term, y) : null)));
  }

  /**
   * The screen as this client drew it, once everything written is parsed (what the terminal
   * shows right then); null when the mirror is not anchored.
   */
  view(done: (view: ScreenView | null) => void): void {
    if (!this.anchored) return done(null);
    this.mirror.afterParse((ok) => {
      if (!ok) return done(null);
      // More was written while parsing: the view must be the terminal's as of now.
      if (this.mirror.parsed !== this.mirror.written) return this.view(done);
      done(xtermScreen(this.mirror.term));
    });
  }

  dispose(): void {
    this.mirror.dispose();
  }

  /** Not anchored yet (nor let go). */
  private get waiting(): boolean {
    return this.mirror.paused && !this.mirror.lost;
  }
}

/**
 * Row `y` of the active buffer's screen as characters and SGR sequences, for a row just erased
 * with the pen reset: blank cells are skipped (or erased in their colour), so what is drawn is
 * what the program drew.
 */
export function serializeRow(term: Terminal, y: number): string {
  const buffer = term.buffer.active;
  const line = buffer.getLine(buffer.baseY + y);
  if (!line) return "\x1b[0m";
  const cell = buffer.getNullCell();
  const end = Math.min(line.length, term.cols);
  let out = "\x1b[0m";
  let pen = "0";
  /** Blank cells not written yet, and the pen they were erased with. */
  let blanks = 0;
  let blankPen = "0";
  const flushBlanks = (): void => {
    if (blanks === 0) return;
    if (blankPen !== "0") {
      if (blankPen !== pen) out += `\x1b[${blankPen}m`;
      pen = blankPen;
      out += `\x1b[${blanks}X`;
    }
    out += `\x1b[${blanks}C`;
    blanks = 0;
  };
  for (let x = 0; x < end; x++) {
    const c = line.getCell(x, cell);
    if (!c || c.getWidth() === 0) continue; // the second half of a wide character
    const sgr = cellSgr(c);
    if (c.getChars() === "") {
      if (blanks > 0 && sgr !== blankPen) flushBlanks();
      blankPen = sgr;
      blanks++;
      continue;
    }
    flushBlanks();
    if (sgr !== pen) {
      out += `\x1b[${sgr}m`;
      pen = sgr;
    }
    out += c.getChars();
  }
  // Trailing blanks in the default colours are already there: the row was erased.
  if (blankPen !== "0") flushBlanks();
  return pen === "0" ? out : `${out}\x1b[0m`;
}
