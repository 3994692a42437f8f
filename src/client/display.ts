/**
 * What an attached client draws on the user's terminal: the session's output and screens, and
 * catty's own one-line notices over the bottom row (and its questions, over as many rows at the
 * bottom as they need, with the program's output held while one is open). It keeps track of the modes the program
 * switched on (`ModeTracker`, undone on exit) and of what it has drawn (`LocalScreen`), so that a
 * notice, once it goes, is replaced by exactly the row it covered — never a repaint of the whole
 * screen, which would erase the lines catty printed before attaching.
 */
import { LocalScreen } from "./local-screen.ts";
import { PredictedEcho, Predictor, type PredictMode, type ScreenView } from "../lib/predict.ts";
import { ModeTracker } from "../lib/terminal-modes.ts";
import { printable } from "./terminal-text.ts";

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
  /** Predictive local echo (`predict.ts`; `--predict`); default never. */
  predict?: PredictMode;
}

/** Output held while a question waits, at most (a program flooding meanwhile is repainted after). */
const MAX_HELD_BYTES = 2 * 1024 * 1024;

export class Display {
  readonly modes = new ModeTracker();
  private readonly screen: LocalScreen;
  /** The rows (0-based) a notice or question covers now; empty when none does. */
  private noticeRows: number[] = [];
  /** The question shown (its lines), while it waits for an answer. */
  private question: string[] | null = null;
  private timer: Timer | undefined;
  /** Output held back while a covered row is put back, so the row is not drawn over newer output. */
  private held: Uint8Array[] | null = null;
  /** Bytes in `held`: while a question waits, more than `maxBacklogBytes` is let go (see `output`). */
  private heldBytes = 0;
  /** Output was let go while a question waited: the session repaints once it is answered. */
  private dropped = false;
  /** Full screens painted so far: a row computed before the latest one is stale. */
  private paints = 0;
  private restoring: Promise<void> = Promise.resolve();
  /** Predictions drawn over what the program drew; null: `--predict never`. */
  private readonly echo: PredictedEcho | null;
  private predictTimer: Timer | undefined;

  constructor(private readonly opts: DisplayOptions) {
    const { cols, rows } = opts.size();
    this.screen = new LocalScreen(cols, rows, opts.maxBacklogBytes);
    const mode = opts.predict ?? "never";
    this.echo = mode === "never" ? null : new PredictedEcho(new Predictor({ mode }));
  }

  /** The link's latest round trip (its heartbeat). */
  rtt(ms: number): void {
    this.echo?.predictor.rtt(ms);
  }

  /** The link is down (true) or back (false): what is typed meanwhile shows as predicted, held for the program. */
  offline(down: boolean): void {
    if (!this.echo) return;
    this.echo.predictor.setOffline(down, performance.now());
    if (!down) this.scheduleJudging();
  }

  /** What the prediction does now, for `~?` ("off" when never). */
  get predicting(): string {
    const p = this.echo?.predictor;
    if (!p) return "off";
    return p.active ? "on" : `off below ${p.thresholdMs} ms`;
  }

  /**
   * Keys going to the program: drawn at once where it would draw them, when prediction is on
   * (not while a question or a covered row holds the output).
   */
  typed(data: Uint8Array): void {
    const echo = this.echo;
    if (!echo || !echo.predictor.active || this.held || this.question) return;
    const text = new TextDecoder().decode(data);
    this.screen.view((view) => {
      if (!view || this.held || this.question) return;
      this.opts.out.write(echo.key(text, view, performance.now()));
      this.scheduleJudging();
    });
  }

  /** Where the terminal's cursor was before anything was drawn (null: unknown). */
  anchor(position: { row: number; col: number } | null): void {
    if (position) this.screen.anchor(position.row, position.col);
    else this.screen.unanchored();
  }

  /** Program output. */
  output(data: Uint8Array): void {
    if (this.held || this.question) {
      this.held ??= [];
      // A question may wait long; a program that floods meanwhile is not kept in memory: what it
      // drew is asked for again (a full screen) once the question is answered.
      if (this.dropped) return;
      if (this.question && this.heldBytes + data.length > (this.opts.maxBacklogBytes ?? MAX_HELD_BYTES)) {
        this.held = [];
        this.heldBytes = 0;
        this.dropped = true;
        return;
      }
      this.held.push(data);
      this.heldBytes += data.length;
      return;
    }
    this.modes.feed(data);
    const erase = this.echo?.output(data);
    if (erase) this.opts.out.write(erase);
    this.opts.out.write(data);
    this.screen.write(data);
    if (this.echo?.predictor.awaitingOutput) this.judge((echo, view, now) => echo.settled(view, now));
  }

  /** A full screen from the session, drawn from the top-left corner of a cleared terminal. */
  paint(data: string): void {
    this.paints++;
    this.echo?.reset();
    // Output held back was before this screen, which includes it (or is followed by it again).
    if (this.held) this.held = [];
    this.heldBytes = 0;
    this.dropped = false;
    this.noticeRows = [];
    // Modes of what was on screen (vim's alternate screen…) are undone first: the new screen
    // switches on its own, and the tracker knows only those from here on.
    this.opts.out.write(`${this.modes.restoreSequence()}\x1b[H\x1b[2J${data}`);
    this.modes.reset();
    this.modes.feed(data);
    this.screen.painted(data);
    if (this.question) this.draw(this.question);
  }

  /** A problem's status line ("" when it is over), shown only if it lasts. */
  status(message: string): void {
    if (this.question) return;
    clearTimeout(this.timer);
    if (!message) return this.clearNotice();
    this.timer = setTimeout(() => this.draw([message]), this.opts.statusDelayMs ?? 500);
  }

  /** A notice shown now, for a few seconds. */
  notice(message: string): void {
    if (this.question) return;
    clearTimeout(this.timer);
    this.draw([message]);
    this.timer = setTimeout(() => this.clearNotice(), this.opts.noticeMs ?? 3_000);
  }

  resize(cols: number, rows: number): void {
    this.screen.resize(cols, rows);
    if (this.question) this.draw(this.question);
  }

  /**
   * A question over the bottom rows (its first line after "catty:", each line wrapped to the
   * width), kept until `endQuestion`; the program's output is held meanwhile, so nothing draws
   * over it, and follows once the rows it covered are put back.
   */
  ask(lines: string[]): void {
    clearTimeout(this.timer);
    this.held ??= [];
    this.question = lines;
    this.draw(lines);
  }

  /** Whether a question of these lines fits on the screen whole (leaving the program a row). */
  questionFits(lines: string[]): boolean {
    return this.rowsOf(lines, true).length < this.opts.size().rows;
  }

  endQuestion(): void {
    if (!this.question) return;
    this.question = null;
    if (this.noticeRows.length === 0) {
      // Painted over meanwhile: nothing covered; the held output follows at once.
      this.release(this.held ?? []);
      return;
    }
    this.clearNotice();
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
    clearTimeout(this.predictTimer);
    this.hidePredictions();
    if (this.question) {
      // Going away with a question open (the session ended, a signal): its rows are erased and
      // what the program drew meanwhile is written, so the terminal is left as the program left it.
      this.question = null;
      for (const y of this.noticeRows) this.opts.out.write(`\x1b7\x1b[${y + 1};1H\x1b[0m\x1b[2K\x1b8`);
      this.noticeRows = [];
      for (const data of this.held ?? []) this.opts.out.write(data);
      this.held = null;
    }
    this.screen.dispose();
  }

  /**
   * Draws `lines` over the bottom rows, the first after "catty:": a notice on one row, cut at the
   * width; a question's lines wrapped, so every path shows in full.
   */
  private draw(lines: string[]): void {
    const { rows } = this.opts.size();
    const shown = this.rowsOf(lines, this.question !== null).slice(0, rows);
    const top = rows - shown.length;
    // Save and restore the cursor (and pen) around it, so the program's drawing carries on.
    const drawn = shown.map((text, i) => `\x1b[${top + i + 1};1H\x1b[0m\x1b[2K\x1b[7m${text}\x1b[0m`).join("");
    this.hidePredictions();
    this.opts.out.write(`\x1b7${drawn}\x1b8`);
    this.showPredictions();
    const covered = shown.map((_, i) => top + i);
    // Rows a longer notice covered before and this one does not: put back.
    const uncovered = this.noticeRows.filter((y) => !covered.includes(y));
    this.noticeRows = covered;
    if (uncovered.length > 0) this.restoring = this.restoring.then(() => this.putBack(uncovered));
  }

  /** The rows `lines` take: each wrapped to the width (a question) or cut at it (a notice). */
  private rowsOf(lines: string[], wrap: boolean): string[] {
    const { cols } = this.opts.size();
    const out: string[] = [];
    for (const [i, line] of lines.entries()) {
      const chars = [...(i === 0 ? ` catty: ${printable(line)} ` : ` ${printable(line)} `)];
      if (!wrap) out.push(chars.slice(0, cols).join(""));
      else for (let at = 0; at < chars.length; at += cols) out.push(chars.slice(at, at + cols).join(""));
    }
    return out;
  }

  private clearNotice(): void {
    clearTimeout(this.timer);
    const ys = this.noticeRows;
    if (ys.length === 0) return;
    this.noticeRows = [];
    this.restoring = this.restoring.then(() => this.putBack(ys));
  }

  /** Draws rows `ys` again as they were under the notice. */
  private async putBack(ys: number[]): Promise<void> {
    const paint = this.paints;
    // Output held by a question that just ended is older than the rows read here: it follows them.
    this.held ??= [];
    const rows = await Promise.all(ys.map((y) => this.screen.row(y)));
    const held = this.held;
    this.held = this.question ? [] : null;
    const dropped = this.dropped && !this.question;
    this.hidePredictions();
    let lost = false;
    for (const [i, y] of ys.entries()) {
      // Covered again meanwhile, gone with a resize, or painted over: nothing to put back.
      if (paint !== this.paints || this.noticeRows.includes(y) || y >= this.opts.size().rows) continue;
      const row = rows[i] ?? null;
      if (row !== null) this.opts.out.write(`\x1b7\x1b[${y + 1};1H\x1b[0m\x1b[2K${row}\x1b8`);
      else {
        // Unknown (no cursor report, or a flood made the mirror let go): erase, and ask the
        // session for its screen.
        this.opts.out.write(`\x1b7\x1b[${y + 1};1H\x1b[2K\x1b8`);
        lost = true;
      }
    }
    if (lost) this.opts.repaint();
    this.showPredictions();
    if (dropped) this.release([]);
    else if (!this.question) this.release(held);
    else for (const data of held) this.output(data);
  }

  /** The held output goes out (none when some was let go: the session is asked for its screen). */
  private release(held: Uint8Array[]): void {
    this.held = null;
    this.heldBytes = 0;
    if (this.dropped) {
      this.dropped = false;
      this.opts.repaint();
      return;
    }
    for (const data of held) this.output(data);
  }

  /**
   * Predictions go from the terminal before catty draws there itself (both use ESC 7 and ESC 8;
   * `showPredictions` once it has).
   */
  private hidePredictions(): void {
    if (!this.echo) return;
    const erase = this.echo.output(new Uint8Array(0));
    if (erase) this.opts.out.write(erase);
  }

  /** Draws the predictions again, after catty drew there itself (which may answer at once: call it last). */
  private showPredictions(): void {
    if (this.echo?.predictor.pending) this.judge((echo, view, now) => echo.tick(view, now));
  }

  /** Judges the predictions against the screen as drawn now, and draws what is left of them. */
  private judge(step: (echo: PredictedEcho, view: ScreenView, now: number) => string): void {
    const echo = this.echo;
    if (!echo) return;
    this.screen.view((view) => {
      if (!view || this.held || this.question) return;
      this.opts.out.write(step(echo, view, performance.now()));
      this.scheduleJudging();
    });
  }

  /** Predictions the program does not answer are judged at their deadline. */
  private scheduleJudging(): void {
    clearTimeout(this.predictTimer);
    const at = this.echo?.predictor.nextDeadline;
    if (at === null || at === undefined) return;
    this.predictTimer = setTimeout(() => this.judge((echo, view, now) => echo.tick(view, now)), Math.max(0, at - performance.now()));
  }
}
