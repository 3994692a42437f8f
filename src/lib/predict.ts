/**
 * Predictive local echo, one engine for the CLI (over `src/client/local-screen.ts`'s headless
 * terminal) and the dashboard (over xterm.js's buffer). Pure: what the user typed, the screen as
 * the program last drew it (`ScreenView`) and the time go in; what to draw comes out. The shell
 * only feeds it and writes what it returns.
 *
 * As mosh does it (its `terminaloverlay.cc`), keystrokes a line editor would echo — printable
 * characters (wide ones too), backspace, left and right — are drawn at once where the program
 * would draw them, underlined, as an overlay over the true screen. Each keystroke is an entry;
 * the program's output judges them in order:
 * - confirmed: the cells hold what was predicted and the echo is seen (a cell changed to it, or
 *   the cursor stands where the entry left it, or a later entry is confirmed) — the overlay goes,
 *   the program's own drawing is already there;
 * - contradicted: a cell holds something else than before and than predicted (a program that
 *   echoes uppercase), or the echo did not come within its deadline (a password prompt) — every
 *   entry goes and the true screen is shown.
 * Anything else typed (Enter, other keys, pastes) ends the predictions: they go at once and the
 * engine waits for the screen to settle.
 *
 * It shows predictions only when they pay: in `auto`, when the round trip exceeds
 * `thresholdMs` and in a context (the screen, main or alternate, and the start of the row: the
 * prompt) whose last judged prediction was confirmed. A new context, and one just contradicted,
 * is tentative: predictions are made and judged but not drawn until one is confirmed — which
 * keeps them off in password prompts and in full-screen programs that do not echo.
 *
 * Drawing: the overlay is drawn after `ESC 7` (save cursor and pen) and taken away by redrawing
 * the cells it covered as they were, then `ESC 8`: the terminal's cursor and pen are the
 * program's again before any of its output is written. The shell writes `hide()` before output
 * and `show()` after it, and never between the bytes of an escape sequence (`OutputBoundary`).
 */

export type PredictMode = "auto" | "always" | "never";

/** One cell of the true screen. */
export interface ScreenCell {
  /** The characters ("" for a cell never written or erased). */
  chars: string;
  /** 1, 2 for a wide character's first half, 0 for its second half. */
  width: number;
  /** SGR parameters that select its attributes from a reset pen ("0;1;31"). */
  sgr: string;
}

/** The program's screen as the client holds it, up to the output it has received. */
export interface ScreenView {
  cols: number;
  rows: number;
  cursorX: number;
  cursorY: number;
  /** The alternate screen is active (full-screen programs). */
  alternate: boolean;
  cell(x: number, y: number): ScreenCell;
  /** Columns a character takes, as this terminal counts them (0: combining or control). */
  width(char: string): number;
}

export interface PredictOptions {
  mode: PredictMode;
  /** Round trip above which `auto` predicts (mosh: 30 ms). */
  thresholdMs?: number;
}

/** What the overlay looks like: predicted cells and where the cursor is predicted. */
export interface Overlay {
  cells: { x: number; y: number; chars: string; width: number }[];
  cursor: { x: number; y: number } | null;
}

/** A drawn overlay: `draw` shows it over the true screen; `erase` takes it away again. */
export interface Drawing {
  draw: string;
  erase: string;
}

interface Predicted {
  x: number;
  y: number;
  chars: string;
  width: number;
  /** What the true screen held there when predicted. */
  before: string;
}

interface Entry {
  cells: Predicted[];
  cursor: { x: number; y: number };
  /** Where the line's text ends on the cursor's row after it (exclusive): spaces typed at the end count. */
  end: number;
  deadline: number;
}

const DEFAULT_THRESHOLD_MS = 30;
/** Judged at the latest this long after a round trip (scheduling and the program's own time). */
const DEADLINE_SLACK_MS = 250;
/** The start of the row that names a context (the prompt). */
const CONTEXT_CHARS = 12;

export class Predictor {
  private entries: Entry[] = [];
  /** Whether this epoch's entries are drawn (its context was trusted when it began). */
  private shown = false;
  private context = "";
  /** Contexts whose last judged prediction was confirmed. */
  private readonly trusted = new Set<string>();
  /** Unknown input ended the epoch: predict again once the output has settled. */
  private settling = false;
  private rttMs = 0;
  private offline = false;
  /**
   * Where typing began on the cursor's row: the end of the prompt, which a line editor does not
   * let the cursor pass (kept across epochs while typing stays on the row).
   */
  private line: { x: number; y: number } | null = null;
  /**
   * What each cell predicted in this epoch may hold on the way: what it held, or what any entry
   * predicted there — an entry confirmed early (its screen looked the same) leaves echoes to come.
   */
  private readonly explained = new Map<string, Set<string>>();
  mode: PredictMode;
  readonly thresholdMs: number;
  /** Judged predictions (for the status line and tests). */
  confirmedCount = 0;
  contradictedCount = 0;

  constructor(opts: PredictOptions) {
    this.mode = opts.mode;
    this.thresholdMs = opts.thresholdMs ?? DEFAULT_THRESHOLD_MS;
  }

  /** The link's latest round trip. */
  rtt(ms: number): void {
    this.rttMs = ms;
  }

  /** Whether predictions would be drawn now (mode and round trip; contexts aside). */
  get active(): boolean {
    if (this.mode === "never") return false;
    return this.mode === "always" || this.offline || this.rttMs > this.thresholdMs;
  }

  /**
   * The link is down (true) or back (false). While it is down what is typed is held for the
   * program, so it is shown as predicted in any context and waits for no deadline; once back,
   * each prediction has a round trip again.
   */
  setOffline(down: boolean, now: number): void {
    if (this.offline === down) return;
    this.offline = down;
    if (down) {
      if (this.mode !== "never") this.shown = true;
      return;
    }
    const deadline = now + this.rttMs * 1.5 + DEADLINE_SLACK_MS;
    for (const e of this.entries) e.deadline = Math.max(e.deadline, deadline);
  }

  /** Predictions are waiting to be judged. */
  get pending(): boolean {
    return this.entries.length > 0;
  }

  /** Output is awaited: to judge predictions, or to settle after a key it could not predict. */
  get awaitingOutput(): boolean {
    return this.entries.length > 0 || this.settling;
  }

  /** When the oldest prediction is judged without output (for the shell's timer); null: none. */
  get nextDeadline(): number | null {
    if (this.offline) return null;
    return this.entries[0]?.deadline ?? null;
  }

  /** The user typed `data` (one read's worth; pastes too): predicts what it can. */
  type(data: string, screen: ScreenView, now: number): void {
    if (this.mode === "never") return;
    for (const key of keys(data)) {
      if (!this.typeKey(key, screen, now)) {
        this.stop();
        return;
      }
    }
  }

  /** Output arrived and `screen` now includes it: judges the predictions in order. */
  observe(screen: ScreenView, now: number): void {
    this.judge(screen, now);
  }

  /** Time passed without output: predictions past their deadline are wrong. */
  tick(screen: ScreenView, now: number): void {
    this.judge(screen, now);
  }

  /** The screen was replaced (a full paint, a resize): every prediction goes. */
  reset(): void {
    this.entries = [];
    this.explained.clear();
    this.settling = false;
    this.line = null;
  }

  /** The overlay to draw now: the entries of a trusted epoch, later ones over earlier. */
  overlay(): Overlay {
    if (!this.shown || this.entries.length === 0) return { cells: [], cursor: null };
    const byPos = new Map<string, Predicted>();
    for (const e of this.entries) {
      for (const c of e.cells) {
        // A cell drawn over half of a wide one takes the whole of it.
        if (byPos.get(`${c.x - 1},${c.y}`)?.width === 2) byPos.delete(`${c.x - 1},${c.y}`);
        if (c.width === 2) byPos.delete(`${c.x + 1},${c.y}`);
        byPos.set(`${c.x},${c.y}`, c);
      }
    }
    const cells = [...byPos.values()].filter((c) => c.chars !== c.before).map(({ x, y, chars, width }) => ({ x, y, chars, width }));
    const last = this.entries[this.entries.length - 1] as Entry;
    return { cells, cursor: last.cursor };
  }

  private stop(): void {
    this.entries = [];
    this.explained.clear();
    this.settling = true;
    this.line = null;
  }

  private typeKey(key: Key, screen: ScreenView, now: number): boolean {
    if (key.kind === "other") return false;
    if (this.entries.length === 0) {
      // A new epoch starts from the true screen.
      if (this.settling) return false;
      const y = screen.cursorY;
      const line = this.line;
      if (!line || line.y !== y || line.x > screen.cursorX) this.line = { x: Math.min(screen.cursorX, screen.cols), y };
      const start = Math.min((this.line as { x: number }).x, CONTEXT_CHARS);
      let prefix = "";
      for (let x = 0; x < start; x++) prefix += screen.cell(x, y).chars || " ";
      this.context = `${screen.alternate ? "alt" : "main"}|${prefix}`;
      this.shown = this.active && (this.mode === "always" || this.offline || this.trusted.has(this.context));
    }
    const at = this.cursor(screen);
    const row = this.row(screen, at.y);
    const deadline = now + this.rttMs * 1.5 + DEADLINE_SLACK_MS;
    const startX = this.line && this.line.y === at.y ? this.line.x : 0;
    const previous = this.entries[this.entries.length - 1];
    const end = previous ? previous.end : Math.max(lastUsed(row) + 1, Math.min(at.x, screen.cols));
    const entry = predictKey(key, row, at, startX, end, screen);
    if (!entry) return false;
    // A key that changes nothing (left at the prompt) has nothing to draw nor to wait for.
    if (entry.cells.length === 0 && entry.cursor.x === at.x && entry.cursor.y === at.y) return true;
    this.entries.push({ ...entry, deadline });
    for (const c of entry.cells) {
      const key = `${c.x},${c.y}`;
      let set = this.explained.get(key);
      if (!set) this.explained.set(key, (set = new Set([blankAsEmpty(c.before)])));
      set.add(blankAsEmpty(c.chars));
    }
    return true;
  }

  /** Where the cursor is predicted: after the last entry, else the true cursor. */
  private cursor(screen: ScreenView): { x: number; y: number } {
    const last = this.entries[this.entries.length - 1];
    return last ? { ...last.cursor } : { x: Math.min(screen.cursorX, screen.cols), y: screen.cursorY };
  }

  /** Row `y` as predicted: the true cells with the entries' cells over them. */
  private row(screen: ScreenView, y: number): RowCell[] {
    const row: RowCell[] = [];
    for (let x = 0; x < screen.cols; x++) {
      const c = screen.cell(x, y);
      row.push({ chars: c.chars, width: c.width });
    }
    for (const e of this.entries) {
      for (const c of e.cells) if (c.y === y) place(row, c.x, c.chars, c.width);
    }
    return row;
  }

  private judge(screen: ScreenView, now: number): void {
    if (this.entries.length === 0) {
      this.settling = false;
      return;
    }
    const explained = this.explained;
    let confirmedUpTo = -1;
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const e = this.entries[i] as Entry;
      const cells = e.cells.map((c) => ({ c, now: blankAsEmpty(screen.cell(c.x, c.y).chars) }));
      if (cells.some(({ c, now: held }) => !explained.get(`${c.x},${c.y}`)?.has(held))) return this.contradicted();
      if (confirmedUpTo >= 0) continue;
      const matched = cells.every(({ c, now: held }) => held === blankAsEmpty(c.chars));
      const seen = cells.some(({ c }) => blankAsEmpty(c.chars) !== blankAsEmpty(c.before)) ||
        (screen.cursorX === e.cursor.x && screen.cursorY === e.cursor.y);
      if (matched && seen) confirmedUpTo = i;
    }
    if (confirmedUpTo >= 0) {
      this.confirmedCount += confirmedUpTo + 1;
      this.trusted.add(this.context);
      // Later entries of a tentative epoch are drawn from now on: the context has proved itself.
      if (this.active) this.shown = true;
      this.entries = this.entries.slice(confirmedUpTo + 1);
      if (this.entries.length === 0) this.explained.clear();
    }
    if (!this.offline && this.entries.length > 0 && now >= (this.entries[0] as Entry).deadline) this.contradicted();
  }

  private contradicted(): void {
    this.contradictedCount++;
    this.trusted.delete(this.context);
    this.stop();
  }
}

/** A keystroke the engine knows how a line editor echoes, or another key. */
type Key = { kind: "char"; chars: string } | { kind: "backspace" } | { kind: "left" } | { kind: "right" } | { kind: "other" };

interface RowCell {
  chars: string;
  width: number;
}

/** The keys of one read; anything not predictable is `other` (and ends the read's predictions). */
export function keys(data: string): Key[] {
  const out: Key[] = [];
  let i = 0;
  while (i < data.length) {
    const rest = data.slice(i);
    if (rest.startsWith("\x1b[C") || rest.startsWith("\x1bOC")) {
      out.push({ kind: "right" });
      i += 3;
      continue;
    }
    if (rest.startsWith("\x1b[D") || rest.startsWith("\x1bOD")) {
      out.push({ kind: "left" });
      i += 3;
      continue;
    }
    const cp = data.codePointAt(i) as number;
    const ch = String.fromCodePoint(cp);
    i += ch.length;
    if (cp === 0x7f || cp === 0x08) out.push({ kind: "backspace" });
    else if (cp < 0x20 || (cp >= 0x80 && cp < 0xa0)) out.push({ kind: "other" });
    else out.push({ kind: "char", chars: ch });
  }
  return out;
}

/** The entry (cells and cursor after it) for `key` typed at `at` on `row`; null: not predictable. */
function predictKey(
  key: Key,
  row: RowCell[],
  at: { x: number; y: number },
  startX: number,
  end: number,
  screen: ScreenView,
): Omit<Entry, "deadline"> | null {
  const cols = screen.cols;
  const last = end - 1;
  switch (key.kind) {
    case "char": {
      const w = screen.width(key.chars);
      if (w < 1 || w > 2) return null;
      let { x, y } = at;
      if (x + w > cols) {
        // Wraps: only at the end of the text, onto a row that is there and empty.
        if (last >= x || y + 1 >= screen.rows) return null;
        const next = screen.cell(0, y + 1);
        if (next.chars !== "" || lastUsedOf(screen, y + 1) >= 0) return null;
        x = 0;
        y += 1;
        return { cells: [cell(x, y, key.chars, w, screen)], cursor: { x: w, y }, end: w };
      }
      if (row[x]?.width === 0) return null; // inside a wide character
      if (last < x) return { cells: [cell(x, y, key.chars, w, screen)], cursor: { x: x + w, y }, end: x + w };
      // Inserted before text: the rest of the row moves right, if it stays on the row.
      if (last + w >= cols) return null;
      const moved = row.slice(x, last + 1);
      const cells = [cell(x, y, key.chars, w, screen)];
      let to = x + w;
      for (const c of moved) {
        // The second half of a wide character goes with its first.
        if (c.width !== 0) cells.push(cell(to, y, c.chars, c.width, screen));
        to++;
      }
      return { cells, cursor: { x: x + w, y }, end: end + w };
    }
    case "backspace": {
      const { x, y } = at;
      if (x <= startX) return { cells: [], cursor: at, end }; // at the prompt: nothing moves
      if (x > cols || x > last + 1) return null;
      const w = row[x - 1]?.width === 0 ? 2 : 1;
      if (x - w < 0) return null;
      const from = x - w;
      // The rest of the row moves left over the deleted character; its last cells empty.
      const cells: Predicted[] = [];
      let to = from;
      for (let sx = x; sx <= last; sx++) {
        const c = row[sx] as RowCell;
        if (c.width !== 0) cells.push(cell(to, y, c.chars, c.width, screen));
        to++;
      }
      for (; to <= last; to++) cells.push(cell(to, y, "", 1, screen));
      return { cells, cursor: { x: from, y }, end: end - w };
    }
    case "left": {
      const { x, y } = at;
      if (x <= startX) return { cells: [], cursor: at, end };
      if (x > cols) return null;
      const w = row[x - 1]?.width === 0 ? 2 : 1;
      return x - w < 0 ? null : { cells: [], cursor: { x: x - w, y }, end };
    }
    case "right": {
      const { x, y } = at;
      const c = row[x];
      if (x > last) return { cells: [], cursor: at, end }; // past the end of the text a line editor does not move
      if (!c) return null;
      const w = c.width === 2 ? 2 : 1;
      return x + w > cols - 1 ? null : { cells: [], cursor: { x: x + w, y }, end };
    }
    case "other":
      return null;
  }
}

function cell(x: number, y: number, chars: string, width: number, screen: ScreenView): Predicted {
  return { x, y, chars, width, before: screen.cell(x, y).chars };
}

/** Puts a character into a row model, its second half after it. */
function place(row: RowCell[], x: number, chars: string, width: number): void {
  if (x >= row.length) return;
  if (row[x]?.width === 0 && x > 0) row[x - 1] = { chars: "", width: 1 };
  if (row[x]?.width === 2 && x + 1 < row.length) row[x + 1] = { chars: "", width: 1 };
  row[x] = { chars, width: width === 2 ? 2 : 1 };
  if (width === 2 && x + 1 < row.length) {
    if (row[x + 1]?.width === 2 && x + 2 < row.length) row[x + 2] = { chars: "", width: 1 };
    row[x + 1] = { chars: "", width: 0 };
  }
}

/** The last column holding text (-1: none). */
function lastUsed(row: RowCell[]): number {
  for (let x = row.length - 1; x >= 0; x--) {
    const c = row[x] as RowCell;
    if (c.width === 0 || blankAsEmpty(c.chars) !== "") return c.width === 0 ? x : x + (c.width === 2 ? 1 : 0);
  }
  return -1;
}

function lastUsedOf(screen: ScreenView, y: number): number {
  for (let x = screen.cols - 1; x >= 0; x--) if (blankAsEmpty(screen.cell(x, y).chars) !== "") return x;
  return -1;
}

function blankAsEmpty(chars: string): string {
  return chars === " " ? "" : chars;
}

/**
 * Draws `overlay` over `screen` (the true screen as the terminal shows it right now): the
 * predicted cells underlined, the cursor where predicted. `erase` redraws every cell the drawing
 * touched — a wide character partly covered whole — as it was, and restores the cursor and pen.
 */
export function drawOverlay(overlay: Overlay, screen: ScreenView): Drawing {
  if (overlay.cells.length === 0 && !overlay.cursor) return { draw: "", erase: "" };
  // A cursor past the last column (its wrap pending) does not survive ESC 7 … ESC 8 in every
  // terminal (xterm.js puts it back on the last column): drawn after the next output instead.
  if (screen.cursorX >= screen.cols) return { draw: "", erase: "" };
  let draw = "\x1b7";
  const touched = new Map<number, Set<number>>();
  const touch = (x: number, y: number): void => {
    if (x < 0 || x >= screen.cols || y < 0 || y >= screen.rows) return;
    let row = touched.get(y);
    if (!row) touched.set(y, (row = new Set()));
    row.add(x);
  };
  for (const c of overlay.cells) {
    if (c.y < 0 || c.y >= screen.rows || c.x < 0 || c.x + c.width > screen.cols) continue;
    draw += `\x1b[${c.y + 1};${c.x + 1}H`;
    draw += c.chars === "" ? "\x1b[0m\x1b[X" : `\x1b[0;4m${c.chars}`;
    for (let x = c.x; x < c.x + Math.max(1, c.width); x++) touch(x, c.y);
  }
  draw += "\x1b[0m";
  if (overlay.cursor) {
    const x = Math.min(overlay.cursor.x, screen.cols - 1);
    draw += `\x1b[${overlay.cursor.y + 1};${x + 1}H`;
  }
  let erase = "";
  for (const [y, xs] of touched) {
    // Whole wide characters: a half drawn over erases the other half on a real terminal.
    for (const x of [...xs]) {
      const c = screen.cell(x, y);
      if (c.width === 0) touch(x - 1, y);
      if (c.width === 2) touch(x + 1, y);
    }
    for (const x of [...(touched.get(y) as Set<number>)].sort((a, b) => a - b)) {
      const c = screen.cell(x, y);
      if (c.width === 0) continue; // drawn with its first half
      erase += `\x1b[${y + 1};${x + 1}H\x1b[${c.sgr}m`;
      erase += c.chars === "" ? "\x1b[X" : c.chars;
    }
  }
  erase += "\x1b8";
  return { draw, erase };
}

/**
 * Whether an output stream stands between escape sequences and characters, where the overlay
 * may be drawn or erased: fed every byte of the output, it follows the states of a terminal's
 * parser that matter (escape, CSI, strings, UTF-8 continuations).
 */
export class OutputBoundary {
  private state: "ground" | "esc" | "csi" | "string" = "ground";
  private utf8Left = 0;

  feed(data: Uint8Array): void {
    // An ESC starts an escape whatever came before it (in a string too): only the bytes from the
    // last one matter, found natively — bulk output costs next to nothing here. Between
    // sequences, only a character cut at the end matters.
    const esc = data.lastIndexOf(0x1b);
    let from = 0;
    if (esc >= 0) {
      from = esc;
      this.state = "ground";
    } else if (this.atBoundary) from = Math.max(0, data.length - 4);
    for (let i = from; i < data.length; i++) {
      const b = data[i] as number;
      if (this.utf8Left > 0 && (b & 0xc0) === 0x80) {
        this.utf8Left--;
        continue;
      }
      this.utf8Left = 0;
      switch (this.state) {
        case "ground":
          if (b === 0x1b) this.state = "esc";
          else if (b >= 0xc2 && b <= 0xf4) this.utf8Left = b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : 1;
          break;
        case "esc":
          if (b === 0x5b) this.state = "csi";
          else if (b === 0x5d || b === 0x50 || b === 0x5f || b === 0x5e || b === 0x58) this.state = "string";
          else if (b >= 0x20 && b <= 0x2f) this.state = "esc"; // intermediates (ESC ( B…)
          else this.state = "ground";
          break;
        case "csi":
          if (b >= 0x40 && b <= 0x7e) this.state = "ground";
          else if (b === 0x1b) this.state = "esc";
          break;
        case "string":
          // BEL ends it; ESC too (ESC \ is the string terminator, ESC then goes on as an escape).
          if (b === 0x07) this.state = "ground";
          else if (b === 0x1b) this.state = "esc";
          break;
      }
    }
  }

  /** The stream is between sequences and characters. */
  get atBoundary(): boolean {
    return this.state === "ground" && this.utf8Left === 0;
  }
}

/**
 * What a shell writes around the program's output so the overlay is always drawn over the true
 * screen: `key()` after the user typed, `output()` before writing output (the erase), `settled()`
 * once the screen includes it, `tick()` at `predictor.nextDeadline`. Each returns what to write
 * to the terminal. The CLI and the dashboard share it.
 */
export class PredictedEcho {
  /** What takes the drawn overlay away ("" when none is drawn). */
  private erase = "";
  private readonly boundary = new OutputBoundary();

  constructor(readonly predictor: Predictor) {}

  key(data: string, screen: ScreenView, now: number): string {
    this.predictor.type(data, screen, now);
    return this.redraw(screen);
  }

  output(data: Uint8Array): string {
    const erase = this.erase;
    this.erase = "";
    this.boundary.feed(data);
    return erase;
  }

  settled(screen: ScreenView, now: number): string {
    this.predictor.observe(screen, now);
    return this.redraw(screen);
  }

  tick(screen: ScreenView, now: number): string {
    this.predictor.tick(screen, now);
    return this.redraw(screen);
  }

  /** The screen was replaced (a full paint): nothing of the overlay is left to erase. */
  reset(): void {
    this.erase = "";
    this.predictor.reset();
  }

  private redraw(screen: ScreenView): string {
    // Mid-sequence, nothing may be written between the program's bytes: drawn after the next output.
    if (!this.boundary.atBoundary) return "";
    const old = this.erase;
    const drawing = drawOverlay(this.predictor.overlay(), screen);
    this.erase = drawing.erase;
    return old + drawing.draw;
  }
}
