/**
 * Orphan watch: an agent whose server stays unreachable for longer than the session's idle timeout
 * would otherwise re-dial forever (a local agent outlives its server by design). After that long
 * without a link it gives the link one last chance to come back, then gives up. The agent feeds it
 * the link's events: `up` on open, `down` on a drop (and at the start, before the first open).
 */
import { formatDuration } from "../src/lib/duration.ts";
import type { Log } from "../src/lib/log.ts";

/** The last try: long enough for the link's slowest re-dial (5 s backoff, jittered). */
export const LAST_TRY_MS = 10_000;

/** Time, as the watch reads and waits for it (tests pass a clock they move by hand). */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as Timer),
};

export interface OrphanWatchOptions {
  /** `CATTY_SESSION_IDLE_MS`: how long the server may be unreachable. */
  idleTimeoutMs: number;
  /** How long the last try lasts (default: `LAST_TRY_MS`, at most `idleTimeoutMs`). */
  lastTryMs?: number;
  /** The server stayed unreachable through the last try too. */
  onGiveUp(downForMs: number): void;
  log: Log;
  /** Default: the real one. */
  clock?: Clock;
}

/** Timers take at most a 32-bit signed delay; a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export type OrphanState = "up" | "down" | "last-try" | "closed";

export class OrphanWatch {
  private downSince: number | null = null;
  private timer: unknown;
  private closed = false;
  private lastTry = false;
  private readonly clock: Clock;

  constructor(private readonly opts: OrphanWatchOptions) {
    this.clock = opts.clock ?? realClock;
  }

  /** Where the watch stands (for logs and tests). */
  get state(): OrphanState {
    if (this.closed) return "closed";
    if (this.downSince === null) return "up";
    return this.lastTry ? "last-try" : "down";
  }

  /** The link is open. */
  up(): void {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.downSince = null;
    this.lastTry = false;
  }

  /** The link is down (or not yet up): the clock starts, unless it already runs. */
  down(): void {
    if (this.closed || this.downSince !== null) return;
    this.downSince = this.clock.now();
    const { idleTimeoutMs, log } = this.opts;
    const lastTryMs = Math.min(this.opts.lastTryMs ?? LAST_TRY_MS, idleTimeoutMs);
    this.after(idleTimeoutMs, () => {
      this.lastTry = true;
      log.warn(`the server has been unreachable for ${formatDuration(idleTimeoutMs)} (the session's idle timeout); one last try`, {
        lastTryMs,
      });
      this.after(lastTryMs, () => {
        if (this.closed || this.downSince === null) return;
        this.closed = true;
        this.opts.onGiveUp(this.clock.now() - this.downSince);
      });
    });
  }

  /** Runs `fn` after `ms` (in steps, for delays longer than a timer takes) unless cleared meanwhile. */
  private after(ms: number, fn: () => void): void {
    const step = Math.min(ms, MAX_TIMER_MS);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      if (ms > step) this.after(ms - step, fn);
      else fn();
    }, step);
  }

  /** Stops watching (the agent is ending for another reason). */
  close(): void {
    this.closed = true;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
