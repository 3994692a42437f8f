/**
 * A one-line progress bar on stderr for transfers and packing. On a terminal the line is redrawn
 * in place, at most ten times a second; elsewhere (a pipe, a log, CI) nothing is printed until
 * the end, then one summary line. Progress is decoration: a closed or broken stream never makes
 * it throw.
 */
import { formatBytes } from "../lib/archive.ts";

/** The part of a `NodeJS.WriteStream` the bar uses (tests pass a fake). */
export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  destroyed?: boolean;
  writable?: boolean;
  write(chunk: string): unknown;
}

export interface ProgressOptions {
  /** What is going on, e.g. "Downloading brave-tiger-1234". */
  label: string;
  /** Total bytes, when known: adds a bar and a percentage. */
  total?: number;
  /** Default `process.stderr`. */
  stream?: ProgressStream;
  /** Clock in milliseconds (tests pass their own). Default `performance.now`. */
  now?: () => number;
}

export interface Progress {
  /** `done` bytes so far; `extra` is shown after the numbers (e.g. "1,204 files"). */
  update(done: number, extra?: string): void;
  /** Clears the line and prints `message`, or a summary of what was transferred. */
  done(message?: string): void;
  /** Clears the line and prints nothing: the caller reports the error. */
  fail(): void;
}

/**
 * How library code reports long steps and warnings. The library never draws on the terminal
 * itself: the command passes `terminalReporter()` (bars on stderr, consola warnings), a TUI its own,
 * tests `silentReporter`.
 */
export interface Reporter {
  /** A step of `total` bytes (when known) begins; its handle takes the progress. */
  step(label: string, total?: number): Progress;
  warn(message: string): void;
}

const silentStep: Progress = { update() {}, done() {}, fail() {} };
export const silentReporter: Reporter = { step: () => silentStep, warn() {} };

/** Progress bars on `stream` (stderr by default) and warnings through `warn`. */
export function terminalReporter(warn: (message: string) => void, stream?: ProgressStream): Reporter {
  return { step: (label, total) => createProgress({ label, total, stream }), warn };
}

/** Minimum time between two redraws. */
export const REDRAW_INTERVAL_MS = 100;
const BAR_MAX = 30;
const BAR_MIN = 10;
/** A rate measured over less time than this is noise. */
const RATE_MIN_ELAPSED_MS = 250;
const CLEAR_LINE = "\r\x1b[2K";

export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const now = opts.now ?? (() => performance.now());
  const tty = stream.isTTY === true;
  const started = now();
  let lastDraw = Number.NEGATIVE_INFINITY;
  let drawn = false;
  let finished = false;
  let bytes = 0;
  let extra: string | undefined;

  const write = (text: string): void => {
    if (stream.destroyed || stream.writable === false) return;
    try {
      stream.write(text);
    } catch {
      // the terminal went away; progress is not worth failing for
    }
  };

  const clear = (): void => {
    if (drawn) write(CLEAR_LINE);
    drawn = false;
  };

  return {
    update(done, more) {
      if (finished) return;
      bytes = done;
      extra = more;
      if (!tty) return;
      const t = now();
      if (t - lastDraw < REDRAW_INTERVAL_MS) return;
      lastDraw = t;
      const line = renderLine({ label: opts.label, total: opts.total, done, extra, elapsedMs: t - started, columns: stream.columns });
      write(`${CLEAR_LINE}${line}`);
      drawn = true;
    },
    done(message) {
      if (finished) return;
      finished = true;
      clear();
      write(`${message ?? summaryLine(opts.label, bytes, now() - started, extra)}\n`);
    },
    fail() {
      if (finished) return;
      finished = true;
      clear();
    },
  };
}

export interface LineState {
  label: string;
  total?: number | undefined;
  done: number;
  extra?: string | undefined;
  elapsedMs: number;
  columns?: number | undefined;
}

/**
 * `Downloading x  [#######-------]  4.1 MB / 9.8 MB  42%  1.3 MB/s  extra`, cut to fit in
 * `columns` (a line that wraps can no longer be redrawn in place). The bar is dropped first
 * when space is short.
 */
export function renderLine(s: LineState): string {
  const width = Math.max((s.columns || 80) - 1, 20);
  const known = s.total !== undefined && s.total > 0;
  const numbers = known ? `${formatBytes(s.done)} / ${formatBytes(s.total!)}  ${percent(s.done, s.total!)}%` : formatBytes(s.done);
  const rate = s.elapsedMs >= RATE_MIN_ELAPSED_MS ? `  ${formatBytes(Math.round((s.done * 1000) / s.elapsedMs))}/s` : "";
  const tail = `  ${numbers}${rate}${s.extra ? `  ${s.extra}` : ""}`;
  const room = width - s.label.length - tail.length - 4; // "  [" + "]"
  if (known && room >= BAR_MIN) return `${s.label}  ${bar(s.done / s.total!, Math.min(room, BAR_MAX))}${tail}`;
  return truncate(`${s.label}${tail}`, width);
}

/** `Downloading x: 9.8 MB in 2.4 s (4.1 MB/s), extra`. */
export function summaryLine(label: string, done: number, elapsedMs: number, extra?: string): string {
  const secs = elapsedMs / 1000;
  const rate = elapsedMs >= RATE_MIN_ELAPSED_MS ? ` (${formatBytes(Math.round(done / secs))}/s)` : "";
  return `${label}: ${formatBytes(done)} in ${secs.toFixed(1)} s${rate}${extra ? `, ${extra}` : ""}`;
}

function percent(done: number, total: number): number {
  return Math.max(0, Math.min(100, Math.floor((done / total) * 100)));
}

function bar(fraction: number, width: number): string {
  const full = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${"#".repeat(full)}${"-".repeat(width - full)}]`;
}

function truncate(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}
