/**
 * A clock tests move by hand: `advance(ms)` runs, in time order, every timer due by then. With it,
 * "nothing happens for this long" is shown without waiting that long. Its timers take delays as
 * the platform's do (too long a delay fires at once), so code that must step long delays is held to it.
 */
export class FakeClock {
  private at = 0;
  private next = 1;
  private readonly timers = new Map<number, { due: number; fn: () => void }>();

  now(): number {
    return this.at;
  }

  /** As the platform's: a delay over 2^31 - 1 ms (or under 1) is taken as 1 ms. */
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    const delay = ms > 2 ** 31 - 1 || !(ms >= 1) ? 1 : ms;
    this.timers.set(id, { due: this.at + delay, fn });
    return id;
  }

  clearTimeout(timer: unknown): void {
    this.timers.delete(timer as number);
  }

  /** Timers still waiting. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time on by `ms`, running each timer due meanwhile at its own time (and those they set). */
  advance(ms: number): void {
    const until = this.at + ms;
    for (;;) {
      let first: [number, { due: number; fn: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].due <= until && (!first || entry[1].due < first[1].due)) first = entry;
      if (!first) break;
      this.timers.delete(first[0]);
      this.at = first[1].due;
      first[1].fn();
    }
    this.at = until;
  }
}
