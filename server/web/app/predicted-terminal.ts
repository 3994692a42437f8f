/**
 * The dashboard's terminal with predictive local echo: the engine of `src/lib/predict.ts` over
 * xterm.js's buffer, as the CLI has it over its headless mirror. Everything written to xterm goes
 * through one queue, each write computed once the one before it is parsed, so the engine always
 * reads the buffer as it stands on the screen: output (the overlay erased before it, judged after
 * it), keys (drawn at once) and deadlines.
 */
import type { Terminal } from "@xterm/xterm";
import { PredictedEcho, Predictor, type PredictMode } from "../../../src/lib/predict.ts";
import { xtermScreen } from "../../../src/lib/terminal-cells.ts";

type Step = () => Array<string | Uint8Array>;

export class PredictedTerminal {
  readonly echo: PredictedEcho;
  private readonly steps: Step[] = [];
  private busy = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** For each key predicted, ms from the key to its drawing in the terminal's model (tests, benchmarks). */
  readonly keyToModelMs: number[] = [];

  constructor(
    private readonly term: Terminal,
    mode: PredictMode,
    /** Called once output is in the terminal's model. */
    private readonly parsed: () => void,
  ) {
    this.echo = new PredictedEcho(new Predictor({ mode }));
  }

  get predictor(): Predictor {
    return this.echo.predictor;
  }

  /** Program output. */
  output(data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    this.queue(() => [this.echo.output(bytes), bytes]);
    this.queue(() => (this.predictor.awaitingOutput ? [this.echo.settled(xtermScreen(this.term), performance.now())] : []), true);
  }

  /** A full screen: the terminal is reset, the predictions forgotten. */
  screen(data: string): void {
    this.queue(() => {
      this.echo.reset();
      this.term.reset();
      return [data];
    }, true);
  }

  /** Keys going to the program. */
  typed(data: string): void {
    if (!this.predictor.active) return;
    const at = performance.now();
    this.queue(() => [this.echo.key(data, xtermScreen(this.term), performance.now())], false, () => {
      if (this.keyToModelMs.length < 10_000) this.keyToModelMs.push(performance.now() - at);
    });
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.steps.length = 0;
  }

  private queue(step: Step, notify = false, done?: () => void): void {
    this.steps.push(() => {
      const out = step();
      if (notify) this.parsedAfter = true;
      this.written = done;
      return out;
    });
    this.run();
  }

  /** Called once the step just written is parsed. */
  private written: (() => void) | undefined;

  /** The step just written was output: tell the page once it is parsed. */
  private parsedAfter = false;

  private run(): void {
    if (this.busy) return;
    const step = this.steps.shift();
    if (!step) return this.schedule();
    this.busy = true;
    const chunks = step().filter((c) => c.length > 0);
    const notify = this.parsedAfter;
    this.parsedAfter = false;
    const done = this.written;
    this.written = undefined;
    this.term.write(chunks.length > 0 ? chunks.map((c) => (typeof c === "string" ? new TextEncoder().encode(c) : c)).reduce(concat) : "", () => {
      this.busy = false;
      done?.();
      if (notify) this.parsed();
      this.run();
    });
  }

  /** Predictions the program does not answer are judged at their deadline. */
  private schedule(): void {
    clearTimeout(this.timer);
    const at = this.predictor.nextDeadline;
    if (at === null) return;
    this.timer = setTimeout(() => this.queue(() => [this.echo.tick(xtermScreen(this.term), performance.now())]), Math.max(0, at - performance.now()));
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
