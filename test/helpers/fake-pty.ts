/**
 * A stand-in for the PTY (the `PtyRunner` seam) for tests of the program's lifecycle: it records
 * what the program was given (argv, input, sizes, signals) and lets the test make it print and
 * exit. SIGKILL always ends it; SIGHUP does unless it was told to ignore hang-ups.
 */
import type { PtyProcess, PtyRunner, PtySpec } from "../../agent/pty.ts";

const SIGNALS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

export class FakeProcess implements PtyProcess {
  readonly input: Uint8Array[] = [];
  readonly signals: NodeJS.Signals[] = [];
  readonly sizes: Array<[number, number]> = [];
  readonly exited: Promise<number>;
  private resolveExit: (code: number) => void = () => {};
  private done = false;

  constructor(
    readonly spec: PtySpec,
    readonly pid: number,
    private readonly ignoreHangup: boolean,
  ) {
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
  }

  /** Everything typed into the program, as text. */
  get typed(): string {
    return this.input.map((d) => new TextDecoder().decode(d)).join("");
  }

  get running(): boolean {
    return !this.done;
  }

  write(data: Uint8Array | string): void {
    if (this.done) return;
    this.input.push(typeof data === "string" ? new TextEncoder().encode(data) : data.slice());
  }

  resize(cols: number, rows: number): void {
    this.sizes.push([cols, rows]);
  }

  kill(signal: NodeJS.Signals): void {
    this.signals.push(signal);
    if (signal === "SIGKILL" || (signal === "SIGHUP" && !this.ignoreHangup)) this.exit(128 + (SIGNALS[signal] ?? 1));
  }

  /** The program prints. */
  print(text: string): void {
    this.spec.onData(new TextEncoder().encode(text));
  }

  /** The program exits. */
  exit(code: number): void {
    if (this.done) return;
    this.done = true;
    this.resolveExit(code);
  }
}

export class FakePty {
  readonly procs: FakeProcess[] = [];
  private nextPid = 4000;

  constructor(private readonly opts: { ignoreHangup?: boolean; failWith?: string } = {}) {}

  readonly runner: PtyRunner = (spec) => {
    if (this.opts.failWith) throw new Error(this.opts.failWith);
    const proc = new FakeProcess(spec, this.nextPid++, this.opts.ignoreHangup ?? false);
    this.procs.push(proc);
    return proc;
  };

  /** The one program started (throws if there is none). */
  get proc(): FakeProcess {
    const p = this.procs[0];
    if (!p) throw new Error("no program was started");
    return p;
  }
}
