/**
 * Long synchronous work (walking a tree, reading and hashing files) in slices: between steps the
 * worker asks whether its slice is used up and, if so, lets the event loop run (a PTY's output, a
 * WebSocket's frames) before it goes on.
 */
export class TimeSlices {
  private start = performance.now();

  constructor(private readonly ms = 8) {}

  /** Starts a new slice now (at the beginning of a piece of work). */
  restart(): void {
    this.start = performance.now();
  }

  /** Whether this slice is used up (checked without a promise: callers ask at every step). */
  get due(): boolean {
    return performance.now() - this.start >= this.ms;
  }

  /** Lets the event loop run, then starts the next slice. */
  async next(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.start = performance.now();
  }
}
